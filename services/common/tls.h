#pragma once
// TLS contexts (OpenSSL through Boost.Asio) for the HTTP server and client
// and the MQTT bridge: one place decides the protocol floor and how a bad
// file is reported.

#include <memory>
#include <string>

namespace boost::asio::ssl {
class context;  // NOLINT(readability-identifier-naming): Boost's name
}  // namespace boost::asio::ssl

namespace starling {

/// TLS for a listener: PEM files, read and checked when the server starts.
struct TlsOptions {
  std::string cert_file;       // the server's certificate, then any intermediates
  std::string key_file;        // its private key (unencrypted)
  std::string client_ca_file;  // set: mutual TLS; a client must present a certificate this CA signed
  bool enabled() const { return !cert_file.empty() || !key_file.empty() || !client_ca_file.empty(); }
};

/// A server context: TLS 1.2 or newer, the certificate and its key, and with
/// a client CA a client certificate that it signed is required. Throws
/// std::runtime_error naming the file that is missing, unreadable, not PEM,
/// or a key that does not belong to the certificate (startup only).
std::shared_ptr<boost::asio::ssl::context> tls_server_context(const TlsOptions& tls);

/// A client context: TLS 1.2 or newer, the peer's certificate always
/// verified, against `ca_file` (PEM) or, when empty, the system's CAs; with
/// `cert_file` and `key_file` a client certificate for mutual TLS. Checking
/// that the certificate names the host is the caller's (per connection).
/// Throws as tls_server_context does.
std::shared_ptr<boost::asio::ssl::context> tls_client_context(const std::string& ca_file, const std::string& cert_file,
                                                              const std::string& key_file);

}  // namespace starling
