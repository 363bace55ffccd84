#include "services/common/http.h"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast.hpp>
#include <boost/beast/ssl.hpp>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "services/common/ids.h"
#include "services/common/log_limit.h"
#include "services/common/text.h"
#include "services/common/tls.h"

namespace starling {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

HttpResponse json_error(int status, const std::string& code, const std::string& message, const std::string& field) {
  nlohmann::json err = {{"code", code}, {"message", message}};
  if (!field.empty()) err["field"] = field;
  // Messages echo client bytes (a path, a query value, a header): never throw on them.
  return HttpResponse{status, json_text(nlohmann::json{{"error", err}}), "application/json", {}};
}

namespace {

// %XX decodes to any byte, so a value may not be UTF-8: whoever echoes it goes
// through json_text or utf8_safe. A '%' not followed by two hex digits stays.
std::string url_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
      continue;
    }
    unsigned byte = 0;
    const char* hex = s.data() + i + 1;
    if (s[i] == '%' && i + 2 < s.size() && std::from_chars(hex, hex + 2, byte, 16).ptr == hex + 2) {
      out += static_cast<char>(byte);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

HttpRequest to_request(const http::request<http::string_body>& req) {
  HttpRequest r;
  r.method = std::string(req.method_string());
  const std::string target(req.target());
  const auto q = target.find('?');
  r.path = target.substr(0, q);
  if (q != std::string::npos) {
    std::string_view rest(target);
    rest.remove_prefix(q + 1);
    while (!rest.empty()) {
      const auto amp = rest.find('&');
      const auto part = rest.substr(0, amp);
      const auto eq = part.find('=');
      r.query[url_decode(part.substr(0, eq))] = eq == std::string_view::npos ? "" : url_decode(part.substr(eq + 1));
      if (amp == std::string_view::npos) break;
      rest.remove_prefix(amp + 1);
    }
  }
  for (const auto& f : req) {
    std::string name(f.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers[name] = std::string(f.value());
  }
  r.body = req.body();
  return r;
}

// What a draining server and its sessions share.
struct Flow {
  std::atomic<int> in_flight{0};  // requests handed to the handler and not yet answered
  std::atomic<bool> draining{false};
  std::atomic<std::size_t> connections{0};  // sessions alive
  std::atomic<std::size_t> refusing{0};     // connections being told 503 too_many_connections
  // A port scanner or a client that does not trust us fails the handshake on
  // every connection: one line per 10 s says so, with how many were held back.
  std::mutex handshake_mu;
  LogLimit handshake_warnings{std::chrono::seconds(10)};

  void handshake_failed(const std::string& peer, const beast::error_code& ec) {
    std::lock_guard lock(handshake_mu);
    if (!handshake_warnings.allow()) return;
    spdlog::warn("https: TLS handshake with {} failed: {} ({} more not logged)", peer, ec.message(),
                 handshake_warnings.take_suppressed());
  }
};

// The answer to a request that could not be read, or nullopt when the
// connection just ends (closed between requests, timed out, reset).
std::optional<HttpResponse> read_error_answer(beast::error_code ec, const HttpServerOptions& opts) {
  if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::connection_reset) {
    return std::nullopt;
  }
  // A TLS record that does not decrypt, or a peer gone without close_notify:
  // the stream cannot carry an answer.
  if (ec.category() == asio::error::get_ssl_category() || ec == ssl::error::stream_truncated) return std::nullopt;
  if (ec == http::error::body_limit) {
    return json_error(413, "body_too_large", fmt::format("request body exceeds {} bytes", opts.body_limit), "body");
  }
  if (ec == http::error::header_limit) {
    return json_error(431, "headers_too_large",
                      fmt::format("request line and headers exceed {} bytes", opts.header_limit), "headers");
  }
  return json_error(400, "bad_request", "not a valid HTTP/1.1 request: " + ec.message(), "request");
}

// No exception escapes a handler: it is logged with a request id, and the
// client gets a 500 naming that id (unless the handler had answered).
void last_resort(const HttpResponder& respond, const http::request<http::string_body>& req, const char* what) {
  const auto id = random_id().substr(0, 16);
  const auto view = [](boost::beast::string_view v) { return utf8_safe(std::string_view(v.data(), v.size())); };
  spdlog::error("request {}: {} {}: handler failed: {}", id, view(req.method_string()), view(req.target()),
                utf8_safe(what));
  auto resp = json_error(500, "internal_error", fmt::format("the server failed on this request (request id {})", id));
  resp.headers.emplace_back("X-Request-Id", id);
  respond(std::move(resp));
}

// Hands one request to the handler. `respond` must let only its first answer
// through: a handler that answers and then throws keeps its own answer.
void dispatch(const HttpHandler& handler, const http::request<http::string_body>& req, const HttpResponder& respond) {
  try {
    handler(to_request(req), respond);
  } catch (const std::exception& e) {
    last_resort(respond, req, e.what());
  } catch (...) {
    last_resort(respond, req, "an exception that is not a std::exception");
  }
}

void limit(http::request_parser<http::string_body>& parser, const HttpServerOptions& opts) {
  parser.body_limit(opts.body_limit);
  parser.header_limit(static_cast<std::uint32_t>(opts.header_limit));
}

// What differs between a plain and a TLS connection, so that Session and
// Refusal are written once over the stream type.
beast::tcp_stream& tcp_of(beast::tcp_stream& s) { return s; }
beast::tcp_stream& tcp_of(TlsStream& s) { return s.next_layer(); }

// Taken before the handshake: a timed-out socket no longer knows its peer.
tcp::endpoint peer_of(const tcp::socket& s) {
  beast::error_code ec;
  auto ep = s.remote_endpoint(ec);
  return ec ? tcp::endpoint{} : ep;
}

// Plain: nothing to do. TLS: the server side of the handshake.
template <class Done>
void handshake(beast::tcp_stream& /*stream*/, Done&& done) {
  std::forward<Done>(done)(beast::error_code{});
}
template <class Done>
void handshake(TlsStream& stream, Done&& done) {
  stream.async_handshake(ssl::stream_base::server, std::forward<Done>(done));
}

// Ends the sending side: plain half-closes the socket; TLS sends close_notify
// first (bounded by the stream's timer, as the peer may never answer it).
template <class Done>
void goodbye(beast::tcp_stream& stream, Done&& done) {
  beast::error_code ec;
  (void)stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  std::forward<Done>(done)();
}
template <class Done>
void goodbye(TlsStream& stream, Done&& done) {
  stream.next_layer().expires_after(std::chrono::seconds(1));
  stream.async_shutdown([&stream, done = std::forward<Done>(done)](beast::error_code) mutable {
    beast::error_code ec;
    (void)stream.next_layer().socket().shutdown(tcp::socket::shutdown_send, ec);
    done();
  });
}

template <class Stream>
Stream make_stream(tcp::socket socket, ssl::context* tls) {
  if constexpr (std::is_same_v<Stream, TlsStream>) {
    STARLING_ASSERT(tls != nullptr, "a TLS session without a TLS context");
    return Stream(std::move(socket), *tls);
  } else {
    return Stream(std::move(socket));
  }
}

template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(tcp::socket socket, ssl::context* tls, const HttpHandler& handler, const HttpServerOptions& opts, Flow& flow)
      : stream_(make_stream<Stream>(std::move(socket), tls)), handler_(handler), opts_(opts), flow_(flow) {
    flow_.connections.fetch_add(1);
  }
  ~Session() { flow_.connections.fetch_sub(1); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // The handshake (TLS) counts against the read timeout like slow headers.
  void start() {
    tcp_of(stream_).expires_after(std::chrono::seconds(opts_.read_timeout_s));
    handshake(stream_,
              [self = this->shared_from_this(), peer = peer_of(tcp_of(stream_).socket())](beast::error_code ec) {
                if (ec) {
                  self->flow_.handshake_failed(fmt::format("{}:{}", peer.address().to_string(), peer.port()), ec);
                  beast::error_code ignore;
                  (void)tcp_of(self->stream_).socket().close(ignore);
                  return;
                }
                self->read();
              });
  }

 private:
  void read() {
    parser_.emplace();
    limit(*parser_, opts_);
    tcp_of(stream_).expires_after(std::chrono::seconds(opts_.read_timeout_s));
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec) {
      auto answer = read_error_answer(ec, opts_);
      if (!answer) return close();
      keep_alive_ = false;
      send(std::move(*answer));
      return;
    }
    if (!parser_) return close();  // read() always sets one
    auto req = parser_->release();
    keep_alive_ = req.keep_alive();
    tcp_of(stream_).expires_never();  // the handler may take a while (durable acks)
    auto self = this->shared_from_this();
    // Counted before the check, so that drain() either sees this request in
    // flight or we see it draining: a request is answered or never started.
    flow_.in_flight.fetch_add(1);
    if (flow_.draining) {
      flow_.in_flight.fetch_sub(1);
      keep_alive_ = false;
      auto resp = json_error(503, "draining", "the server is shutting down; retry");
      resp.headers.emplace_back("Retry-After", "1");
      send(std::move(resp));
      return;
    }
    // Exactly one answer per request, whoever gives it: the handler, or the
    // last-resort catch below when the handler throws before answering.
    auto answered = std::make_shared<std::atomic<bool>>(false);
    HttpResponder respond = [self, answered](HttpResponse resp) {
      if (answered->exchange(true)) return;
      // Responders run on foreign threads; hop onto this connection's executor.
      asio::post(self->stream_.get_executor(),
                 [self, resp = std::move(resp)]() mutable { self->send(std::move(resp), /*counted=*/true); });
    };
    dispatch(handler_, req, respond);
  }

  // `counted`: the answer to a request drain() waits for; it stops counting
  // once the answer is written, not when the write starts.
  void send(HttpResponse resp, bool counted = false) {
    auto msg = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(resp.status), 11);
    msg->set(http::field::server, "starling");
    msg->set(http::field::content_type, resp.content_type);
    for (const auto& [k, v] : resp.headers) msg->set(k, v);
    if (flow_.draining) keep_alive_ = false;  // tell keep-alive clients to reconnect elsewhere
    msg->keep_alive(keep_alive_);
    msg->body() = std::move(resp.body);
    msg->prepare_payload();
    http::async_write(stream_, *msg,
                      [self = this->shared_from_this(), msg, counted](beast::error_code ec, std::size_t) {
                        if (counted) self->flow_.in_flight.fetch_sub(1);
                        if (ec || !self->keep_alive_) {
                          self->close();
                        } else {
                          self->read();
                        }
                      });
  }

