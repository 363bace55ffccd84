// starling-extract's parts against a FakeWeatherApi on a loopback port and a
// fake producer: the source block's parsing, both response shapes, the polite
// client, and the poll's rule that the cursor moves only after Kafka
// persisted the whole window.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>

#include "services/common/pipeline.h"
#include "services/common/records.h"
#include "services/common/time.h"
#include "services/extract/api_client.h"
#include "services/extract/cursor_store.h"
#include "services/extract/extractor.h"
#include "services/extract/fake_weather_api.h"
#include "services/extract/source.h"
#include "starling/v1/envelope.pb.h"
#include "starling/v1/saga.pb.h"
#include "starling/v1/weather.pb.h"
#include "tests/services/extract/extractor_fixture.h"
#include "tests/services/extract/weather_source.h"
#include "tests/support/fake_kafka.h"
#include "tests/support/temp_dir.h"

namespace starling::extract {
namespace {

using testing::FakeProducer;
using ::testing::HasSubstr;
using testing::SourceShape;
using testing::TempDir;
using testing::weather_with_source;

using starling::testing::problems_of;

// The line of `needle` in `text`, 1-based.
int line_of(const std::string& text, const std::string& needle) {
  const auto pos = text.find(needle);
  EXPECT_NE(pos, std::string::npos) << needle;
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(pos), '\n'));
}

TEST(SourceConfig, ParsesEveryKeyResolvesEnvironmentAndKeepsTheWindowPlaceholders) {
  ::setenv("STARLING_TEST_WEATHER_KEY", "s3cret", 1);
  SourceShape s;
  s.start = "2026-01-01T00:00:00Z";
  s.extra =
      "    headers: {Authorization: \"Bearer ${STARLING_TEST_WEATHER_KEY}\"}\n    cursor: observed_at\n"
      "    quota: 120/min\n";
  const auto p = parse_pipeline(weather_with_source("http://127.0.0.1:9", s), "w.yaml");
  ASSERT_TRUE(p.source);
  const auto& src = *p.source;
  EXPECT_EQ(src.url, "http://127.0.0.1:9/geojson/observations?start=${since}&end=${until}");
  EXPECT_EQ(src.every_ms, 1000);
  EXPECT_EQ(src.window_ms, 6 * kHour);
  EXPECT_EQ(src.lookback_ms, kHour);
  EXPECT_EQ(src.start_ms.value_or(0), kFirst);
  EXPECT_EQ(src.records, "/features");
  EXPECT_EQ(src.paginate_next, "/pagination/next");
  ASSERT_EQ(src.headers.size(), 1u);
  EXPECT_EQ(src.headers[0].second, "Bearer s3cret");
  EXPECT_EQ(src.map.size(), 8u);
  EXPECT_EQ(src.cursor, "observed_at");
  EXPECT_DOUBLE_EQ(src.quota_per_min, 120);
  EXPECT_EQ(window_url(src, kFirst, kFirst + kHour),
            "http://127.0.0.1:9/geojson/observations?start=2026-01-01T00:00:00.000Z&end=2026-01-01T01:00:00.000Z");
}

