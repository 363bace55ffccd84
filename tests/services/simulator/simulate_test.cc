// The simulated fleet: the open-loop schedule, the event stream (the same
// events for a seed, constant state however long it runs), and the client
// against a tiny Beast server on 127.0.0.1:0 that answers as each test says:
// receipts, 503/429/409 to retry, a 4xx refusal, a connection cut half-way
// through its answer. No timing thresholds, only what must hold on any
// machine (a request that waited behind a busy connection cannot have been
// answered before the ones ahead of it).

#include "services/simulator/simulate.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <utility>  // before asio: Boost 1.74's awaitable.hpp uses std::exchange without it
#include <vector>

#include "services/simulator/histogram.h"

namespace starling::simulator {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;

// What the test server does with one request.
struct Action {
  int status = 202;
  std::string body;  // empty with 202: a receipt for the request's events
  bool cut = false;  // send half the answer, then close the connection
  int delay_ms = 0;  // before answering
};

// A blocking HTTP/1.1 server on 127.0.0.1:0, one thread per connection.
class TestServer {
 public:
  using Handler = std::function<Action(const http::request<http::string_body>&)>;
  explicit TestServer(Handler handler)
      : handler_(std::move(handler)), acceptor_(ioc_, {asio::ip::make_address("127.0.0.1"), 0}) {
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~TestServer() {
    stopping_ = true;
    {  // wake the blocking accept()
      beast::error_code ec;
      tcp::socket s(ioc_);
      (void)s.connect({asio::ip::make_address("127.0.0.1"), port()}, ec);
    }
    accept_thread_.join();
    {
      std::lock_guard lock(mu_);
      for (auto& s : sockets_) ::shutdown(s->native_handle(), SHUT_RDWR);
    }
    for (auto& t : threads_) t.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  int connections() const { return connections_; }
  // Idempotency-Key → the bodies it came with, in order.
  std::map<std::string, std::vector<std::string>> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }

 private:
  void accept_loop() {
    while (!stopping_) {
      auto s = std::make_shared<tcp::socket>(ioc_);
      beast::error_code ec;
      (void)acceptor_.accept(*s, ec);
      if (ec || stopping_) return;
      ++connections_;
      std::lock_guard lock(mu_);
      sockets_.push_back(s);
      threads_.emplace_back([this, s] { serve(*s); });
    }
  }
  void serve(tcp::socket& s) {
    beast::flat_buffer buf;
    for (;;) {
      http::request<http::string_body> req;
      beast::error_code ec;
      http::read(s, buf, req, ec);
      if (ec) return;
      {
        std::lock_guard lock(mu_);
        seen_[std::string(req["Idempotency-Key"])].push_back(req.body());
      }
      Action a = handler_(req);
      if (a.delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(a.delay_ms));
      if (a.status == 202 && a.body.empty()) {
        const auto events = json::parse(req.body()).size();
        a.body = json{{"saga_id", "saga-" + std::string(req["Idempotency-Key"])},
                      {"accepted", events},
                      {"refused", json::array()}}
                     .dump();
      }
      http::response<http::string_body> res(static_cast<http::status>(a.status), 11);
      res.set(http::field::content_type, "application/json");
      res.body() = a.body;
      res.keep_alive(true);
      res.prepare_payload();
      if (a.cut) {
        std::ostringstream out;
        out << res;
        const auto wire = out.str();
        (void)asio::write(s, asio::buffer(wire.data(), wire.size() - a.body.size() / 2), ec);
        ::shutdown(s.native_handle(), SHUT_RDWR);
        return;
      }
      http::write(s, res, ec);
      if (ec) return;
    }
  }

  Handler handler_;
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  std::thread accept_thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::mutex mu_;
  std::vector<std::shared_ptr<tcp::socket>> sockets_;
  std::vector<std::thread> threads_;
  std::map<std::string, std::vector<std::string>> seen_;
};

SimOptions fleet(const std::string& url, int events, int batch, int connections) {
  SimOptions o;
  o.url = url;
  o.events = events;
  o.batch = batch;
  o.connections = connections;
  o.rate = 0;
  o.bikes = 30;
  o.keep_ids = false;
  return o;
}

// A record with its event_time removed: the fleet's times end at the moment
// a stream is made, so two streams made a millisecond apart differ there only.
json timeless(json r) {
  r.erase("event_time");
  return r;
}

TEST(Schedule, RequestsAreDueEveryBatchOverRateSecondsFromTheStart) {
  using std::chrono::milliseconds;
  using std::chrono::nanoseconds;
  EXPECT_EQ(request_due(0, 20, 1000), nanoseconds(0));
  EXPECT_EQ(request_due(1, 20, 1000), milliseconds(20));
  EXPECT_EQ(request_due(50, 20, 1000), milliseconds(1000));
  EXPECT_EQ(request_due(3, 1, 3), milliseconds(1000));
  EXPECT_EQ(request_due(7, 1000, 100'000), milliseconds(70));
  // As fast as the connections go: every request is due at once.
  EXPECT_EQ(request_due(12345, 20, 0), nanoseconds(0));
}

TEST(EventStream, TheSameSeedGivesTheSameEventsAndAnotherSeedOthers) {
  SimOptions o;
  o.events = 3000;
  o.tricky = 0.2;
  o.fault_rate = 0.1;
  const auto a = generate_events(o);
  const auto b = generate_events(o);
  o.seed = 2;
  const auto c = generate_events(o);
  ASSERT_EQ(a.size(), 3000u);
  int differ = 0;
  std::set<std::string> faults;
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].event_id, b[i].event_id);
    EXPECT_EQ(a[i].fault, b[i].fault);
    EXPECT_EQ(timeless(a[i].record), timeless(b[i].record)) << i;
    differ += timeless(a[i].record) != timeless(c[i].record);
    faults.insert(a[i].fault);
  }
  EXPECT_GT(differ, 2900);
  // Every kind of fault shows up in 3000 events, resends included.
  for (const auto* f :
       {"", "range:speed_kmh", "range:battery_pct", "required:battery_pct", "range:lat", "dedupe:event_id"}) {
    EXPECT_TRUE(faults.contains(f)) << f;
  }
}

TEST(EventStream, ItsJsonTextIsTheRecordGenerateEventsGives) {
  SimOptions o;
  o.events = 2000;
  o.tricky = 0.3;
  o.id_prefix = "p\"\\x-";  // a prefix needing escapes
  const auto all = generate_events(o);
  EventStream stream(o);
  Reading r;
  std::size_t i = 0;
  while (stream.next(r)) {
    std::string text;
    r.append_json(text);
    const auto parsed = json::parse(text);
    EXPECT_EQ(parsed, r.to_json()) << text;
    EXPECT_EQ(timeless(parsed), timeless(all[i].record)) << i;
    EXPECT_EQ(r.event_id, all[i].event_id);
    ++i;
  }
  EXPECT_EQ(i, all.size());
  EXPECT_TRUE(std::any_of(all.begin(), all.end(), [](const SimEvent& e) {
    return e.record.at("ride_id").get<std::string>().starts_with("räd-");
  }));
}

TEST(EventStream, HoldsTheSameStateAfterAMillionEventsAsAfterAThousand) {
  // Its state is the bikes (and, with tricky, the readings a resend may
  // repeat): a structural bound, not a measurement of RSS.
  for (const double tricky : {0.0, 0.1}) {
    SimOptions o;
    o.bikes = 40;
    o.batch = 50;
    o.tricky = tricky;
    o.events = 1'000'000;
    EventStream stream(o);
    Reading r;
    std::size_t after_thousand = 0;
    std::size_t most = 0;
    while (stream.next(r)) {
      if (stream.produced() == 1000) after_thousand = stream.held();
      most = std::max(most, stream.held());
    }
    EXPECT_EQ(stream.produced(), 1'000'000u);
    EXPECT_EQ(most, after_thousand);
    EXPECT_EQ(most, tricky > 0 ? 40u + 50u + 100u : 40u);
  }
}

TEST(LatencyHistogram, PercentilesAreWithinABucketOfTheTrueValue) {
  LatencyHistogram h;
  for (uint64_t v = 1; v <= 100'000; ++v) h.record(v * 10);  // 10 µs .. 1 s, uniform
  EXPECT_EQ(h.count(), 100'000u);
  for (const double q : {0.5, 0.9, 0.99, 0.999}) {
    const double truth = q * 1'000'000;
    const auto got = static_cast<double>(h.percentile_us(q));
    EXPECT_GE(got, truth * 0.999) << q;
    EXPECT_LE(got, truth * 1.032) << q;
  }
  EXPECT_EQ(h.percentile_us(1.0), 1'000'000u);
  for (uint64_t v : {0ull, 1ull, 31ull, 32ull, 33ull, 1000ull, 123'456'789ull, 1ull << 40}) {
    EXPECT_GE(LatencyHistogram::upper_us(LatencyHistogram::bucket(v)), std::min<uint64_t>(v, (uint64_t{1} << 37) - 1))
        << v;
    EXPECT_LT(LatencyHistogram::bucket(v), LatencyHistogram::kBuckets) << v;
  }
  LatencyHistogram other;
  other.record(5);
  h.merge(other);
  EXPECT_EQ(h.count(), 100'001u);
}

TEST(Simulate, PostsEveryEventOverTheConnectionsItWasGiven) {
  TestServer server([](const auto&) { return Action{}; });
  auto o = fleet(server.url(), 1000, 20, 4);
  uint64_t last_progress = 0;
  auto res = simulate(o, [&](uint64_t done, uint64_t total) {
    EXPECT_EQ(total, 1000u);
    last_progress = done;
  });
  ASSERT_TRUE(res) << res.error().message;
  EXPECT_EQ(res->sent, 1000u);
  EXPECT_EQ(res->accepted, 1000u);
  EXPECT_EQ(res->sagas, 50u);
  EXPECT_EQ(res->requests, 50u);
  EXPECT_EQ(res->valid + res->faulty, 1000u);
  EXPECT_GT(res->faulty, 0u);
  EXPECT_EQ(res->latency.count(), 50u);
  EXPECT_EQ(res->retries, 0u);
  EXPECT_EQ(last_progress, 1000u);
  EXPECT_EQ(server.connections(), 4);
  EXPECT_TRUE(res->saga_ids.empty());  // keep_ids off: counts only
  EXPECT_TRUE(res->valid_ids.empty());
  // Each request its own key, each event once.
  const auto seen = server.seen();
  EXPECT_EQ(seen.size(), 50u);
  std::set<std::string> ids;
  for (const auto& [key, bodies] : seen) {
    ASSERT_EQ(bodies.size(), 1u) << key;
    for (const auto& e : json::parse(bodies[0])) ids.insert(e.at("event_id").get<std::string>());
  }
  EXPECT_EQ(ids.size(), 1000u);
}

TEST(Simulate, KeepsTheIdsWhenAskedAndTheyMatchTheCounts) {
  TestServer server([](const auto&) { return Action{}; });
  auto o = fleet(server.url(), 300, 7, 3);
  o.keep_ids = true;
  auto res = simulate(o);
  ASSERT_TRUE(res) << res.error().message;
  EXPECT_EQ(res->saga_ids.size(), res->sagas);
  EXPECT_EQ(res->sagas, 43u);  // 42 requests of 7 and one of 6
  EXPECT_EQ(res->valid_ids.size(), res->valid);
  EXPECT_EQ(res->faulty_ids.size(), res->faulty);
  EXPECT_EQ(res->valid + res->faulty, 300u);
}

TEST(Simulate, RetriesA503A429AndA409WithTheSameIdempotencyKeyAndBody) {
  std::mutex mu;
  std::map<std::string, int> attempts;
  TestServer server([&](const http::request<http::string_body>& req) {
    std::lock_guard lock(mu);
    const int n = attempts[std::string(req["Idempotency-Key"])]++;
    static constexpr int kRefusals[] = {503, 429, 409};
    if (n < 3) return Action{.status = kRefusals[n], .body = R"({"error":{"code":"busy"}})"};
    return Action{};
  });
  auto o = fleet(server.url(), 100, 10, 10);  // one connection per request: the back-offs overlap
  auto res = simulate(o);
  ASSERT_TRUE(res) << res.error().message;
  EXPECT_EQ(res->sent, 100u);
  EXPECT_EQ(res->sagas, 10u);
  EXPECT_EQ(res->retries, 30u);
  for (const auto& [key, bodies] : server.seen()) {
    ASSERT_EQ(bodies.size(), 4u) << key;
    for (const auto& b : bodies) EXPECT_EQ(b, bodies[0]) << key;
  }
}

TEST(Simulate, AConnectionCutHalfWayThroughItsAnswerIsRetriedWithTheSameKey) {
  std::mutex mu;
  std::map<std::string, int> attempts;
  TestServer server([&](const http::request<http::string_body>& req) {
    std::lock_guard lock(mu);
    const bool first = attempts[std::string(req["Idempotency-Key"])]++ == 0;
    return Action{.cut = first};
  });
  auto o = fleet(server.url(), 60, 6, 2);
  auto res = simulate(o);
  ASSERT_TRUE(res) << res.error().message;
  EXPECT_EQ(res->sent, 60u);
  EXPECT_EQ(res->sagas, 10u);
  EXPECT_EQ(res->retries, 10u);
  EXPECT_GT(server.connections(), 2);  // each cut connection was replaced
  for (const auto& [key, bodies] : server.seen()) {
    ASSERT_EQ(bodies.size(), 2u) << key;
    EXPECT_EQ(bodies[1], bodies[0]);
  }
}

TEST(Simulate, ARefusalFailsTheRunWithItsStatusAndBody) {
  TestServer server(
      [](const auto&) { return Action{.status = 400, .body = R"({"error":{"code":"invalid","field":"speed_kmh"}})"}; });
  auto res = simulate(fleet(server.url(), 40, 10, 1));
  ASSERT_FALSE(res);
  EXPECT_NE(res.error().message.find("400"), std::string::npos) << res.error().message;
  EXPECT_NE(res.error().message.find(R"("field":"speed_kmh")"), std::string::npos) << res.error().message;
  EXPECT_EQ(server.seen().size(), 1u);  // not retried, and nothing sent after it
}

TEST(Simulate, GivesUpAfterTheRetriesItWasAllowed) {
  TestServer server([](const auto&) { return Action{.status = 503, .body = "busy"}; });
  auto o = fleet(server.url(), 10, 10, 1);
  o.max_retries = 2;
  auto res = simulate(o);
  ASSERT_FALSE(res);
  EXPECT_NE(res.error().message.find("gave up after 2 retries"), std::string::npos) << res.error().message;
  EXPECT_EQ(server.seen().begin()->second.size(), 3u);
}

TEST(Simulate, ARequestThatWaitedForABusyConnectionCountsFromItsDueTime) {
  // One connection, a server taking 100 ms per request, and 5 requests due
  // 10 ms apart: the last cannot be answered before 5 x 100 ms after the
  // start, though it was due at 40 ms.
  TestServer server([](const auto&) { return Action{.delay_ms = 100}; });
  auto o = fleet(server.url(), 5, 1, 1);
  o.rate = 100;
  auto res = simulate(o);
  ASSERT_TRUE(res) << res.error().message;
  EXPECT_EQ(res->sagas, 5u);
  EXPECT_GE(res->latency.max_us(), 460'000u);
  EXPECT_GE(res->late_starts, 3u);
  EXPECT_GE(res->seconds, 0.5);
}

TEST(Simulate, StopsStartingRequestsAfterGiveUpAndCountsTheRest) {
  TestServer server([](const auto&) { return Action{.delay_ms = 100}; });
  auto o = fleet(server.url(), 100, 1, 1);
  o.rate = 1000;
  o.give_up_after_s = 0.25;
  auto res = simulate(o);
  ASSERT_TRUE(res) << res.error().message;
  EXPECT_GT(res->unsent, 0u);
  EXPECT_EQ(res->sent + res->unsent, 100u);
}

TEST(Simulate, RefusesAnUrlItCannotPostTo) {
  auto o = fleet("https://127.0.0.1:1", 10, 1, 1);
  auto res = simulate(o);
  ASSERT_FALSE(res);
  EXPECT_NE(res.error().message.find("http://"), std::string::npos);
  o.url = "http://127.0.0.1:1";
  o.connections = 0;
  EXPECT_FALSE(simulate(o));
}

TEST(Simulate, SpreadsItsConnectionsOverSeveralIngestsAndEachRetryStaysOnItsInstance) {
  // Given two ingest instances, the first answering each key's first try 503,
  std::mutex mu;
  std::set<std::string> refused_once;
  TestServer first([&](const http::request<http::string_body>& req) {
    std::lock_guard lock(mu);
    return refused_once.insert(std::string(req["Idempotency-Key"])).second ? Action{503, "{}"} : Action{};
  });
  TestServer second([](const auto&) { return Action{}; });
  // when a fleet posts over 4 connections to both,
  auto o = fleet(first.url() + "," + second.url(), 400, 10, 4);
  auto res = simulate(o);
  ASSERT_TRUE(res) << res.error().message;
  // then each instance got two connections and a share of the requests, and
  // every event arrived once: a retry went to the instance it was refused by.
  EXPECT_EQ(res->accepted, 400u);
  EXPECT_EQ(first.connections(), 2);
  EXPECT_EQ(second.connections(), 2);
  const auto a = first.seen();
  const auto b = second.seen();
  EXPECT_GT(a.size(), 0u);
  EXPECT_GT(b.size(), 0u);
  EXPECT_EQ(a.size() + b.size(), 40u);
  for (const auto& [key, bodies] : a) {
    EXPECT_EQ(bodies.size(), 2u) << key << ": its retry went elsewhere";
    EXPECT_FALSE(b.contains(key)) << key;
  }
  EXPECT_EQ(res->retries, a.size());
}

TEST(Simulate, RefusesFewerConnectionsThanUrlsAndABadUrlInTheList) {
  TestServer server([](const auto&) { return Action{}; });
  auto o = fleet(server.url() + "," + server.url(), 10, 1, 1);
  auto res = simulate(o);
  ASSERT_FALSE(res);
  EXPECT_NE(res.error().message.find("--connections 1"), std::string::npos) << res.error().message;
  o = fleet(server.url() + ",ftp://x", 10, 1, 2);
  res = simulate(o);
  ASSERT_FALSE(res);
  EXPECT_NE(res.error().message.find("'ftp://x'"), std::string::npos) << res.error().message;
  EXPECT_EQ(server.connections(), 0);
}

}  // namespace
}  // namespace starling::simulator
