#include "services/common/tls.h"

#include <fmt/format.h>
#include <openssl/ssl.h>

#include <boost/asio/ssl.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <utility>

namespace starling {

namespace ssl = boost::asio::ssl;
using boost::system::error_code;

namespace {

// A file named in the options: one that cannot be read is named in the
// error, before OpenSSL's less helpful word for it.
void check_readable(const std::string& what, const std::string& file) {
  const std::ifstream in(file);
  if (!in) throw std::runtime_error(fmt::format("{} {}: cannot be read: {}", what, file, std::strerror(errno)));
}

// Runs one of ssl::context's loaders on `file`; its failure names the file.
template <class Load>
void load_pem(const std::string& what, const std::string& file, Load&& load) {
  check_readable(what, file);
  error_code ec;
  std::forward<Load>(load)(ec);
  if (ec) throw std::runtime_error(fmt::format("{} {}: {}", what, file, ec.message()));
}

// TLS 1.2 at least; an encrypted key fails to load instead of OpenSSL asking
// for its passphrase on the terminal.
std::shared_ptr<ssl::context> base_context(ssl::context::method method) {
  auto ctx = std::make_shared<ssl::context>(method);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                   ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  ctx->set_password_callback([](std::size_t, ssl::context::password_purpose) { return std::string(); });
  return ctx;
}

void load_key_pair(ssl::context& ctx, const std::string& cert_file, const std::string& key_file) {
  if (cert_file.empty() || key_file.empty()) {
    throw std::runtime_error(
        fmt::format("TLS needs a certificate and its key (certificate '{}', key '{}')", cert_file, key_file));
  }
  load_pem("TLS certificate", cert_file, [&](error_code& ec) { (void)ctx.use_certificate_chain_file(cert_file, ec); });
  load_pem("TLS key", key_file,
           [&](error_code& ec) { (void)ctx.use_private_key_file(key_file, ssl::context::pem, ec); });
  if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
    throw std::runtime_error(fmt::format("TLS key {} does not belong to the certificate {}", key_file, cert_file));
  }
}

}  // namespace

std::shared_ptr<ssl::context> tls_server_context(const TlsOptions& tls) {
  auto ctx = base_context(ssl::context::tls_server);
  load_key_pair(*ctx, tls.cert_file, tls.key_file);
  if (!tls.client_ca_file.empty()) {
    load_pem("TLS client CA", tls.client_ca_file,
             [&](error_code& ec) { (void)ctx->load_verify_file(tls.client_ca_file, ec); });
    // Tells clients which CA to pick a certificate for.
    if (auto* names = SSL_load_client_CA_file(tls.client_ca_file.c_str())) {
      SSL_CTX_set_client_CA_list(ctx->native_handle(), names);
    }
    ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  }
  return ctx;
}

std::shared_ptr<ssl::context> tls_client_context(const std::string& ca_file, const std::string& cert_file,
                                                 const std::string& key_file) {
  auto ctx = base_context(ssl::context::tls_client);
  if (ca_file.empty()) {
    error_code ec;
    (void)ctx->set_default_verify_paths(ec);
    if (ec) throw std::runtime_error("the system's CA certificates: " + ec.message());
  } else {
    load_pem("TLS CA", ca_file, [&](error_code& ec) { (void)ctx->load_verify_file(ca_file, ec); });
  }
  if (!cert_file.empty() || !key_file.empty()) load_key_pair(*ctx, cert_file, key_file);
  ctx->set_verify_mode(ssl::verify_peer);
  return ctx;
}

}  // namespace starling