TEST(SourceConfig, EveryProblemNamesItsLineAndField) {
  SourceShape s;
  s.start = "yesterday";
  s.every = "often";
  s.extra = "    colour: blue\n    quota: lots\n    cursor: station_id\n";
  auto yaml = weather_with_source("http://127.0.0.1:9", s);
  const auto problems = problems_of(yaml);
  EXPECT_THAT(problems, HasSubstr(fmt::format("w.yaml:{}:12: source.http_poll.every: expected a duration",
                                              line_of(yaml, "every: often"))));
  EXPECT_THAT(problems, HasSubstr(fmt::format("w.yaml:{}:5: source.http_poll.colour: unknown key",
                                              line_of(yaml, "colour: blue"))));
  EXPECT_THAT(problems, HasSubstr(fmt::format("w.yaml:{}:12: source.http_poll.quota: expected requests per unit",
                                              line_of(yaml, "quota: lots"))));
  EXPECT_THAT(problems, HasSubstr(fmt::format("w.yaml:{}:13: source.http_poll.cursor: expected a "
                                              "google.protobuf.Timestamp field",
                                              line_of(yaml, "cursor: station_id"))));
  EXPECT_THAT(problems, HasSubstr(fmt::format("w.yaml:{}:", line_of(yaml, "start: \"yesterday\""))));
  EXPECT_THAT(problems, HasSubstr("source.http_poll.start: expected an RFC 3339 time"));

  // A field the message does not have, both shapes at once, no url, a window
  // no longer than the lookback.
  yaml = testing::weather_yaml() + R"(
source:
  http_poll:
    every: 1h
    records: /features
    columns: /hourly
    window: 1h
    lookback: 2h
    map: {altitude: /alt, station_id: station}
)";
  const auto more = problems_of(yaml);
  EXPECT_THAT(more, HasSubstr(fmt::format("w.yaml:{}:5: source.http_poll.url: missing", line_of(yaml, "every: 1h"))));
  EXPECT_THAT(more, HasSubstr(fmt::format("w.yaml:{}:14: source.http_poll.columns: give records",
                                          line_of(yaml, "columns: /hourly"))));
  EXPECT_THAT(more,
              HasSubstr(fmt::format("w.yaml:{}:13: source.http_poll.window: expected a window longer than lookback",
                                    line_of(yaml, "window: 1h"))));
  EXPECT_THAT(more, HasSubstr(fmt::format("w.yaml:{}:11: source.http_poll.map.altitude: unknown field 'altitude'",
                                          line_of(yaml, "map: {altitude"))));
  EXPECT_THAT(more, HasSubstr(fmt::format("w.yaml:{}:39: source.http_poll.map.station_id: expected a JSON pointer",
                                          line_of(yaml, "map: {altitude"))));
  // An unknown block under source.
  EXPECT_THAT(problems_of(testing::weather_yaml() + "source:\n  kafka_poll: {}\n"),
              HasSubstr("source.kafka_poll: unknown key; expected one of: http_poll"));
}

TEST(SourceConfig, TheExamplePipelineLoadsWithItsDefaultsFromTheEnvironment) {
  ::unsetenv("WEATHER_API");
  const auto p = load_pipeline(testing::source_path("tests/services/extract/data/weather_poll.yaml"));
  ASSERT_TRUE(p.source);
  EXPECT_EQ(p.source->url, "http://127.0.0.1:8090/geojson/observations?start=${since}&end=${until}");
  EXPECT_EQ(p.source->start_ago_ms.value_or(0), kHour * 48);
  EXPECT_DOUBLE_EQ(p.source->quota_per_min, 60);
  EXPECT_EQ(p.source->cursor_field, p.event_time_field);
}

TEST(Page, GeoJsonRecordsAreMappedAndTheNextLinkKept) {
  HttpPollSource s;
  s.records = "/features";
  s.paginate_next = "/pagination/next";
  s.map = {{"station_id", "/properties/station"}, {"air_temperature", "/properties/t"}};
  auto page = parse_page(s, R"({"features":[{"properties":{"station":"KBOS","t":50.5,"x":1}},
                                             {"properties":{"station":"KJFK"}}],
                                "pagination":{"next":"http://127.0.0.1:1/next?page=2"}})");
  ASSERT_TRUE(page.has_value()) << page.error().message;
  ASSERT_EQ(page->records.size(), 2u);
  EXPECT_EQ(page->records[0], nlohmann::json({{"station_id", "KBOS"}, {"air_temperature", 50.5}}));
  EXPECT_EQ(page->records[1], nlohmann::json({{"station_id", "KJFK"}}));  // missing: unset, as null would be
  EXPECT_EQ(page->next.value_or(""), "http://127.0.0.1:1/next?page=2");
  auto last = parse_page(s, R"({"features":[],"pagination":{"next":null}})");
  ASSERT_TRUE(last.has_value());
  EXPECT_FALSE(last->next);
}

