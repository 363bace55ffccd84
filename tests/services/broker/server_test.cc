// The Server (accept loop, per-connection reader and writer) in-process, in
// front of a fake RequestHandler, driven by raw sockets.
#include "services/broker/server.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>
#include <vector>

#include "services/broker/messages.h"
#include "services/broker/response.h"
#include "tests/services/broker/raw_client.h"

namespace starling::broker {
namespace {

using testing::RawClient;

constexpr int16_t kThrowingApi = 99;
constexpr int16_t kHeldApi = 98;

/// Answers every request with an empty body, except that a request for
/// kThrowingApi throws out of the handler and one for kHeldApi is answered
/// only after release_held().
class FakeHandler : public RequestHandler {
 public:
  explicit FakeHandler(asio::io_context& io) : io_(io) {}
  asio::awaitable<Result<Reply>> handle(Bytes frame, std::string /*client_host*/) override {
    ++started_;
    Reader r(frame);
    auto h = decode_request_header(r);
    if (!h) co_return std::unexpected(h.error());
    if (h->api_key == kThrowingApi) throw std::runtime_error("injected handler failure");
    if (h->api_key == kHeldApi) {
      auto held = std::make_shared<Pending<bool>>(io_.get_executor());
      held_.push_back(held);
      co_await held->wait_until(Clock::time_point::max());
    }
    co_return Response(*h).done();
  }
  /// I/O thread only.
  size_t started() const { return started_; }
  void release_held() {
    for (auto& p : held_) p->wake();
    held_.clear();
  }

