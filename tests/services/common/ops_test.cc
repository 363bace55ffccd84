// The operational pieces every service shares: the metrics page, JSON logs,
// the probes and the HTTP drain.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <boost/asio.hpp>
#include <chrono>
#include <future>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <utility>  // before Boost.Asio, whose awaitable.hpp uses std::exchange

#include "services/common/http.h"
#include "services/common/logging.h"
#include "services/common/metrics.h"
#include "tests/support/promtool.h"
#include "tests/support/raw_http.h"

namespace starling {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

TEST(Metrics, RendersCountersAndGaugesInPrometheusTextWithEscapedLabels) {
  MetricsRegistry r;
  r.counter("t_rows_total", "Rows \\ written\nin all", {{"pipeline", "a\"b"}}).add(3);
  r.counter("t_rows_total", "ignored: the first help wins", {{"pipeline", "a\"b"}}).add(2);
  r.counter("t_rows_total", "", {{"pipeline", "c"}}).add();
  r.gauge("t_up", "Up or not").set(0.5);
  const auto page = r.render();
  EXPECT_THAT(page, HasSubstr("# HELP t_rows_total Rows \\\\ written\\nin all\n# TYPE t_rows_total counter\n"));
  EXPECT_THAT(page, HasSubstr("t_rows_total{pipeline=\"a\\\"b\"} 5\n"));
  EXPECT_THAT(page, HasSubstr("t_rows_total{pipeline=\"c\"} 1\n"));
  EXPECT_THAT(page, HasSubstr("# TYPE t_up gauge\nt_up 0.5\n"));
  EXPECT_THAT(page, HasSubstr("# TYPE process_resident_memory_bytes gauge\n"));
  EXPECT_GT(resident_bytes(), 0u);
}

TEST(Metrics, ANameIsOneKind) {
  setup_logging("ops-test", "info");  // assertions log to stderr, where death tests look
  MetricsRegistry r;
  r.counter("t_x", "x");
  EXPECT_DEATH(r.gauge("t_x", "x"), "is a counter, not a gauge");
  EXPECT_DEATH(r.counter("bad name", "x"), "bad metric name");
}

TEST(Logging, JsonFormatWritesOneEscapedObjectPerLine) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  sink->set_formatter(make_json_formatter());
  spdlog::logger log("ops-test", sink);
  log.warn("row \"{}\" refused:\n\tbad {}", "e1", 3);
  log.info("second");
  std::istringstream lines(out.str());
  std::string line;
  ASSERT_TRUE(std::getline(lines, line));
  const auto j = nlohmann::json::parse(line);  // throws (fails the test) if not one JSON object
  EXPECT_EQ(j["level"], "warning");
  EXPECT_EQ(j["service"], "ops-test");
  EXPECT_EQ(j["msg"], "row \"e1\" refused:\n\tbad 3");
  EXPECT_THAT(j["ts"].get<std::string>(), ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{12}Z"));
  ASSERT_TRUE(std::getline(lines, line));
  EXPECT_EQ(nlohmann::json::parse(line)["msg"], "second");
  EXPECT_THROW(setup_logging("x", "info", "yaml"), std::invalid_argument);
}

TEST(Logging, JsonTimeIsUtcWithMilliseconds) {
  const spdlog::details::log_msg msg(spdlog::log_clock::time_point(std::chrono::milliseconds(1'795'428'000'007)), {},
                                     "ops-test", spdlog::level::info, "x");
  spdlog::memory_buf_t out;
  make_json_formatter()->format(msg, out);
  EXPECT_EQ(fmt::to_string(out), R"({"ts":"2026-11-23T10:00:00.007Z","level":"info","service":"ops-test","msg":"x"})"
                                 "\n");
}

TEST(Metrics, HistogramRendersCumulativeBucketsSumAndCount) {
  MetricsRegistry r;
  auto& h = r.histogram("t_latency_seconds", "Latency", {0.1, 1}, {{"stage", "x"}});
  h.observe(0.0625);
  h.observe(0.5);
  h.observe(0.5);
  h.observe(7);
  const auto page = r.render();
  EXPECT_THAT(page, HasSubstr("# TYPE t_latency_seconds histogram\n"));
  EXPECT_THAT(page, HasSubstr("t_latency_seconds_bucket{stage=\"x\",le=\"0.1\"} 1\n"));
  EXPECT_THAT(page, HasSubstr("t_latency_seconds_bucket{stage=\"x\",le=\"1\"} 3\n"));
  EXPECT_THAT(page, HasSubstr("t_latency_seconds_bucket{stage=\"x\",le=\"+Inf\"} 4\n"));
  EXPECT_THAT(page, HasSubstr("t_latency_seconds_sum{stage=\"x\"} 8.0625\n"));
  EXPECT_THAT(page, HasSubstr("t_latency_seconds_count{stage=\"x\"} 4\n"));
}

TEST(Metrics, ThePageIsValidForPromtoolWithHostileLabelsNaNAndInfinity) {
  MetricsRegistry r;
  r.counter("t_events_total", "Events\nacross two lines \\ and a backslash", {{"device", "a\"b\nc\\d"}}).add(2);
  r.gauge("t_ratio", "A ratio that may be undefined", {{"stage", "x"}}).set(std::numeric_limits<double>::quiet_NaN());
  r.gauge("t_limit_bytes", "Unlimited", {}).set(std::numeric_limits<double>::infinity());
  r.gauge("t_floor_bytes", "Below everything", {}).set(-std::numeric_limits<double>::infinity());
  r.gauge("t_big_bytes", "Past int64", {}).set(1e300);
  r.histogram("t_latency_seconds", "Latency", {0.001, 0.01, 0.1}, {{"api", "Produce"}}).observe(0.005);
  const auto page = r.render();
  // prometheus-cpp spells it "Nan"; Prometheus parses sample values case-blind
  // (promtool below, and the server, take it).
  EXPECT_THAT(page, HasSubstr("t_ratio{stage=\"x\"} Nan\n"));
  EXPECT_THAT(page, HasSubstr("t_limit_bytes +Inf\n"));
  EXPECT_THAT(page, HasSubstr("t_floor_bytes -Inf\n"));
  EXPECT_THAT(page, HasSubstr("# TYPE process_open_fds gauge\nprocess_open_fds "));
  EXPECT_GT(open_fds(), 2u);  // stdin, stdout, stderr at least
  const auto check = testing::promtool_check_metrics(page);
  EXPECT_EQ(check.exit_code, 0) << check.output << "\n" << page;
  // And it can fail: a counter without _total is a lint finding.
  MetricsRegistry bad;
  bad.counter("t_events", "No _total").add();
  EXPECT_EQ(testing::promtool_check_metrics(bad.render()).exit_code, 3);
}

using testing::raw_exchange;

TEST(HttpServer, OversizedBodyIs413AndOversizedHeadersAre431) {
  HttpServer server({.address = "127.0.0.1", .port = 0, .threads = 1, .body_limit = 100, .header_limit = 512},
                    [](const HttpRequest&, const HttpResponder& done) {
                      done({202, "{}"});
                    });
  server.start();
  const auto url = "http://127.0.0.1:" + std::to_string(server.port()) + "/x";
  auto ok = http_call("POST", url, std::string(100, 'a'));
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->status, 202);
  auto big = http_call("POST", url, std::string(101, 'a'));
  ASSERT_TRUE(big) << big.error().message;
  EXPECT_EQ(big->status, 413);
  EXPECT_EQ(nlohmann::json::parse(big->body)["error"]["field"], "body");
  auto headers = http_call("POST", url, "{}", {{"X-Pad", std::string(600, 'h')}});
  ASSERT_TRUE(headers) << headers.error().message;
  EXPECT_EQ(headers->status, 431);
  EXPECT_EQ(nlohmann::json::parse(headers->body)["error"]["code"], "headers_too_large");
  EXPECT_EQ(nlohmann::json::parse(headers->body)["error"]["field"], "headers");
  // Not HTTP at all: 400 naming the request.
  const auto garbage = raw_exchange(server.port(), "HELLO\r\n\r\n");
  EXPECT_THAT(garbage, HasSubstr("400 Bad Request"));
  EXPECT_THAT(garbage, HasSubstr(R"("field":"request")"));
}