TEST(Page, OpenMeteoColumnsAreZippedIntoRecords) {
  HttpPollSource s;
  s.columns = "/hourly";
  s.map = {{"station_id", "/station"}, {"observed_at", "/time"}};
  auto page = parse_page(s, R"({"hourly":{"time":["2026-01-01T00:00:00Z","2026-01-01T01:00:00Z"],
                                          "station":["KBOS","KBOS"]}})");
  ASSERT_TRUE(page.has_value()) << page.error().message;
  ASSERT_EQ(page->records.size(), 2u);
  EXPECT_EQ(page->records[1], nlohmann::json({{"station_id", "KBOS"}, {"observed_at", "2026-01-01T01:00:00Z"}}));
}

TEST(Page, AMalformedBodyIsRefusedWithWhatWasWrong) {
  HttpPollSource records;
  records.records = "/features";
  EXPECT_THAT(parse_page(records, R"({"features":[{"a":1}, )").error().message, HasSubstr("not JSON"));
  EXPECT_THAT(parse_page(records, R"({"features":{"a":1}})").error().message,
              HasSubstr("expected an array at '/features', found object"));
  EXPECT_THAT(parse_page(records, R"({"other":[]})").error().message, HasSubstr("found nothing"));
  EXPECT_THAT(parse_page(records, std::string(100, '[') + std::string(100, ']')).error().message,
              HasSubstr("deeper than 64"));
  HttpPollSource columns;
  columns.columns = "/hourly";
  EXPECT_THAT(parse_page(columns, R"({"hourly":{"time":[1,2],"t":[1]}})").error().message,
              HasSubstr("columns: 'time' has 2 values, the others 1"));
  records.paginate_next = "/next";
  EXPECT_THAT(parse_page(records, R"({"features":[],"next":"/relative"})").error().message,
              HasSubstr("expected an absolute URL"));
}

// A scripted API for the client: answers in order, then 200 "{}".
struct Script {
  std::vector<HttpResponse> answers;
  std::vector<std::chrono::steady_clock::time_point> calls;
  HttpGet get() {
    return [this](const std::string&, const std::map<std::string, std::string>&, int) -> Result<HttpResponse> {
      calls.push_back(std::chrono::steady_clock::now());
      if (calls.size() <= answers.size()) return answers[calls.size() - 1];
      return HttpResponse{200, "{}", "application/json", {}};
    };
  }
};

ClientOptions fast() {
  ClientOptions o;
  o.backoff_base = std::chrono::milliseconds(20);
  o.backoff_max = std::chrono::milliseconds(100);
  return o;
}

TEST(ApiClient, WaitsAsRetryAfterSaysOnA429) {
  Script script;
  script.answers.push_back({429, "", "application/json", {{"Retry-After", "1"}}});
  ApiClient client(fast(), script.get(), {});
  auto body = client.get("http://x/", {});
  ASSERT_TRUE(body.has_value()) << body.error().message;
  ASSERT_EQ(script.calls.size(), 2u);
  EXPECT_GE(script.calls[1] - script.calls[0], std::chrono::milliseconds(1000));
}

TEST(ApiClient, BacksOffOn5xxAndGivesUpAfterTheAttempts) {
  Script script;
  for (int i = 0; i < 10; ++i) script.answers.push_back({503, "down", "text/plain", {}});
  auto o = fast();
  o.max_attempts = 3;
  ApiClient client(o, script.get(), {});
  auto body = client.get("http://x/", {});
  ASSERT_FALSE(body.has_value());
  EXPECT_EQ(body.error().code, Errc::kUnavailable);
  EXPECT_THAT(body.error().message, HasSubstr("HTTP 503 after 3 attempts"));
  ASSERT_EQ(script.calls.size(), 3u);
  EXPECT_GE(script.calls[1] - script.calls[0], std::chrono::milliseconds(2));  // at least a tenth of 20 ms
}

