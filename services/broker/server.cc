#include "services/broker/server.h"

#include <spdlog/spdlog.h>

namespace starling::broker {

using asio::ip::tcp;

Server::Server(asio::io_context& io, Broker& broker, const tcp::endpoint& listen)
    : io_(io), broker_(broker), acceptor_(io) {
  acceptor_.open(listen.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(listen);
  acceptor_.listen();
}

void Server::start() { asio::co_spawn(io_, accept_loop(), asio::detached); }

void Server::stop() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  for (const auto& s : sockets_) s->close(ec);
  sockets_.clear();
}

asio::awaitable<void> Server::accept_loop() {
  while (acceptor_.is_open()) {
    boost::system::error_code ec;
    auto socket = std::make_shared<tcp::socket>(co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec)));
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      spdlog::warn("accept failed: {}", ec.message());
      continue;
    }
    socket->set_option(tcp::no_delay(true), ec);
    sockets_.insert(socket);
    asio::co_spawn(io_, session(socket), asio::detached);
  }
}

asio::awaitable<void> Server::session(std::shared_ptr<tcp::socket> socket) {
  boost::system::error_code ec;
  auto remote = socket->remote_endpoint(ec);
  std::string peer = ec ? "?" : remote.address().to_string();
  const size_t max_frame = broker_.config().max_frame_bytes;
  for (;;) {
    uint8_t size_buf[4];
    co_await asio::async_read(*socket, asio::buffer(size_buf), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    int32_t size = load_be32(size_buf);
    // The smallest valid request is a v1 header with a null client id: 10 bytes.
    if (size < 10 || static_cast<size_t>(size) > max_frame) {
      spdlog::warn("{}: closing connection: frame size {} outside [10, {}]", peer, size, max_frame);
      break;
    }
    Bytes frame(static_cast<size_t>(size));
    co_await asio::async_read(*socket, asio::buffer(frame), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    auto reply = co_await broker_.handle(std::move(frame), peer);
    if (!reply) {
      spdlog::warn("{}: closing connection: {}", peer, reply.error().message);
      break;
    }
    if (!reply->buffers.empty()) {
      std::vector<asio::const_buffer> bufs;
      bufs.reserve(reply->buffers.size());
      for (const auto& b : reply->buffers) bufs.emplace_back(asio::buffer(b));
      co_await asio::async_write(*socket, bufs, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
  }
  socket->close(ec);
  sockets_.erase(socket);
}

}  // namespace starling::broker
