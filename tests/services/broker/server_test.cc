// The Server (accept loop, per-connection reader and writer) in-process, in
// front of a fake RequestHandler, driven by raw sockets.
#include "services/broker/server.h"

#include <gtest/gtest.h>

#include <future>
#include <stdexcept>
#include <thread>

#include "services/broker/messages.h"
#include "services/broker/response.h"
#include "tests/services/broker/raw_client.h"

namespace starling::broker {
namespace {

using testing::RawClient;

constexpr int16_t kThrowingApi = 99;

/// Answers every request with an empty body, except that a request for
/// kThrowingApi throws out of the handler.
class FakeHandler : public RequestHandler {
 public:
  asio::awaitable<Result<Reply>> handle(Bytes frame, std::string /*client_host*/) override {
    Reader r(frame);
    auto h = decode_request_header(r);
    if (!h) co_return std::unexpected(h.error());
    if (h->api_key == kThrowingApi) throw std::runtime_error("injected handler failure");
    co_return Response(h->correlation_id).done();
  }
};

/// A Server on 127.0.0.1, port 0, with its io_context on its own thread.
class RunningServer {
 public:
  explicit RunningServer(RequestHandler& handler, ServerConfig config = {})
      : server_(io_, handler, {asio::ip::make_address("127.0.0.1"), 0}, config),
        port_(server_.local_endpoint().port()) {
    server_.start();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~RunningServer() {
    asio::post(io_, [this] {
      server_.stop();
      io_.stop();
    });
    thread_.join();
  }
  uint16_t port() const { return port_; }
  /// Runs `f` on the I/O thread and returns what it returns.
  template <class F>
  auto on_io(F f) {
    std::promise<decltype(f())> done;
    asio::post(io_, [&] { done.set_value(f()); });
    return done.get_future().get();
  }
  size_t connections() {
    return on_io([this] { return server_.connection_count(); });
  }

 private:
  asio::io_context io_{1};
  Server server_;
  uint16_t port_;
  std::thread thread_;
};

bool answered(RawClient& c) { return c.call(18, 0, {}).has_value(); }

TEST(Server, AHandlerThatThrowsClosesOnlyItsConnection) {
  FakeHandler handler;
  RunningServer server(handler);
  RawClient bystander(server.port());
  RawClient victim(server.port());
  ASSERT_TRUE(answered(victim));
  // When a request's handler throws
  ASSERT_TRUE(victim.send_request(kThrowingApi, 0, {}));
  // Then that connection is closed (not left waiting for a reply that never comes)
  EXPECT_TRUE(victim.closed_by_peer());
  // And the other connections, old and new, are still served
  EXPECT_TRUE(answered(bystander));
  RawClient late(server.port());
  EXPECT_TRUE(answered(late));
}

}  // namespace
}  // namespace starling::broker