  void close() {
    goodbye(stream_, [self = this->shared_from_this()] {});
  }

  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  const HttpHandler& handler_;
  const HttpServerOptions& opts_;
  Flow& flow_;
  bool keep_alive_ = true;
};

// One connection over max_connections: it is told so (503 with Retry-After),
// then its request bytes are read and dropped until it closes or a second
// passes, so that closing does not reset the connection before the client
// read the answer. Over TLS the handshake comes first, within that second.
template <class Stream>
class Refusal : public std::enable_shared_from_this<Refusal<Stream>> {
 public:
  Refusal(tcp::socket socket, ssl::context* tls, const HttpServerOptions& opts, Flow& flow)
      : stream_(make_stream<Stream>(std::move(socket), tls)), flow_(flow) {
    flow_.refusing.fetch_add(1);
    auto resp = json_error(503, "too_many_connections",
                           fmt::format("the server holds its limit of {} connections; retry", opts.max_connections));
    msg_.result(http::status::service_unavailable);
    msg_.version(11);
    msg_.set(http::field::server, "starling");
    msg_.set(http::field::content_type, resp.content_type);
    msg_.set(http::field::retry_after, "1");
    msg_.keep_alive(false);
    msg_.body() = std::move(resp.body);
    msg_.prepare_payload();
  }
  ~Refusal() { flow_.refusing.fetch_sub(1); }
  Refusal(const Refusal&) = delete;
  Refusal& operator=(const Refusal&) = delete;

