// The hostile corpus against every listening port of a running stack:
// starling-broker, the four services as real processes, starling-ingest
// bridging a real mosquitto. Ingest's HTTP, the saga API, the MQTT bridge
// (through mosquitto) and the broker's Kafka port each get bytes no honest
// client sends, slow headers and 1,000 idle connections. Afterwards every
// process is alive (none exited, none restarted), each answers, and a normal
// fleet run that follows, with the idle connections still open, ends with
// every saga COMPLETED, each valid reading loaded once and `starling sagas
// report` saying CONSISTENT.

#include <arpa/inet.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "services/common/http.h"
#include "services/common/text.h"
#include "services/simulator/report.h"
#include "services/simulator/simulate.h"
#include "services/supervisor/stack.h"
#include "tests/support/mosquitto_server.h"
#include "tests/support/mqtt_publisher.h"
#include "tests/support/raw_http.h"
#include "tests/support/temp_dir.h"

namespace starling {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr int kReadTimeoutS = 2;  // ingest's --read-timeout here, so slow headers are cut in the test's time

uint16_t port_of(const std::string& address) {
  return static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
}

// A plain TCP connection to 127.0.0.1:port, or -1.
int connect_to(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return fd;
  if (fd >= 0) ::close(fd);
  return -1;
}

// Writes bytes, half-closes, reads to the end with a bound: what the peer answered.
std::string exchange(uint16_t port, const std::string& bytes) {
  const int fd = connect_to(port);
  if (fd < 0) return "<connect failed>";
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  for (std::size_t at = 0; at < bytes.size();) {
    const auto n = ::send(fd, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may close early (a frame it refuses)
    at += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string out;
  std::array<char, 4096> buf{};
  for (;;) {
    const auto n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) break;
    out.append(buf.data(), static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

std::string post(const std::string& path, const std::string& body, const std::string& headers = {}) {
  return fmt::format("POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n{}\r\n{}", path, body.size(), headers, body);
}

constexpr const char* kEvents = "/v1/pipelines/ecowheels/events";

std::string reading(const std::string& device, const std::string& extra = {}) {
  return R"({"device_id":")" + device + R"(","speed_kmh":12.5,"status":"RIDING","event_time":"2026-11-23T10:00:00Z")" +
         extra + "}";
}

// Bytes for ingest's HTTP port: every part of a request made hostile.
std::vector<std::string> http_corpus() {
  const std::string deep = std::string(100'000, '[') + std::string(100'000, ']');
  return {
      "GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /v1/sagas?state=%FF&\xfe=\xc3 HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nX-\xff: a\r\n\r\n",
      std::string("GET /a\0b HTTP/1.1\r\n\r\n", 21),
      "\xff\xfe\xfd\r\n\r\n",
      "GET / HTTP/9.9\r\n\r\n",
      post(kEvents, R"(["\xff"])"),
      post(kEvents, deep),
      post(kEvents, "[" + reading("bike-h1") + "]", "Idempotency-Key: \xff\xfe\r\n"),
      post(kEvents, "[" + reading("bike-h2") + "]", "traceparent: 00-\xff-zz-01\r\n"),
      post(kEvents, "[" + reading("bike-h3") + "]", "traceparent: " + std::string(5000, '0') + "\r\n"),
      post(kEvents, "[" + reading("bike-h4") + "]", "Content-Type: \xff/\xfe\r\n"),
      post(kEvents, "[" + reading("bike-h5") + "]", "Authorization: Bearer \xff\r\n"),
      post(kEvents, "[" + reading(std::string("bike\0h6", 7)) + "]"),
      post(kEvents, "[" + reading("bike-h7", R"(,"ride_id":"a\u0000b")") + "]"),
      post(kEvents, "[" + reading("bike-h8", R"(,"speed_kmh":1e400)") + "]"),
      post(kEvents, "[" + reading("bike-h9", R"(,"odometer_km":99999999999999999999999999999)") + "]"),
      post(kEvents, "[" + reading(std::string(300'000, 'd')) + "]"),
      post(kEvents, "[" + reading("bike-h10", R"(,"ride_id":")" + std::string(20'000, 'r') + "\"") + "]"),
      // Over --max-body, announced: refused from the header alone.
      std::string("POST ") + kEvents + " HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n[",
      std::string("POST ") + kEvents + " HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
      std::string("POST ") + kEvents + " HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
      "GET /healthz HTTP/1.1\r\nX: " + std::string(40'000, 'h') + "\r\n\r\n",
  };
}

std::vector<std::string> saga_corpus() {
  return {
      "GET /v1/sagas?state=%FF HTTP/1.1\r\n\r\n",
      "GET /v1/sagas/\xff\xfe HTTP/1.1\r\n\r\n",
      "GET /v1/sagas?limit=99999999999999999999&page_token=%00%FF HTTP/1.1\r\n\r\n",
      "GET /v1/pipelines/\xff/consistency?from=\xfe&window=-1 HTTP/1.1\r\n\r\n",
      "GET /v1/pipelines/ecowheels/consistency?from=1e400&to=zz HTTP/1.1\r\n\r\n",
      "DELETE /v1/sagas HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
  };
}

// Kafka frames: a 4-byte size, then a request header and body (or not).
std::string frame(const std::string& body) {
  const auto n = static_cast<uint32_t>(body.size());
  std::string out = {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                     static_cast<char>(n)};
  return out + body;
}

std::vector<std::string> kafka_corpus() {
  // ApiVersions v3 header: api key 18, version 3, correlation 7, client id "\xff\xfe".
  const std::string header_bad_client = std::string("\x00\x12\x00\x03\x00\x00\x00\x07\x00\x02\xff\xfe\x00", 13);
  return {
      std::string("\xff\xff\xff\xff", 4),                                  // size -1
      std::string("\x7f\xff\xff\xff", 4) + "abc",                          // size past the frame limit
      std::string("\x00\x00\x00\x00", 4),                                  // size 0
      frame(std::string("\x03\xe7\x00\x00\x00\x00\x00\x01\xff\xff", 10)),  // api key 999
      frame(std::string("\x00\x12\x7f\xff\x00\x00\x00\x02\xff\xff", 10)),  // ApiVersions v32767
      frame(header_bad_client),
      frame(std::string("\x00\x03\x00\x0c\x00\x00\x00\x03\x00\x01x\x00\x7f\xff\xff\xff", 16)),  // Metadata, huge count
      std::string("\x00\x00\x01\x00", 4) + std::string(40, '\x01'),  // truncated, then closed
      std::string(2000, '\xab'),                                     // noise
  };
}

class HostileProcesses : public ::testing::Test {
 protected:
  void SetUp() override {
    // 1,000 idle connections on each of three ports, held at once by this
    // process (and accepted by the children, which inherit the limit).
    rlimit lim{};
    ::getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
    ASSERT_GE(lim.rlim_cur, 4096u) << "this test holds 3,000 connections; raise the descriptor limit";
    ASSERT_TRUE(mosquitto_.start()) << "mosquitto did not start; see " << mosquitto_.log_path();
    supervisor::StackOptions o;
    o.bin_dir = STARLING_BIN_DIR;
    o.data_dir = dir_.path() + "/stack";
    o.pipeline_files = {testing::source_path("pipelines/ecowheels.yaml")};
    o.ingest_args = {"--mqtt", mosquitto_.address(), "--read-timeout", std::to_string(kReadTimeoutS)};
    stack_ = std::make_unique<supervisor::Stack>(o);
    auto st = stack_->start();
    ASSERT_TRUE(st.has_value()) << st.error().message;
  }
  void TearDown() override {
    for (const int fd : idle_) ::close(fd);
    if (stack_) stack_->stop();
  }

  void expect_every_process_serves() {
    for (const auto& p : stack_->processes()) {
      EXPECT_TRUE(stack_->running(p)) << p << " is not running; see " << stack_->log_path(p);
      EXPECT_EQ(stack_->restarts(p), 0) << p << " was restarted; see " << stack_->log_path(p);
      if (p == "broker") continue;
      auto h = http_call("GET", stack_->url(p) + "/healthz", {}, {}, 5000);
      EXPECT_TRUE(h.has_value() && h->status == 200) << p << " does not answer /healthz";
    }
  }

  testing::TempDir dir_;
  testing::MosquittoServer mosquitto_{dir_.path()};
  std::unique_ptr<supervisor::Stack> stack_;
  std::vector<int> idle_;
};

TEST_F(HostileProcesses, ACorpusAtEveryPortLeavesEveryProcessServingAndTheBooksExact) {
  const auto ingest = port_of(stack_->ingest_url());
  const auto saga = port_of(stack_->saga_url());
  const auto broker = port_of(stack_->bootstrap());

  // The device first: libmosquitto's loop uses select(), which cannot watch a
  // descriptor past FD_SETSIZE (1,024), and the idle connections take those.
  testing::Publisher device(mosquitto_.port());
  ASSERT_TRUE(device.ok());

  // 1,000 idle connections on each port, held through everything below.
  for (const auto port : {ingest, saga, broker}) {
    for (int i = 0; i < 1000; ++i) {
      const int fd = connect_to(port);
      ASSERT_GE(fd, 0) << "connection " << i << " to port " << port << " was refused";
      idle_.push_back(fd);
    }
  }

  // Slow headers: a byte every 50 ms. Ingest cuts them at --read-timeout.
  const int slow = connect_to(ingest);
  ASSERT_GE(slow, 0);
  std::thread dribble([slow] {
    const std::string req = "POST /v1/pipelines/ecowheels/events HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    for (std::size_t i = 0; i < 200; ++i) {
      if (::send(slow, &req[i % req.size()], 1, MSG_NOSIGNAL) != 1) return;  // cut by the server
      std::this_thread::sleep_for(50ms);
    }
  });

  std::size_t answered = 0;
  for (const auto& bytes : http_corpus()) {
    const auto raw = exchange(ingest, bytes);
    if (raw.empty()) continue;  // a connection the server may close without a word (a reset)
    ++answered;
    EXPECT_EQ(raw.rfind("HTTP/1.1 ", 0), 0u) << raw.substr(0, 200);
    EXPECT_TRUE(is_utf8(raw.substr(raw.find("\r\n\r\n") + 1))) << raw.substr(0, 200);
    EXPECT_EQ(raw.find("HTTP/1.1 5"), std::string::npos) << "a 5xx for " << utf8_safe(bytes.substr(0, 80));
  }
  EXPECT_GE(answered, http_corpus().size() - 2) << "most hostile requests get an answer naming the problem";
  for (const auto& bytes : saga_corpus()) {
    const auto raw = exchange(saga, bytes);
    EXPECT_EQ(raw.rfind("HTTP/1.1 4", 0), 0u) << raw.substr(0, 200);
    EXPECT_TRUE(is_utf8(raw)) << raw.substr(0, 200);
  }
  for (const auto& bytes : kafka_corpus()) (void)exchange(broker, bytes);

  {
    const std::string t = "starling/ecowheels/bike-m1/events";
    for (const auto& payload :
         {std::string(R"(["\xff"])"), std::string(100'000, '[') + std::string(100'000, ']'),
          "[" + reading("bike-m1", R"(,"ride_id":"a\u0000b")") + "]",
          "[" + reading("bike-m1", R"(,"speed_kmh":1e400)") + "]", "[" + reading(std::string(300'000, 'd')) + "]",
          std::string("\0\xff\x01", 3), std::string()}) {
      EXPECT_TRUE(device.publish(t, payload));
    }
    (void)device.publish("starling/\xff\xfe/x/events", "{}");  // libmosquitto may refuse it itself
    EXPECT_TRUE(device.publish("starling/nope/bike-m1/events", "{}"));
    EXPECT_TRUE(device.publish("starling/ecowheels/" + std::string(1000, 'd') + "/events", reading("x")));
    EXPECT_TRUE(device.wait_acked(30s));
    // mosquitto took them; the bridge decided each (refused with a reason or
    // accepted), so none is left unanswered with mosquitto.
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    uint64_t decided = 0;
    while (decided < 9 && std::chrono::steady_clock::now() < deadline) {
      auto m = http_call("GET", stack_->ingest_url() + "/metrics");
      ASSERT_TRUE(m.has_value()) << m.error().message;
      decided = 0;
      std::istringstream lines(m->body);
      for (std::string line; std::getline(lines, line);) {
        if (line.starts_with("starling_ingest_mqtt_messages_received_total")) {
          decided = std::stoull(line.substr(line.rfind(' ') + 1));
        }
      }
      if (decided < 9) std::this_thread::sleep_for(100ms);
    }
    EXPECT_GE(decided, 9u) << "the bridge received every message mosquitto took";
  }

  // The slow client is cut, not served, and not waited for forever.
  dribble.join();
  std::array<char, 256> buf{};
  timeval tv{time_t{kReadTimeoutS} * 5, 0};
  ::setsockopt(slow, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  EXPECT_LE(::recv(slow, buf.data(), buf.size(), 0), 0) << "a request that never finished got an answer";
  ::close(slow);

  expect_every_process_serves();

  // A normal run, the idle connections still open: exact books.
  simulator::SimOptions sim;
  sim.url = stack_->ingest_url();
  sim.events = 600;
  sim.rate = 0;
  sim.batch = 20;
  sim.fault_rate = 0.05;
  auto res = simulator::simulate(sim);
  ASSERT_TRUE(res.has_value()) << res.error().message;
  EXPECT_EQ(res->accepted, 600u);

  nlohmann::json report;
  const auto deadline = std::chrono::steady_clock::now() + 180s;
  for (;;) {
    auto r = http_call("GET", stack_->saga_url() + "/v1/pipelines/ecowheels/consistency");
    ASSERT_TRUE(r.has_value()) << r.error().message;
    report = nlohmann::json::parse(r->body);
    if (report["consistent"].get<bool>() || std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(500ms);
  }
  EXPECT_TRUE(report["consistent"].get<bool>()) << report.dump(2);
  EXPECT_GE(report["totals"]["sagas"].get<uint64_t>(), res->saga_ids.size());

  auto rows = simulator::count_rows(stack_->db_path("ecowheels"), "ride_telemetry");
  ASSERT_TRUE(rows.has_value()) << rows.error().message;
  EXPECT_EQ(rows->rows, rows->distinct_ids) << "a row is duplicated";
  for (const auto& id : res->saga_ids) {
    auto s = simulator::fetch_saga(stack_->saga_url(), id);
    ASSERT_TRUE(s.has_value()) << s.error().message;
    EXPECT_EQ((*s)["state"], "COMPLETED") << id;
  }
  auto totals = simulator::wait_until_settled(stack_->saga_url(), "ecowheels", report["totals"]["sagas"], 10s);
  ASSERT_TRUE(totals.has_value()) << totals.error().message;
  EXPECT_GE(totals->loaded, res->valid_ids.size());
  EXPECT_EQ(static_cast<uint64_t>(rows->rows), totals->loaded) << "the table holds what the sagas say was loaded";

  // What an operator runs: the CLI's report.
  const auto cmd =
      fmt::format("{}/starling sagas report --pipeline ecowheels --url {} 2>&1", STARLING_BIN_DIR, stack_->saga_url());
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::array<char, 4096> chunk{};
  while (const auto n = std::fread(chunk.data(), 1, chunk.size(), f)) out.append(chunk.data(), n);
  EXPECT_EQ(::pclose(f), 0) << out;
  EXPECT_THAT(out, HasSubstr("\nCONSISTENT:")) << out;

  expect_every_process_serves();
}

}  // namespace
}  // namespace starling
