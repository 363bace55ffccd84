// starling-extract in a whole pipeline: a FakeWeatherApi (in this process,
// port 0) polled by a real starling-extract process into starling-broker,
// cleaned and loaded into SQLite by the real services (Stack). The warehouse
// must end with every observation the API has, exactly once, whatever the
// API's duplicates and gaps and however often extract is killed with -9.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "services/common/http.h"
#include "services/common/pipeline.h"
#include "services/common/process.h"
#include "services/common/time.h"
#include "services/extract/fake_weather_api.h"
#include "services/extract/source.h"
#include "services/simulator/report.h"
#include "services/supervisor/stack.h"
#include "starling/v1/weather.pb.h"
#include "tests/e2e/pipeline_e2e.h"
#include "tests/services/extract/weather_source.h"
#include "tests/support/prometheus_sample.h"
#include "tests/support/temp_dir.h"

namespace starling::e2e {
namespace {

constexpr int64_t kHour = 3'600'000;

class ExtractE2E : public ::testing::Test {
 protected:
  void TearDown() override {
    if (stack_) stack_->stop();
  }

  // The API: `hours` of data ending an hour ago (clean refuses readings
  // older than 7 days and newer than now + 10 min).
  // Live polling starts `live_from` hours into the data (a backfill pulls what is before).
  void start(extract::FakeApiOptions o, int hours, int live_from = 0, const std::string& saga_block = {}) {
    first_ = (now_ms() / kHour) * kHour - hours * kHour;
    o.first_hour_ms = first_;
    o.hours = hours;
    o.request_log = dir_ / "requests.jsonl";
    api_ = std::make_unique<extract::FakeWeatherApi>(o);
    api_->start();
    testing::SourceShape shape;
    shape.start = rfc3339(first_ + live_from * kHour);
    shape.lookback = "2h";
    shape.every = "30s";  // at the live edge; catching up polls at once
    pipeline_file_ = dir_ / "weather.yaml";
    auto yaml = testing::weather_with_source(api_->base_url(), shape);
    if (!saga_block.empty()) {
      const std::string stall = "  stall_after: 2m\n";
      yaml.replace(yaml.find(stall), stall.size(), saga_block);
    }
    std::ofstream(pipeline_file_) << yaml;

    supervisor::StackOptions so;
    so.bin_dir = STARLING_BIN_DIR;
    so.data_dir = dir_ / "stack";
    so.pipeline_files = {pipeline_file_};
    stack_ = std::make_unique<supervisor::Stack>(so);
    auto st = stack_->start();
    ASSERT_TRUE(st.has_value()) << st.error().message;
    // `starling up`'s supervisor started starling-extract, as the pipeline declares a source.
    ASSERT_TRUE(stack_->running("extract"));
  }

  // Event ids of every observation the API has, as extract derives them.
  std::set<std::string> expected_ids() const {
    const auto p = load_pipeline(pipeline_file_);
    std::set<std::string> ids;
    for (const auto& o : api_->observations(first_, first_ + 1000 * kHour)) {
      v1::WeatherObservation w;
      w.set_station_id(o.station);
      w.mutable_observed_at()->set_seconds(o.time_ms / 1000);
      ids.insert(extract::content_event_id(p, w));
    }
    return ids;
  }

  // Waits until the table holds `want.size()` rows and the sagas settle
  // (between two polls at the live edge); checks the rows are exactly `want`.
  void expect_exact_rows(const std::set<std::string>& want) {
    const auto db = stack_->db_path("weather");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(240);
    int64_t rows = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      auto c = simulator::count_rows(db, "weather_observations");
      rows = c ? c->rows : 0;
      if (rows >= static_cast<int64_t>(want.size())) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    ASSERT_EQ(rows, static_cast<int64_t>(want.size())) << "rows never reached every observation";
    // Every saga extract opened settles: loaded + rejected (the overlaps'
    // duplicates, dropped by clean's dedupe) = accepted.
    simulator::SagaTotals totals;
    while (std::chrono::steady_clock::now() < deadline) {
      auto t = simulator::fetch_totals(stack_->saga_url(), "weather");
      if (t && t->sagas > 0 && t->in_flight == 0 && t->accepted == t->loaded + t->rejected) {
        totals = *t;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    EXPECT_GT(totals.sagas, 0u);
    EXPECT_EQ(totals.in_flight, 0u);
    EXPECT_EQ(totals.loaded + totals.rejected, totals.accepted);
    EXPECT_EQ(totals.in("COMPLETED"), totals.sagas);
    auto c = simulator::count_rows(db, "weather_observations");
    ASSERT_TRUE(c.has_value());
    EXPECT_EQ(c->rows, c->distinct_ids) << "a row is duplicated";
    const auto ids = loaded_ids(db, "weather_observations");
    EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()), want);
  }