  void start() {
    tcp_of(stream_).expires_after(std::chrono::seconds(1));
    handshake(stream_, [self = this->shared_from_this()](beast::error_code ec) {
      if (ec) return;
      http::async_write(self->stream_, self->msg_, [self](beast::error_code ec, std::size_t) {
        if (ec) return;
        goodbye(self->stream_, [self] { self->drop(); });
      });
    });
  }

 private:
  void drop() {
    tcp_of(stream_).async_read_some(asio::buffer(sink_),
                                    [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                                      if (!ec) self->drop();
                                    });
  }

  Stream stream_;
  http::response<http::string_body> msg_;
  std::array<char, 4096> sink_{};
  Flow& flow_;
};

bool out_of_descriptors(const beast::error_code& ec) {
  return ec == asio::error::no_descriptors || ec.value() == ENFILE || ec == asio::error::no_buffer_space ||
         ec == asio::error::no_memory;
}

}  // namespace

struct HttpServer::Impl {
  HttpServerOptions opts;
  HttpHandler handler;
  asio::io_context ioc;
  // Keeps the io threads running while a request waits for its handler and
  // nothing else is pending (the acceptor closed by drain()).
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  tcp::acceptor acceptor{ioc};
  std::vector<std::thread> threads;
  uint16_t port = 0;
  bool running = false;
  Flow flow;
  std::shared_ptr<ssl::context> tls;  // set by start() when opts.tls is enabled

