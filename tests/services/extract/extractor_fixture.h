#pragma once
// The extractor's test fixture: one pipeline, a FakeWeatherApi on a loopback
// port (port 0), a fake producer and a cursor store in a temporary folder.

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "services/common/pipeline.h"
#include "services/common/time.h"
#include "services/extract/api_client.h"
#include "services/extract/cursor_store.h"
#include "services/extract/extractor.h"
#include "services/extract/fake_weather_api.h"
#include "starling/v1/envelope.pb.h"
#include "starling/v1/weather.pb.h"
#include "tests/services/extract/weather_source.h"
#include "tests/support/fake_kafka.h"
#include "tests/support/temp_dir.h"

namespace starling::extract {

inline constexpr int64_t kHour = 3'600'000;
inline constexpr int64_t kFirst = 1'767'225'600'000;  // 2026-01-01T00:00:00Z

// One pipeline, a fake API, a fake producer and a cursor store.
class ExtractorTest : public ::testing::Test {
 protected:
  void start_api(FakeApiOptions o) {
    o.first_hour_ms = kFirst;
    o.request_log = dir_ / "requests.jsonl";
    api_ = std::make_unique<FakeWeatherApi>(o);
    api_->start();
  }
  void make(starling::testing::SourceShape shape, ExtractOptions options = {}, const HttpClientOptions& tls = {}) {
    shape.start = rfc3339(kFirst);
    make_from(starling::testing::weather_with_source(api_->base_url(), shape), std::move(options), tls);
  }
  void make_from(const std::string& yaml, ExtractOptions options = {}, const HttpClientOptions& tls = {}) {
    pipeline_ = parse_pipeline(yaml, "w.yaml");
    if (!store_) store_ = std::move(*CursorStore::open(dir_ / "cursors"));
    options.client.backoff_base = std::chrono::milliseconds(10);
    options.client.backoff_max = std::chrono::milliseconds(50);
    extractor_ = std::make_unique<Extractor>(
        pipeline_, producer_, *store_, "extract-test", options, http_get(tls), [] { return false; }, http_post(tls));
  }
  // Polls until caught up at `now`; returns the polls.
  std::vector<PollResult> poll_all(int64_t now) {
    std::vector<PollResult> out;
    for (int i = 0; i < 100; ++i) {
      auto r = extractor_->poll(now);
      EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
      if (!r) break;
      out.push_back(*r);
      if (r->caught_up) break;
    }
    return out;
  }
  std::vector<v1::Envelope> raw() const {
    std::vector<v1::Envelope> out;
    for (const auto& m : producer_.produced()) {
      if (m.topic != "weather.raw") continue;
      v1::Envelope e;
      EXPECT_TRUE(e.ParseFromString(m.value));
      out.push_back(std::move(e));
    }
    return out;
  }
  // (station, time) of each record on weather.raw.
  std::multiset<std::pair<std::string, int64_t>> pulled() const {
    std::multiset<std::pair<std::string, int64_t>> out;
    for (const auto& e : raw()) {
      v1::WeatherObservation o;
      EXPECT_TRUE(o.ParseFromString(e.payload()));
      out.emplace(o.station_id(), e.event_time_ms());
    }
    return out;
  }
  std::set<std::pair<std::string, int64_t>> expected(int64_t from, int64_t to) const {
    std::set<std::pair<std::string, int64_t>> out;
    for (const auto& o : api_->observations(from, to)) out.emplace(o.station, o.time_ms);
    return out;
  }

  starling::testing::TempDir dir_;
  std::unique_ptr<FakeWeatherApi> api_;
  PipelineConfig pipeline_;
  starling::testing::FakeProducer producer_;
  std::unique_ptr<CursorStore> store_;
  std::unique_ptr<Extractor> extractor_;
};

}  // namespace starling::extract