TEST(ApiClient, A4xxAndAnOversizeBodyAreNotRetried) {
  Script script;
  script.answers.push_back({404, "no such station", "text/plain", {}});
  ApiClient client(fast(), script.get(), {});
  auto body = client.get("http://x/", {});
  ASSERT_FALSE(body.has_value());
  EXPECT_EQ(body.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(script.calls.size(), 1u);

  Script big;
  big.answers.push_back({200, std::string(101, 'x'), "application/json", {}});
  auto o = fast();
  o.max_response_bytes = 100;
  ApiClient small(o, big.get(), {});
  auto refused = small.get("http://x/", {});
  ASSERT_FALSE(refused.has_value());
  EXPECT_THAT(refused.error().message, HasSubstr("101 bytes, over the limit of 100"));
  EXPECT_EQ(big.calls.size(), 1u);
}

TEST(ApiClient, KeepsTheQuota) {
  Script script;
  auto o = fast();
  o.quota_per_min = 600;  // one request every 100 ms
  ApiClient client(o, script.get(), {});
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(client.get("http://x/", {}).has_value());
  EXPECT_GE(script.calls.back() - script.calls.front(), std::chrono::milliseconds(300));
}

TEST(ApiClient, ParsesRetryAfterAsSecondsOrAnHttpDate) {
  EXPECT_EQ(parse_retry_after("3", 0).value_or(std::chrono::milliseconds(-1)), std::chrono::seconds(3));
  const auto now = *parse_time_ms("2026-01-01T00:00:00Z");
  EXPECT_EQ(parse_retry_after("Thu, 01 Jan 2026 00:00:10 GMT", now).value_or(std::chrono::milliseconds(-1)),
            std::chrono::seconds(10));
  EXPECT_FALSE(parse_retry_after("soon", now));
}

TEST_F(ExtractorTest, PullsIncrementalWindowsPageByPageAndEndsWithEveryObservation) {
  // Given 24 hours of 3 stations, 7 features a page, 6-hour windows with a 1-hour lookback
  start_api({.stations = 3, .hours = 24, .page_size = 7});
  make({});
  // When extract catches up to the end of the data
  const auto polls = poll_all(kFirst + 24 * kHour);
  // Then it went window by window, each starting an hour before the last ended
  ASSERT_GE(polls.size(), 5u);
  EXPECT_EQ(polls[0].since_ms, kFirst);
  EXPECT_EQ(polls[0].until_ms, kFirst + 6 * kHour);
  EXPECT_EQ(polls[1].since_ms, kFirst + 5 * kHour);
  EXPECT_EQ(polls[0].pages, 3);  // 18 features, 7 a page
  EXPECT_EQ(polls[0].sagas, 3);
  EXPECT_EQ(store_->since("weather")->value_or(-1), polls.back().next_since_ms);
  // and every observation was pulled (the overlaps again, with the same event ids)
  const auto got = pulled();
  EXPECT_EQ(std::set(got.begin(), got.end()), expected(kFirst, kFirst + 24 * kHour));
  std::map<std::pair<std::string, int64_t>, std::set<std::string>> ids;
  for (const auto& e : raw()) ids[{e.device_id(), e.event_time_ms()}].insert(e.event_id());
  for (const auto& [key, set] : ids) EXPECT_EQ(set.size(), 1u) << key.first << " " << key.second;
  // and each page's saga was opened by an INGESTED fact with its total
  std::map<std::string, uint32_t> totals;
  for (const auto& m : producer_.produced()) {
    if (m.topic != "starling.saga") continue;
    v1::ProgressFact f;
    ASSERT_TRUE(f.ParseFromString(m.value));
    EXPECT_EQ(f.step(), v1::STEP_INGESTED);
    totals[f.saga_id()] += f.total();
  }
  std::map<std::string, uint32_t> seqs;
  for (const auto& e : raw()) seqs[e.saga_id()]++;
  EXPECT_EQ(totals, seqs);
}

TEST_F(ExtractorTest, BothShapesGiveTheSameRecordsAndEventIds) {
  start_api({.stations = 2, .hours = 6});
  make({});
  poll_all(kFirst + 6 * kHour);
  std::set<std::string> geo_ids;
  for (const auto& e : raw()) geo_ids.insert(e.event_id());
  const auto geo = pulled();

  FakeProducer other;
  TempDir dir2;
  auto store2 = std::move(*CursorStore::open(dir2 / "cursors"));
  SourceShape meteo;
  meteo.geojson = false;
  meteo.start = rfc3339(kFirst);
  auto p2 = parse_pipeline(weather_with_source(api_->base_url(), meteo), "m.yaml");
  Extractor e2(p2, other, *store2, "extract-test", {}, http_get(), [] { return false; });
  ASSERT_TRUE(e2.poll(kFirst + 6 * kHour).has_value());
  std::set<std::string> meteo_ids;
  std::multiset<std::pair<std::string, int64_t>> meteo_records;
  for (const auto& m : other.produced()) {
    if (m.topic != "weather.raw") continue;
    v1::Envelope e;
    ASSERT_TRUE(e.ParseFromString(m.value));
    meteo_ids.insert(e.event_id());
    meteo_records.emplace(e.device_id(), e.event_time_ms());
  }
  EXPECT_EQ(meteo_records, geo);
  EXPECT_EQ(meteo_ids, geo_ids);
  EXPECT_EQ(meteo_ids.size(), 12u);
}

TEST_F(ExtractorTest, A429IsFollowedAfterRetryAfterAsTheRequestLogShows) {
  start_api({.stations = 2, .hours = 6, .page_size = 4, .throttle_every = 2, .retry_after_s = 1});
  make({});
  poll_all(kFirst + 6 * kHour);
  const auto log = api_->requests();
  ASSERT_GE(log.size(), 3u);
  int throttled = 0;
  for (std::size_t i = 0; i + 1 < log.size(); ++i) {
    if (log[i]["status"] != 429) continue;
    ++throttled;
    EXPECT_EQ(log[i + 1]["query"], log[i]["query"]) << "the same request again";
    EXPECT_GE(log[i + 1]["t_ms"].get<int64_t>() - log[i]["t_ms"].get<int64_t>(), 1000) << "Retry-After: 1";
  }
  EXPECT_GE(throttled, 1);
  const auto got = pulled();
  EXPECT_EQ(std::set(got.begin(), got.end()), expected(kFirst, kFirst + 6 * kHour));
}

TEST_F(ExtractorTest, A503NowAndThenIsRetriedWithBackoffAndNothingIsLost) {
  start_api({.stations = 2, .hours = 6, .page_size = 4, .error_every = 3});
  make({});
  poll_all(kFirst + 6 * kHour);
  const auto log = api_->requests();
  int failed = 0;
  for (std::size_t i = 0; i + 1 < log.size(); ++i) {
    if (log[i]["status"] != 503) continue;
    ++failed;
    EXPECT_EQ(log[i + 1]["query"], log[i]["query"]) << "the same request again";
  }
  EXPECT_GE(failed, 1);
  const auto got = pulled();
  EXPECT_EQ(std::set(got.begin(), got.end()), expected(kFirst, kFirst + 6 * kHour));
}

TEST_F(ExtractorTest, AMalformedResponseFailsThePollAndTheCursorStays) {
  start_api({.stations = 2, .hours = 6, .malformed_every = 1});
  make({});
  auto r = extractor_->poll(kFirst + 6 * kHour);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, PollFailure::kMalformed);
  EXPECT_THAT(r.error().message, HasSubstr("not JSON"));
  EXPECT_FALSE(store_->since("weather")->has_value());
  EXPECT_TRUE(producer_.produced().empty());
}

