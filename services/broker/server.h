#pragma once

#include <memory>
#include <set>

#include "services/broker/asio.h"
#include "services/broker/broker.h"

namespace starling::broker {

struct Pipeline;

/// Accepts TCP connections; per connection a reader coroutine reads
/// size-prefixed frames and starts a Broker handler for each, and a writer
/// coroutine sends the replies strictly in request order. Oversized or
/// undecodable frames close the connection.
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
};

}  // namespace starling::broker