TEST(HttpServer, ClientThatNeverFinishesItsRequestIsDisconnected) {
  // Slowloris: headers that never end. The server must hang up by itself
  // (the read below returns only when it does); the answer is nothing.
  HttpServer server({.address = "127.0.0.1", .port = 0, .threads = 1, .read_timeout_s = 1},
                    [](const HttpRequest&, const HttpResponder& done) {
                      done({202, "{}"});
                    });
  server.start();
  const auto got = raw_exchange(server.port(), "POST /x HTTP/1.1\r\nHost: a\r\nX-Slow: 1", /*keep_open=*/true);
  EXPECT_EQ(got, "");
  // A complete request on a fresh connection is still served.
  auto ok = http_call("POST", "http://127.0.0.1:" + std::to_string(server.port()) + "/x", "{}");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 202);
}

TEST(HttpServer, DrainAnswersARequestWaitingForItsHandlerThenRefusesNewOnes) {
  // A handler that answers later, from another thread, as ingest does once
  // Kafka has persisted the events.
  std::promise<HttpResponder> parked;
  HttpServer server({.address = "127.0.0.1", .port = 0, .threads = 2},
                    [&](const HttpRequest&, HttpResponder done) { parked.set_value(std::move(done)); });
  server.start();
  const auto url = "http://127.0.0.1:" + std::to_string(server.port()) + "/x";
  auto call = std::async(std::launch::async, [&] { return http_call("POST", url, "{}"); });
  auto done = parked.get_future().get();
  // The drain starts while the request waits: nothing else is pending in
  // the server, and it must still deliver the late answer.
  auto drained = std::async(std::launch::async, [&] { return server.drain(10s); });
  std::this_thread::sleep_for(200ms);
  done({202, R"({"ok":true})"});
  EXPECT_TRUE(drained.get());
  auto r = call.get();
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->status, 202);
  EXPECT_FALSE(http_call("POST", url, "{}", {}, 1000).has_value()) << "a drained server still accepts";
}

}  // namespace
}  // namespace starling
