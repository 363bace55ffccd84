#pragma once
// A throw-away mosquitto for one test: Debian's /usr/sbin/mosquitto with a
// generated config, loopback only, a free port, persistence in the test's
// folder. Killed with the test (ChildProcess). With TLS options it also has a
// TLS listener on a second free port (devices keep publishing on the plain one).

#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "services/common/process.h"
#include "tests/support/free_port.h"

namespace starling::testing {

/// mosquitto's TLS listener: its certificate and key, and the CA that
/// client certificates must be signed by when `require_certificate`.
struct MosquittoTls {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  bool require_certificate = false;
};

class MosquittoServer {
 public:
  explicit MosquittoServer(const std::string& dir) : dir_(dir + "/mosquitto"), port_(free_port()) {
    std::filesystem::create_directories(dir_);
  }
  MosquittoServer(const std::string& dir, MosquittoTls tls) : MosquittoServer(dir) {
    tls_ = std::move(tls);
    tls_port_ = free_port();
  }

  /// Writes the config, starts mosquitto and waits until it accepts TCP.
  bool start() {
    std::ofstream conf(dir_ + "/mosquitto.conf");
    conf << fmt::format("listener {} 127.0.0.1\n", port_) << "allow_anonymous true\n"
         << "persistence true\n"
         << "persistence_location " << dir_
         << "/\n"
         // The bridge's session must hold every message published while
         // ingest is down; the default (1000) would drop the rest.
         << "max_queued_messages 1000000\n"
         << "log_dest stdout\n"
         << "log_type error\nlog_type warning\nlog_type notice\n"
         // As root, mosquitto would switch to the `mosquitto` user, who cannot write our folder.
         << (::geteuid() == 0 ? "user root\n" : "");
    if (tls_port_ != 0) {
      // per_listener_settings is off: allow_anonymous above covers this listener too.
      conf << fmt::format("listener {} 127.0.0.1\n", tls_port_) << "cafile " << tls_.ca_file << "\n"
           << "certfile " << tls_.cert_file << "\n"
           << "keyfile " << tls_.key_file << "\n"
           << "tls_version tlsv1.2\n"
           << "require_certificate " << (tls_.require_certificate ? "true" : "false") << "\n";
    }
    conf.close();
    auto p = ChildProcess::spawn({"/usr/sbin/mosquitto", "-c", dir_ + "/mosquitto.conf"}, dir_ + "/mosquitto.log");
    if (!p) return false;
    proc_ = std::move(*p);
    for (int i = 0; i < 200; ++i) {
      if (accepts(port_) && (tls_port_ == 0 || accepts(tls_port_))) return true;
      if (!proc_.running()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  uint16_t port() const { return port_; }
  std::string address() const { return fmt::format("127.0.0.1:{}", port_); }
  /// The TLS listener's (0 and "127.0.0.1:0" without TLS options).
  uint16_t tls_port() const { return tls_port_; }
  std::string tls_address() const { return fmt::format("127.0.0.1:{}", tls_port_); }
  std::string log_path() const { return dir_ + "/mosquitto.log"; }

 private:
  static bool accepts(uint16_t port) { return loopback_accepts(port); }

  std::string dir_;
  uint16_t port_;
  MosquittoTls tls_;
  uint16_t tls_port_ = 0;
  ChildProcess proc_;
};

}  // namespace starling::testing
