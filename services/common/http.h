#pragma once
// A small HTTP/1.1 server and client over Boost.Beast, shared by every service
// that speaks HTTP (ingest's front door, the saga API) and by the CLI.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "services/common/error.h"
#include "services/common/tls.h"

namespace starling {

struct HttpRequest {
  std::string method;
  std::string path;                            // target without the query string
  std::map<std::string, std::string> query;    // decoded ?a=b&c=d
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;

  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string{} : it->second;
  }
};

struct HttpResponse {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

/// A JSON error body {"error": {"code": ..., "message": ..., "field": ...}}.
HttpResponse json_error(int status, const std::string& code, const std::string& message, const std::string& field = {});

/// Completes a request. May be called from any thread, exactly once.
using HttpResponder = std::function<void(HttpResponse)>;

/// Handles one request. It may answer later (for example from a Kafka delivery
/// report callback): the connection waits, the server's threads do not.
using HttpHandler = std::function<void(HttpRequest, HttpResponder)>;

/// Whether a --listen value ("127.0.0.1:8081", "[::1]:0", "localhost:80")
/// names a loopback address only.
bool is_loopback_listen(const std::string& host_port);

/// Loads the files as HttpServer::start() does and throws what it would: a
/// std::runtime_error naming the file that is missing, unreadable, not PEM,
/// or a key that does not belong to the certificate.
void check_tls(const TlsOptions& tls);

struct HttpServerOptions {
  std::string address = "127.0.0.1";  // loopback unless told otherwise
  uint16_t port = 0;                  // 0 picks a free port; see HttpServer::port()
  int threads = 2;
  std::size_t body_limit = 8 << 20;     // larger bodies get 413
  std::size_t header_limit = 16 << 10;  // request line + headers; larger gets 431
  int read_timeout_s = 30;  // a whole request must arrive within this (slowloris); idle keep-alive closes too
  // Open connections past this get 503 too_many_connections and are closed;
  // each costs a descriptor and a session (1,000 idle clients cannot starve
  // the process of descriptors).
  std::size_t max_connections = 1024;
  // When enabled, every connection is TLS (1.2 at least): the handshake must
  // finish within read_timeout_s, and a failed one closes that connection only.
  TlsOptions tls;
};

/// Async HTTP server with keep-alive. Threads: `threads` io threads run the
/// handlers; start() returns once the socket is listening.
class HttpServer {
 public:
  HttpServer(HttpServerOptions options, HttpHandler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Binds and starts the io threads. Throws std::runtime_error when the
  /// address cannot be bound, or a TLS file is missing, unreadable or not
  /// what it should be (the message names the file; startup only).
  void start();
  /// Stops accepting and joins the threads. Idempotent.
  void stop();
  /// Graceful stop: closes the listening socket, lets requests already
  /// handed to the handler be answered (up to `timeout`), then stop().
  /// Returns false when some were still unanswered at the deadline.
  bool drain(std::chrono::milliseconds timeout);
  uint16_t port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The server's request path without a socket, for fuzzing and tests. `bytes`
/// is one connection's stream (pipelined requests, then the end of the
/// stream), parsed under `options`' limits and handed to `handler` one request
/// at a time, as the server does. Returns the answers in order, the error
/// answers for malformed requests included; an unfinished request gets none.
/// Waits for each answer (a handler must answer).
std::vector<HttpResponse> serve_bytes(std::string_view bytes, const HttpServerOptions& options,
                                      const HttpHandler& handler);

struct HttpClientOptions {
  int timeout_ms = 10'000;
  // https:// only. The server's certificate is always verified, against
  // `ca_file` (PEM) or else the system's CAs, and must name the URL's host.
  std::string ca_file;
  std::string cert_file;  // a client certificate for mutual TLS, with key_file
  std::string key_file;
};

/// Blocking HTTP client for the CLI and tests. `url` is http://host:port/path
/// or https://host:port/path.
Result<HttpResponse> http_call(const std::string& method, const std::string& url, const std::string& body,
                               const std::map<std::string, std::string>& headers, const HttpClientOptions& options);
Result<HttpResponse> http_call(const std::string& method, const std::string& url, const std::string& body = {},
                               const std::map<std::string, std::string>& headers = {}, int timeout_ms = 10'000);

}  // namespace starling