TEST_F(ExtractorTest, AnOversizeResponseFailsThePollAndTheCursorStays) {
  start_api({.stations = 2, .hours = 6});
  ExtractOptions o;
  o.client.max_response_bytes = 512;
  make({}, o);
  auto r = extractor_->poll(kFirst + 6 * kHour);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, PollFailure::kMalformed);
  EXPECT_THAT(r.error().message, HasSubstr("over the limit of 512"));
  EXPECT_FALSE(store_->since("weather")->has_value());
}

TEST_F(ExtractorTest, TheCursorStaysUntilKafkaPersistedTheWholeWindow) {
  start_api({.stations = 2, .hours = 6, .page_size = 4});
  ExtractOptions o;
  o.produce_timeout = std::chrono::milliseconds(500);
  make({}, o);
  // The second page is not persisted: the first page's saga went out, the
  // cursor did not move.
  std::atomic<int> raw_seen{0};
  producer_.decide([&](const kafka::OutMessage& m) {
    if (m.topic == "weather.raw" && ++raw_seen > 4) return FakeProducer::failed("broker down", false);
    return FakeProducer::persisted();
  });
  auto r = extractor_->poll(kFirst + 6 * kHour);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, PollFailure::kKafka);
  EXPECT_FALSE(store_->since("weather")->has_value());
  // Once Kafka is back the window is redone: the first page is the same saga.
  const auto first_saga = raw().front().saga_id();
  producer_.decide({});
  auto again = extractor_->poll(kFirst + 6 * kHour);
  ASSERT_TRUE(again.has_value()) << again.error().message;
  EXPECT_EQ(again->since_ms, kFirst);
  std::set<std::string> sagas;
  for (const auto& e : raw()) sagas.insert(e.saga_id());
  EXPECT_TRUE(sagas.contains(first_saga));
  EXPECT_EQ(sagas.size(), 3u);                                    // 12 observations, 4 a page
  EXPECT_EQ(**store_->since("weather"), kFirst + 4 * kHour + 1);  // the newest record, less the lookback
}