  testing::TempDir dir_;
  std::unique_ptr<extract::FakeWeatherApi> api_;
  std::unique_ptr<supervisor::Stack> stack_;
  std::string pipeline_file_;
  int64_t first_ = 0;
};

TEST_F(ExtractE2E, IncrementalPullsOverSeveralWindowsLoadEveryObservationOnce) {
  // Given 24 hours of 3 stations, paged by 10, with duplicates and gaps, in
  // 6-hour windows overlapping by 2 hours
  start({.stations = 3, .page_size = 10, .duplicate_every = 7, .gap_every = 5}, 24);
  // Then the warehouse holds each observation the API has exactly once
  const auto want = expected_ids();
  ASSERT_EQ(want.size(), 24u * 3 - (24u * 3) / 5);
  expect_exact_rows(want);
  // and the API saw several windows, each fetched page by page
  std::set<std::string> windows;
  int pages = 0;
  for (const auto& r : api_->requests()) {
    windows.insert(r["query"]["start"].get<std::string>());
    if (r["query"].contains("page")) ++pages;
  }
  EXPECT_GE(windows.size(), 4u);
  EXPECT_GE(pages, 4);
}

TEST_F(ExtractE2E, KillNineOfExtractMidPollLeavesNoGapAndNoDuplicate) {
  // Given a slow API (each page takes 150 ms, 4 features a page)
  start({.stations = 3, .page_size = 4, .slow_ms = 150}, 24);
  const auto want = expected_ids();
  // When extract is killed with -9 at random moments of its polls, and the
  // supervisor restarts it
  std::mt19937 rng(7);
  for (int i = 0; i < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution(800, 2500)(rng)));
    ASSERT_TRUE(stack_->signal("extract", SIGKILL).has_value());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (stack_->restarts("extract") <= i && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_EQ(stack_->restarts("extract"), i + 1);
  }
  // Then nothing is missing and nothing doubled
  expect_exact_rows(want);
  // and a kill did land mid-window: a restarted extract asked for a page
  // it had asked for before (the window redone from the stored cursor)
  std::map<std::string, int> asked;
  for (const auto& r : api_->requests()) ++asked[r["query"].dump()];
  EXPECT_TRUE(std::any_of(asked.begin(), asked.end(), [](const auto& kv) { return kv.second > 1; }))
      << "no kill landed in the middle of a window";
}

// The `starling` executable's output and exit code.
std::pair<int, std::string> starling_cli(const std::string& args) {
  const auto cmd = std::string(STARLING_BIN_DIR) + "/starling " + args + " 2>&1";
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  while (p != nullptr && std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  const int st = p != nullptr ? ::pclose(p) : -1;
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

TEST_F(ExtractE2E, TheApiDownLongerThanTheStallDeadlineLosesNothingAndEveryPageSagaCompletes) {
  // Given a slow API (3 features a page, 150 ms each) and sagas that stall after 3 s
  start({.stations = 3, .page_size = 3, .slow_ms = 150}, 12, 0, "  stall_after: 3s\n");
  const auto want = expected_ids();
  // When the API goes down in the middle of catching up, for longer than the deadline
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (api_->requests().size() < 4 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  api_->set_down(true);
  std::this_thread::sleep_for(std::chrono::seconds(8));
  // extract backed off (it says so in its metrics) and the cursor did not move past what was pulled
  auto page = http_call("GET", stack_->url("extract") + "/metrics");
  ASSERT_TRUE(page.has_value());
  EXPECT_GE(
      testing::prometheus_sample(page->body, R"(starling_extract_backoffs_total{pipeline="weather",reason="backoff"})")
          .value_or(0),
      1);
  EXPECT_GT(testing::prometheus_sample(page->body,
                                       R"(starling_extract_http_responses_total{pipeline="weather",status="503"})")
                .value_or(0),
            0);
  int down_answers = 0;
  for (const auto& r : api_->requests()) down_answers += r["status"] == 503 ? 1 : 0;
  EXPECT_GE(down_answers, 2);
  // Then, the API back, every observation is loaded once and every saga completes
  api_->set_down(false);
  expect_exact_rows(want);
}

TEST_F(ExtractE2E, ABackfillBesideLivePollingPausedResumedAndKilledEndsWithExactRows) {
  // Given 48 hours of data, live polling from hour 36 on, and a slow API
  // (2 features a page, 150 ms each: a 6-hour window of 2 stations takes ~1 s)
  start({.stations = 2, .page_size = 2, .slow_ms = 150}, 48, 36);
  const auto want = expected_ids();
  const auto state_dir = dir_ / "backfills";
  const std::string id = "bf-e2e";
  const auto run_args = std::vector<std::string>{std::string(STARLING_BIN_DIR) + "/starling",
                                                 "extract",
                                                 "backfill",
                                                 "--pipeline",
                                                 pipeline_file_,
                                                 "--from",
                                                 rfc3339(first_),
                                                 "--to",
                                                 rfc3339(first_ + 38 * kHour),
                                                 "--id",
                                                 id,
                                                 "--kafka",
                                                 stack_->bootstrap(),
                                                 "--state-dir",
                                                 state_dir};
  auto status = [&]() -> nlohmann::json {
    auto [code, out] = starling_cli("extract backfill status " + id + " --json --state-dir " + state_dir);
    if (code != 0) return nlohmann::json::object();
    return nlohmann::json::parse(out, nullptr, false);
  };
  auto wait_for = [&](const std::function<bool(const nlohmann::json&)>& ok) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    nlohmann::json s;
    while (std::chrono::steady_clock::now() < deadline) {
      s = status();
      if (s.is_object() && ok(s)) return s;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "backfill status never got there: " << s.dump();
    return s;
  };
  // When a backfill of hours 0..38 (7 windows) runs beside it
  auto run = ChildProcess::spawn(run_args, dir_ / "backfill-1.log");
  ASSERT_TRUE(run.has_value()) << run.error().message;
  wait_for([](const auto& s) { return s.value("windows", 0) >= 1; });
  // is paused from another terminal (it stops pulling),
  auto [paused_code, paused_out] = starling_cli("extract backfill pause " + id + " --state-dir " + state_dir);
  EXPECT_EQ(paused_code, 0) << paused_out;
  const auto paused = wait_for([](const auto& s) { return s.value("state", "") == "paused"; });
  // The backfill's requests: windows from before live polling's start, or its last one (36..38)
  auto backfill_requests = [&] {
    const auto live_start = rfc3339(first_ + 36 * kHour);
    const auto last_end = rfc3339(first_ + 38 * kHour);
    std::size_t n = 0;
    for (const auto& r : api_->requests()) {
      const auto start = r["query"].value("start", "");
      n += (start < live_start || r["query"].value("end", "") == last_end) ? 1 : 0;
    }
    return n;
  };
  const auto asked = backfill_requests();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(status().value("records", -1), paused.value("records", -2)) << "a paused backfill pulled";
  EXPECT_EQ(backfill_requests(), asked) << "a paused backfill asked the API";
  // resumed,
  auto [resumed_code, resumed_out] = starling_cli("extract backfill resume " + id + " --state-dir " + state_dir);
  EXPECT_EQ(resumed_code, 0) << resumed_out;
  const auto resumed = wait_for([](const auto& s) { return s.value("state", "") == "running"; });
  // killed with -9 in the middle of a window (one has just ended; the next is being pulled),
  const auto windows = resumed.value("windows", 0);
  wait_for([windows](const auto& s) { return s.value("windows", 0) > windows; });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  run->signal(SIGKILL);
  ASSERT_TRUE(run->wait(std::chrono::seconds(10)).has_value());
  const auto gone = status();
  EXPECT_EQ(gone.value("process_alive", true), false);
  ASSERT_EQ(gone.value("state", ""), "running") << "the kill came after the end: " << gone.dump();
  // and started again with the same id
  auto again = ChildProcess::spawn(run_args, dir_ / "backfill-2.log");
  ASSERT_TRUE(again.has_value()) << again.error().message;
  const auto exit = again->wait(std::chrono::seconds(120));
  ASSERT_TRUE(exit.has_value()) << "the backfill never ended";
  EXPECT_TRUE(WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0);
  EXPECT_EQ(status().value("state", ""), "done");
  // Then the warehouse holds each observation once, live and backfilled alike,
  expect_exact_rows(want);
  // and the backfill is one saga of kind REPLAY that completed
  auto saga = http_call("GET", stack_->saga_url() + "/v1/sagas/" + id);
  ASSERT_TRUE(saga.has_value());
  ASSERT_EQ(saga->status, 200) << saga->body;
  const auto j = nlohmann::json::parse(saga->body);
  EXPECT_EQ(j.value("kind", ""), "REPLAY");
  EXPECT_EQ(j.value("state", ""), "COMPLETED");
  EXPECT_GT(j.value("total", 0), 0);
}

TEST_F(ExtractE2E, ABackfillRefusesARangeInTheFutureAndAPipelineWithoutASource) {
  start({.stations = 1}, 2);
  auto [future_code, future_out] =
      starling_cli("extract backfill --pipeline " + pipeline_file_ +
                   " --from 2026-01-01T00:00:00Z --to 2999-01-01T00:00:00Z --state-dir " + dir_ / "bf");
  EXPECT_EQ(future_code, 2) << future_out;
  EXPECT_THAT(future_out, ::testing::HasSubstr("--to 2999-01-01T00:00:00.000Z is in the future"));
  auto [none_code, none_out] =
      starling_cli("extract backfill --pipeline " + testing::source_path("pipelines/ecowheels.yaml") +
                   " --from 2026-01-01T00:00:00Z --to 2026-01-02T00:00:00Z --state-dir " + dir_ / "bf");
  EXPECT_EQ(none_code, 2) << none_out;
  EXPECT_THAT(none_out, ::testing::HasSubstr("declares no source"));
  auto [bad_code, bad_out] =
      starling_cli("extract backfill --pipeline " + pipeline_file_ + " --from yesterday --to 2026-01-02T00:00:00Z");
  EXPECT_EQ(bad_code, 2) << bad_out;
  EXPECT_THAT(bad_out, ::testing::HasSubstr("--from 'yesterday': expected an RFC 3339 time"));
}

}  // namespace
}  // namespace starling::e2e