 private:
  asio::io_context& io_;
  size_t started_ = 0;
  std::vector<std::shared_ptr<Pending<bool>>> held_;
};

/// A Server on 127.0.0.1, port 0, in front of a FakeHandler, with its
/// io_context on its own thread.
class RunningServer {
 public:
  explicit RunningServer(ServerConfig config = {})
      : handler_(io_),
        server_(io_, handler_, {asio::ip::make_address("127.0.0.1"), 0}, config),
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
  /// Polls `condition` on the I/O thread until it holds, for at most 10 s.
  template <class F>
  bool eventually(F condition) {
    for (int i = 0; i < 1000; ++i) {
      if (on_io(condition)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  FakeHandler& handler() { return handler_; }
  const Server& server() const { return server_; }

 private:
  asio::io_context io_{1};
  FakeHandler handler_;
  Server server_;
  uint16_t port_;
  std::thread thread_;
};

bool answered(RawClient& c) { return c.call(18, 0, {}).has_value(); }

TEST(Server, AHandlerThatThrowsClosesOnlyItsConnection) {
  RunningServer server;
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

/// A request of `body_bytes` bytes of body for `api_key`; its frame size is
/// body_bytes + 18 (header v1 with client id "raw-test").
bool send_sized(RawClient& c, int16_t api_key, size_t body_bytes, int32_t correlation_id = 1) {
  return c.send_request(api_key, 0, Bytes(body_bytes, 0), correlation_id);
}
constexpr size_t kHeaderBytes = 18;

TEST(Server, AFrameThatWouldExceedTheInFlightBudgetIsNotReadUntilHandlersReleaseBytes) {
  ServerConfig config;
  config.max_inflight_request_bytes = 1000;
  RunningServer server(config);
  RawClient first(server.port());
  RawClient second(server.port());
  // Given a 718-byte request whose handler has not finished
  ASSERT_TRUE(send_sized(first, kHeldApi, 700));
  ASSERT_TRUE(server.eventually([&] { return server.handler().started() == 1; }));
  EXPECT_EQ(server.on_io([&] { return server.server().inflight().in_use(); }), 700 + kHeaderBytes);
  // When another connection sends a request that does not fit beside it
  ASSERT_TRUE(send_sized(second, kHeldApi, 700));
  // Then that connection waits for the budget, its request not started
  ASSERT_TRUE(server.eventually([&] { return server.server().inflight().waiting() == 1; }));
  EXPECT_EQ(server.on_io([&] { return server.handler().started(); }), 1u);
  // And once the first handler finishes, the second request is read and handled
  server.on_io([&] {
    server.handler().release_held();
    return true;
  });
  EXPECT_TRUE(first.read_frame().has_value());
  ASSERT_TRUE(server.eventually([&] { return server.handler().started() == 2; }));
  EXPECT_EQ(server.on_io([&] { return server.server().inflight().waiting(); }), 0u);
  server.on_io([&] {
    server.handler().release_held();
    return true;
  });
  EXPECT_TRUE(second.read_frame().has_value());
  ASSERT_TRUE(server.eventually([&] { return server.server().inflight().in_use() == 0; }));
}

TEST(Server, AFrameLargerThanTheWholeInFlightBudgetIsTakenWhenNothingElseIsInFlight) {
  ServerConfig config;
  config.max_inflight_request_bytes = 100;
  RunningServer server(config);
  RawClient c(server.port());
  ASSERT_TRUE(send_sized(c, 18, 5000, 7));
  auto reply = c.read_frame();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(load_be32(reply->data()), 7);
  ASSERT_TRUE(server.eventually([&] { return server.server().inflight().in_use() == 0; }));
}

TEST(Server, AConnectionOverTheCapIsClosedAtOnceAndTheOthersAreServed) {
  ServerConfig config;
  config.max_connections = 2;
  RunningServer server(config);
  RawClient a(server.port());
  RawClient b(server.port());
  ASSERT_TRUE(answered(a));
  ASSERT_TRUE(answered(b));
  // When a third connects
  RawClient c(server.port());
  // Then it is closed, and the first two are still served
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_TRUE(answered(a));
  EXPECT_TRUE(answered(b));
  EXPECT_EQ(server.connections(), 2u);
}

TEST(Server, ConnectionsUnderTheCapAreServedAgainOnceOthersClose) {
  ServerConfig config;
  config.max_connections = 1;
  RunningServer server(config);
  {
    RawClient a(server.port());
    ASSERT_TRUE(answered(a));
    RawClient refused(server.port());
    EXPECT_TRUE(refused.closed_by_peer());
  }
  ASSERT_TRUE(server.eventually([&] { return server.server().connection_count() == 0; }));
  RawClient later(server.port());
  EXPECT_TRUE(answered(later));
}

TEST(Server, AConnectionThatSendsNothingIsClosedAfterTheIdleTimeout) {
  ServerConfig config;
  config.connections_max_idle = std::chrono::milliseconds(200);
  RunningServer server(config);
  RawClient silent(server.port());
  EXPECT_TRUE(silent.closed_by_peer(10000));
  EXPECT_TRUE(server.eventually([&] { return server.server().connection_count() == 0; }));
  EXPECT_EQ(server.on_io([&] { return server.server().stats().closed_idle; }), 1u);
}

TEST(Server, AFrameStalledHalfwayIsClosedAfterTheReadTimeoutAndItsBudgetLetsTheNextClientIn) {
  ServerConfig config;
  config.max_inflight_request_bytes = 1000;
  config.request_read_timeout = std::chrono::milliseconds(300);
  RunningServer server(config);
  RawClient staller(server.port());
  RawClient next(server.port());
  // Given a client that announced a 718-byte request, sent half of it and stalls
  Bytes frame = testing::request_frame(18, 0, Bytes(700, 0));
  ASSERT_TRUE(staller.send_bytes(Bytes(frame.begin(), frame.begin() + frame.size() / 2)));
  ASSERT_TRUE(server.eventually([&] { return server.server().inflight().in_use() == 700 + kHeaderBytes; }));
  // And another client whose request does not fit beside it in the budget
  ASSERT_TRUE(send_sized(next, 18, 700, 5));
  ASSERT_TRUE(server.eventually([&] { return server.server().inflight().waiting() == 1; }));
  // Then the stalled one is closed once the read timeout passes
  EXPECT_TRUE(staller.closed_by_peer(10000));
  // And the other is read and answered with the bytes it released
  auto reply = next.read_frame(10000);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(load_be32(reply->data()), 5);
  EXPECT_EQ(server.on_io([&] { return server.server().stats().closed_read_timeout; }), 1u);
  EXPECT_TRUE(server.eventually([&] { return server.server().inflight().in_use() == 0; }));
}

TEST(Server, AConnectionWithAParkedRequestIsNotClosedByTheIdleOrReadTimeout) {
  ServerConfig config;
  config.connections_max_idle = std::chrono::milliseconds(200);
  config.request_read_timeout = std::chrono::milliseconds(200);
  RunningServer server(config);
  // Given a request whose handler is parked (as a long-poll Fetch is)
  RawClient parked(server.port());
  ASSERT_TRUE(send_sized(parked, kHeldApi, 10, 3));
  ASSERT_TRUE(server.eventually([&] { return server.handler().started() == 1; }));
  // When a connection opened after it has been closed for idleness, so the
  // parked one has been quiet on the wire for longer than both timeouts
  RawClient witness(server.port());
  ASSERT_TRUE(witness.closed_by_peer(10000));
  // Then the parked one is still open and gets its reply when the handler finishes
  server.on_io([&] {
    server.handler().release_held();
    return true;
  });
  auto reply = parked.read_frame();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(load_be32(reply->data()), 3);
  // And once nothing is in flight, it is idle like any other
  EXPECT_TRUE(parked.closed_by_peer(10000));
  EXPECT_EQ(server.on_io([&] { return server.server().stats().closed_idle; }), 2u);
  EXPECT_EQ(server.on_io([&] { return server.server().stats().closed_read_timeout; }), 0u);
}

TEST(Server, AFrameWaitingForTheInFlightBudgetIsNotClosedByTheReadTimeout) {
  ServerConfig config;
  config.max_inflight_request_bytes = 1000;
  config.connections_max_idle = std::chrono::milliseconds(200);
  config.request_read_timeout = std::chrono::milliseconds(200);
  RunningServer server(config);
  RawClient first(server.port());
  RawClient second(server.port());
  // Given a request whose handler is parked, holding most of the budget
  ASSERT_TRUE(send_sized(first, kHeldApi, 700, 1));
  ASSERT_TRUE(server.eventually([&] { return server.handler().started() == 1; }));
  // And a whole request sent by another client that waits for the budget
  ASSERT_TRUE(send_sized(second, 18, 700, 2));
  ASSERT_TRUE(server.eventually([&] { return server.server().inflight().waiting() == 1; }));
  // When it has waited longer than the read timeout (a connection opened
  // after that was closed for idleness)
  RawClient witness(server.port());
  ASSERT_TRUE(witness.closed_by_peer(10000));
  // Then it was not closed: the wait was the broker's, not the client's
  server.on_io([&] {
    server.handler().release_held();
    return true;
  });
  auto first_reply = first.read_frame();
  auto second_reply = second.read_frame();
  ASSERT_TRUE(first_reply.has_value());
  ASSERT_TRUE(second_reply.has_value());
  EXPECT_EQ(load_be32(second_reply->data()), 2);
  EXPECT_EQ(server.on_io([&] { return server.server().stats().closed_read_timeout; }), 0u);
}

/// Drives a ByteBudget by hand: each read() is a coroutine taking `n` bytes
/// for a frame, recorded in `admitted` once granted.
class BudgetDriver {
 public:
  explicit BudgetDriver(size_t limit) : budget(io.get_executor(), limit) {}
  void read(int id, ByteBudget::Frame frame, size_t n) {
    asio::co_spawn(
        io,
        [this, id, frame, n]() -> asio::awaitable<void> {
          co_await budget.acquire(frame, n);
          admitted.push_back(id);
        },
        asio::detached);
    run();
  }
  void run() {
    io.restart();  // running out of work stops an io_context
    io.poll();
  }
  asio::io_context io;
  ByteBudget budget;
  std::vector<int> admitted;
};

TEST(ByteBudget, AdmitsInArrivalOrderWhenBytesAreReleased) {
  BudgetDriver d(100);
  d.read(1, d.budget.new_frame(), 60);
  d.read(2, d.budget.new_frame(), 60);  // does not fit beside 1
  d.read(3, d.budget.new_frame(), 10);  // would fit, but waits behind 2
  EXPECT_EQ(d.admitted, (std::vector<int>{1}));
  EXPECT_EQ(d.budget.waiting(), 2u);
  d.budget.release(60);
  d.run();
  EXPECT_EQ(d.admitted, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(d.budget.in_use(), 70u);
  // Alone, a frame larger than the whole budget gets through.
  d.budget.release(70);
  d.read(4, d.budget.new_frame(), 500);
  EXPECT_EQ(d.admitted, (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(d.budget.in_use(), 500u);
}

TEST(ByteBudget, TheOldestPartlyReadFrameMayAlwaysTakeItsNextChunkSoHalfReadFramesCannotDeadlock) {
  BudgetDriver d(100);
  auto a = d.budget.new_frame();
  auto b = d.budget.new_frame();
  // Given two frames half read that together fill the budget
  d.read(1, a, 50);
  d.read(2, b, 50);
  // When both need their next chunk
  d.read(3, b, 50);
  d.read(4, a, 50);
  // Then the older one gets it beyond the limit, and the other waits
  EXPECT_EQ(d.admitted, (std::vector<int>{1, 2, 4}));
  EXPECT_EQ(d.budget.in_use(), 150u);
  // Until the older one is read whole: then the other becomes the oldest
  d.budget.end_frame(a);
  d.run();
  EXPECT_EQ(d.admitted, (std::vector<int>{1, 2, 4, 3}));
  EXPECT_EQ(d.budget.in_use(), 200u);
}

}  // namespace
}  // namespace starling::broker