  // On the io threads, where the pending accept runs: the acceptor is not thread-safe.
  void close_acceptor() {
    asio::post(ioc, [this] {
      beast::error_code ec;
      (void)acceptor.close(ec);
    });
  }

  // The accept chain: one accept pending at a time, so these run one by one.
  asio::steady_timer backoff{ioc};
  std::chrono::milliseconds pause{0};
  LogLimit accept_warnings{std::chrono::seconds(1)};
  LogLimit refusal_warnings{std::chrono::seconds(10)};

  void accept() {
    acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
      if (!acceptor.is_open()) return;
      if (out_of_descriptors(ec)) {
        // The pending connection stays in the backlog; retrying at once would
        // spin. Open connections are served meanwhile.
        pause = std::clamp(pause * 2, std::chrono::milliseconds(100), std::chrono::milliseconds(1000));
        if (accept_warnings.allow()) {
          spdlog::warn("http accept: {} ({} connections open); retrying in {} ms ({} more not logged)", ec.message(),
                       flow.connections.load(), pause.count(), accept_warnings.take_suppressed());
        }
        backoff.expires_after(pause);
        backoff.async_wait([this](beast::error_code) { accept(); });
        return;
      }
      pause = std::chrono::milliseconds(0);
      if (!ec) admit(std::move(socket));
      accept();
    });
  }

  template <class Stream>
  void admit_as(tcp::socket socket) {
    auto* context = tls.get();
    if (flow.connections.load() < opts.max_connections) {
      std::make_shared<Session<Stream>>(std::move(socket), context, handler, opts, flow)->start();
      return;
    }
    if (refusal_warnings.allow()) {
      spdlog::warn("http: refusing a connection: {} open, the limit ({} more refused, not logged)",
                   opts.max_connections, refusal_warnings.take_suppressed());
    }
    // Telling costs a little; past as many again, close without a word.
    if (flow.refusing.load() < opts.max_connections) {
      std::make_shared<Refusal<Stream>>(std::move(socket), context, opts, flow)->start();
    }
  }

  void admit(tcp::socket socket) {
    if (tls) {
      admit_as<TlsStream>(std::move(socket));
    } else {
      admit_as<beast::tcp_stream>(std::move(socket));
    }
  }
};

