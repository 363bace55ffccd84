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
/// coroutine sends the replies strictly in request order. Oversized or
/// undecodable frames close the connection. When accept fails for want of
/// descriptors it pauses (100 ms doubling to 1 s) instead of spinning.
///
/// Threading: runs on the io_context the Broker uses, on a single thread.
class Server {
 public:
  /// Binds and listens; throws at startup when the address is unusable.
  Server(asio::io_context& io, Broker& broker, const asio::ip::tcp::endpoint& listen);
  asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
  void start();
  /// Stops accepting and closes every connection.
  void stop();
  size_t connection_count() const { return sockets_.size(); }

 private:
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> session(std::shared_ptr<asio::ip::tcp::socket> socket);
  asio::awaitable<void> writer(std::shared_ptr<asio::ip::tcp::socket> socket, std::shared_ptr<Pipeline> pipe,
                               std::string peer);

  asio::io_context& io_;
  Broker& broker_;
  asio::ip::tcp::acceptor acceptor_;
  std::set<std::shared_ptr<asio::ip::tcp::socket>> sockets_;
  RateLimit accept_warnings_{std::chrono::seconds(1)};
};

}  // namespace starling::broker
