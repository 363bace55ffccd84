#pragma once

#include <memory>
#include <set>

#include "services/broker/asio.h"
#include "services/broker/broker.h"

namespace starling::broker {

struct Pipeline;

/// Lets one log line through per interval and counts the ones it held back,
/// so a failure repeating in a loop cannot flood the log.
class RateLimit {
 public:
  explicit RateLimit(Clock::duration interval) : interval_(interval) {}
  bool allow(Clock::time_point now);
  /// How many were held back since the last call.
  size_t take_suppressed();

 private:
  Clock::duration interval_;
  Clock::time_point next_{};
  size_t suppressed_ = 0;
};

/// Accepts TCP connections; per connection a reader coroutine reads
/// size-prefixed frames and starts a Broker handler for each, and a writer
/// coroutine sends the replies strictly in request order (handlers come from
/// a RequestHandler, the Broker). Oversized or
/// undecodable frames close the connection. When accept fails for want of
/// descriptors it pauses (100 ms doubling to 1 s) instead of spinning.
///
/// Threading: runs on the io_context the Broker uses, on a single thread.
struct ServerConfig {
  /// Frames larger than this close the connection (Kafka's socket.request.max.bytes).
  size_t max_frame_bytes = 100u << 20;
};

class Server {
 public:
  /// Binds and listens; throws at startup when the address is unusable.
  Server(asio::io_context& io, RequestHandler& handler, const asio::ip::tcp::endpoint& listen,
         ServerConfig config = {});
  asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
  void start();
  /// Stops accepting and closes every connection.
  void stop();
  size_t connection_count() const { return sockets_.size(); }

 private:
  asio::awaitable<void> accept_loop();
  // Each coroutine that runs detached catches what its body throws, logs it
  // and closes the connection it serves, so nothing escapes it.
  asio::awaitable<void> session(std::shared_ptr<asio::ip::tcp::socket> socket);
  asio::awaitable<void> read_requests(std::shared_ptr<asio::ip::tcp::socket> socket, std::shared_ptr<Pipeline> pipe,
                                      std::string peer);
  asio::awaitable<void> writer(std::shared_ptr<asio::ip::tcp::socket> socket, std::shared_ptr<Pipeline> pipe,
                               std::string peer);
  asio::awaitable<void> write_replies(std::shared_ptr<asio::ip::tcp::socket> socket, std::shared_ptr<Pipeline> pipe,
                                      const std::string& peer);

  asio::io_context& io_;
  RequestHandler& handler_;
  ServerConfig config_;
  asio::ip::tcp::acceptor acceptor_;
  std::set<std::shared_ptr<asio::ip::tcp::socket>> sockets_;
  RateLimit accept_warnings_{std::chrono::seconds(1)};
};

}  // namespace starling::broker
