#pragma once

#include <memory>
#include <set>

#include "services/broker/asio.h"
#include "services/broker/broker.h"

namespace starling::broker {

/// Accepts TCP connections and runs one session coroutine per connection:
/// read a size-prefixed frame, hand it to the Broker, write the reply. Like
/// Kafka, a connection has one request in progress at a time, so replies are
/// in request order. Oversized or undecodable frames close the connection.
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

  asio::io_context& io_;
  Broker& broker_;
  asio::ip::tcp::acceptor acceptor_;
  std::set<std::shared_ptr<asio::ip::tcp::socket>> sockets_;
};

}  // namespace starling::broker