void check_tls(const TlsOptions& tls) { (void)tls_server_context(tls); }

HttpServer::HttpServer(HttpServerOptions options, HttpHandler handler) : impl_(std::make_unique<Impl>()) {
  impl_->opts = std::move(options);
  impl_->handler = std::move(handler);
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() {
  auto& i = *impl_;
  if (i.opts.tls.enabled()) i.tls = tls_server_context(i.opts.tls);
  const tcp::endpoint ep(asio::ip::make_address(i.opts.address), i.opts.port);
  i.acceptor.open(ep.protocol());
  i.acceptor.set_option(asio::socket_base::reuse_address(true));
  beast::error_code ec;
  (void)i.acceptor.bind(ep, ec);  // ec is checked below
  if (ec) throw std::runtime_error(fmt::format("cannot bind {}:{}: {}", i.opts.address, i.opts.port, ec.message()));
  i.acceptor.listen(asio::socket_base::max_listen_connections);
  i.port = i.acceptor.local_endpoint().port();
  i.accept();
  i.running = true;
  i.work.emplace(i.ioc.get_executor());
  for (int t = 0; t < std::max(1, i.opts.threads); ++t) {
    i.threads.emplace_back([&i] {
      // An exception out of an io handler (not a request handler: those are
      // caught per request) must not end the process: log it and go on.
      for (;;) {
        try {
          i.ioc.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("http server: {}; serving on", utf8_safe(e.what()));
        }
      }
    });
  }
}

bool HttpServer::drain(std::chrono::milliseconds timeout) {
  auto& i = *impl_;
  if (!i.running) return true;
  i.flow.draining = true;
  i.close_acceptor();
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (i.flow.in_flight.load() > 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const bool drained = i.flow.in_flight.load() == 0;
  if (!drained) spdlog::warn("http drain: {} request(s) unanswered", i.flow.in_flight.load());
  stop();
  return drained;
}

void HttpServer::stop() {
  auto& i = *impl_;
  if (!i.running) return;
  i.running = false;
  i.close_acceptor();
  i.work.reset();
  i.ioc.stop();
  for (auto& t : i.threads) t.join();
  i.threads.clear();
}

uint16_t HttpServer::port() const { return impl_->port; }

std::vector<HttpResponse> serve_bytes(std::string_view bytes, const HttpServerOptions& options,
                                      const HttpHandler& handler) {
  std::vector<HttpResponse> answers;
  for (;;) {
    http::request_parser<http::string_body> parser;
    limit(parser, options);
    beast::error_code ec;
    while (!ec && !parser.is_done()) {
      if (bytes.empty()) {
        // The end of the stream: between requests the connection just ends.
        if (parser.got_some()) {
          parser.put_eof(ec);
        } else {
          ec = http::error::end_of_stream;
        }
        break;
      }
      const auto used = parser.put(asio::buffer(bytes.data(), bytes.size()), ec);
      bytes.remove_prefix(used);
      if (ec == http::error::need_more) {
        ec = {};
        if (used == 0) bytes = {};  // what is left is not a whole header: the stream ends mid-request
      }
    }
    if (ec) {
      if (auto answer = read_error_answer(ec, options)) answers.push_back(std::move(*answer));
      return answers;
    }
    const auto req = parser.release();
    auto answer = std::make_shared<std::promise<HttpResponse>>();
    auto answered = std::make_shared<std::atomic<bool>>(false);
    dispatch(handler, req, [answer, answered](HttpResponse r) {
      if (!answered->exchange(true)) answer->set_value(std::move(r));
    });
    answers.push_back(answer->get_future().get());
    if (!req.keep_alive()) return answers;
  }
}

namespace {

template <class Stream>
HttpResponse round_trip(Stream& stream, const http::request<http::string_body>& req) {
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(256 << 20);
  http::read(stream, buffer, parser);
  const auto& res = parser.get();
  HttpResponse out{static_cast<int>(res.result_int()), res.body(), std::string(res[http::field::content_type]), {}};
  for (const auto& f : res) out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  return out;
}

}  // namespace

Result<HttpResponse> http_call(const std::string& method, const std::string& url, const std::string& body,
                               const std::map<std::string, std::string>& headers, int timeout_ms) {
  return http_call(method, url, body, headers, HttpClientOptions{.timeout_ms = timeout_ms});
}

Result<HttpResponse> http_call(const std::string& method, const std::string& url, const std::string& body,
                               const std::map<std::string, std::string>& headers, const HttpClientOptions& options) {
  const bool https = url.starts_with("https://");
  if (!https && !url.starts_with("http://")) {
    return fail(Errc::kInvalidArgument, "expected an http:// or https:// URL, got " + url);
  }
  const auto rest = url.substr(url.find("://") + 3);
  const auto slash = rest.find('/');
  const auto hostport = rest.substr(0, slash);
  const auto target = slash == std::string::npos ? std::string("/") : rest.substr(slash);
  const auto colon = hostport.rfind(':');
  const auto host = hostport.substr(0, colon);
  const auto port = colon == std::string::npos ? std::string(https ? "443" : "80") : hostport.substr(colon + 1);
  http::request<http::string_body> req(http::string_to_verb(method), target, 11);
  req.set(http::field::host, host);
  req.set(http::field::content_type, "application/json");
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  req.prepare_payload();
  try {
    asio::io_context ioc;
    tcp::resolver resolver(ioc);
    if (!https) {
      beast::tcp_stream stream(ioc);
      stream.expires_after(std::chrono::milliseconds(options.timeout_ms));
      stream.connect(resolver.resolve(host, port));
      auto out = round_trip(stream, req);
      beast::error_code ec;
      (void)stream.socket().shutdown(tcp::socket::shutdown_both, ec);
      return out;
    }
    std::shared_ptr<ssl::context> ctx;
    try {
      ctx = tls_client_context(options.ca_file, options.cert_file, options.key_file);
    } catch (const std::runtime_error& e) {
      return fail(Errc::kInvalidArgument, fmt::format("{} {}: {}", method, url, e.what()));
    }
    TlsStream stream(ioc, *ctx);
    stream.next_layer().expires_after(std::chrono::milliseconds(options.timeout_ms));
    stream.next_layer().connect(resolver.resolve(host, port));
    // The certificate must name the host (a DNS name, or an IP address SAN);
    // SNI only for names, as RFC 6066 has no IP addresses.
    beast::error_code ec;
    (void)asio::ip::make_address(host, ec);
    if (ec && SSL_set_tlsext_host_name(stream.native_handle(), host.c_str()) != 1) {
      return fail(Errc::kInvalidArgument, fmt::format("{} {}: bad host name for TLS", method, url));
    }
    stream.set_verify_callback(ssl::host_name_verification(host));
    stream.handshake(ssl::stream_base::client);
    auto out = round_trip(stream, req);
    // No close_notify round trip: the server ends the session either way.
    (void)stream.next_layer().socket().shutdown(tcp::socket::shutdown_both, ec);
    return out;
  } catch (const beast::system_error& e) {
    return fail(Errc::kUnavailable, fmt::format("{} {}: {}", method, url, e.code().message()));
  }
}

bool is_loopback_listen(const std::string& host_port) {
  std::string host = host_port.substr(0, host_port.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host == "localhost" || host == "::1" ||
         (host.starts_with("127.") && host.find_first_not_of("0123456789.") == std::string::npos);
}

}  // namespace starling