TEST_F(ExtractorTest, ARecordThatDoesNotConvertGoesToRejectedWithStageExtract) {
  start_api({.stations = 1, .hours = 2});
  SourceShape s;
  make(s);
  // air_temperature from the sky's text: no record converts.
  auto yaml = weather_with_source(api_->base_url(), {.start = rfc3339(kFirst)});
  yaml.replace(yaml.find("/properties/temperature_f"), 25, "/properties/sky");
  pipeline_ = parse_pipeline(yaml, "w.yaml");
  extractor_ = std::make_unique<Extractor>(pipeline_, producer_, *store_, "extract-test", ExtractOptions{}, http_get(),
                                           [] { return false; });
  auto r = extractor_->poll(kFirst + 2 * kHour);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->records, 0u);
  EXPECT_EQ(r->rejected, 2u);
  int rejected = 0;
  int rejected_facts = 0;
  for (const auto& m : producer_.produced()) {
    if (m.topic == "weather.rejected") {
      v1::RejectedRecord rr;
      ASSERT_TRUE(rr.ParseFromString(m.value));
      EXPECT_EQ(rr.stage(), "extract");
      ASSERT_EQ(rr.reasons_size(), 1);
      EXPECT_EQ(rr.reasons(0).field(), "air_temperature");
      EXPECT_FALSE(rr.reasons(0).expected().empty());
      ++rejected;
    } else if (m.topic == "starling.saga") {
      v1::ProgressFact f;
      ASSERT_TRUE(f.ParseFromString(m.value));
      if (f.step() == v1::STEP_REJECTED) rejected_facts += f.rejections_size();
      if (f.step() == v1::STEP_INGESTED) {
        EXPECT_EQ(f.total(), 2u);
      }
    }
  }
  EXPECT_EQ(rejected, 2);
  EXPECT_EQ(rejected_facts, 2);
}

}  // namespace
}  // namespace starling::extract
