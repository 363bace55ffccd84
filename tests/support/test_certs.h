#pragma once
// Certificates for TLS tests, made by Debian's `openssl` at test time in the
// test's folder (no key is ever committed): a CA, a server certificate for
// 127.0.0.1 and localhost, a client certificate, both signed by the CA, and a
// second CA that signed nothing we serve, with its own client certificate.
// EC P-256 keys: each is made in milliseconds.

#include <fmt/format.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "services/common/process.h"

namespace starling::testing {

struct TestCerts {
  std::string ca;           // the CA's certificate (PEM)
  std::string server_cert;  // signed by `ca`; subjectAltName IP:127.0.0.1, DNS:localhost
  std::string server_key;
  std::string client_cert;  // signed by `ca`; extendedKeyUsage clientAuth
  std::string client_key;
  std::string other_ca;           // an unrelated CA
  std::string other_client_cert;  // signed by `other_ca`
  std::string other_client_key;
  std::string error;  // why making them failed ("" when they were made)
  bool ok() const { return error.empty(); }

  /// Makes them all under `dir`/certs.
  static TestCerts make(const std::string& dir) {
    TestCerts c;
    const auto d = dir + "/certs";
    std::filesystem::create_directories(d);
    const auto log = d + "/openssl.log";
    auto run = [&](const std::vector<std::string>& args) {
      if (!c.error.empty()) return;
      std::vector<std::string> argv{"/usr/bin/openssl"};
      argv.insert(argv.end(), args.begin(), args.end());
      auto p = ChildProcess::spawn(argv, log);
      if (!p) {
        c.error = p.error().message;
        return;
      }
      const auto st = p->wait(std::chrono::seconds(60));
      if (!st || !WIFEXITED(*st) || WEXITSTATUS(*st) != 0) {
        c.error = fmt::format("openssl {} failed; see {}", args.front(), log);
      }
    };
    auto ca = [&](const std::string& name) {
      run({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
           "-keyout", d + "/" + name + ".key", "-out", d + "/" + name + ".pem", "-subj", "/CN=starling test " + name,
           "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
    };
    static std::mt19937_64 serials(std::random_device{}());
    auto leaf = [&](const std::string& name, const std::string& issuer, const std::string& extensions) {
      const auto ext = d + "/" + name + ".ext";
      std::ofstream(ext) << extensions << "\nbasicConstraints=CA:FALSE\n";
      run({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
           d + "/" + name + ".key", "-out", d + "/" + name + ".csr", "-subj", "/CN=starling test " + name});
      run({"x509", "-req", "-in", d + "/" + name + ".csr", "-CA", d + "/" + issuer + ".pem", "-CAkey",
           d + "/" + issuer + ".key", "-set_serial", std::to_string(serials() >> 2), "-days", "2", "-extfile", ext,
           "-out", d + "/" + name + ".pem"});
    };
    ca("ca");
    ca("other-ca");
    leaf("server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth");
    leaf("client", "ca", "extendedKeyUsage=clientAuth");
    leaf("other-client", "other-ca", "extendedKeyUsage=clientAuth");
    c.ca = d + "/ca.pem";
    c.server_cert = d + "/server.pem";
    c.server_key = d + "/server.key";
    c.client_cert = d + "/client.pem";
    c.client_key = d + "/client.key";
    c.other_ca = d + "/other-ca.pem";
    c.other_client_cert = d + "/other-client.pem";
    c.other_client_key = d + "/other-client.key";
    return c;
  }
};

}  // namespace starling::testing
