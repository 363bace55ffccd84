// starling-extract in a whole pipeline: a FakeWeatherApi (in this process,
// port 0) polled by a real starling-extract process into starling-broker,
// cleaned and loaded into SQLite by the real services (Stack). The warehouse
// must end with every observation the API has, exactly once, whatever the
// API's duplicates and gaps and however often extract is killed with -9.

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "services/common/pipeline.h"
#include "services/common/time.h"
#include "services/extract/fake_weather_api.h"
#include "services/extract/source.h"
#include "services/simulator/report.h"
#include "services/supervisor/stack.h"
#include "starling/v1/weather.pb.h"
#include "tests/e2e/pipeline_e2e.h"
#include "tests/services/extract/weather_source.h"
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
  void start(extract::FakeApiOptions o, int hours) {
    first_ = (now_ms() / kHour) * kHour - hours * kHour;
    o.first_hour_ms = first_;
    o.hours = hours;
    o.request_log = dir_ / "requests.jsonl";
    api_ = std::make_unique<extract::FakeWeatherApi>(o);
    api_->start();
    testing::SourceShape shape;
    shape.start = rfc3339(first_);
    shape.lookback = "2h";
    shape.every = "30s";  // at the live edge; catching up polls at once
    pipeline_file_ = dir_ / "weather.yaml";
    std::ofstream(pipeline_file_) << testing::weather_with_source(api_->base_url(), shape);

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

}  // namespace
}  // namespace starling::e2e
