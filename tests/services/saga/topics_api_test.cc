// The saga API's topic-reading endpoints (/v1/journey, /v1/rejects,
// /v1/sagas/{id}/events) over topics held in memory (no broker): parameters
// refused with the parameter named, the journey of a good, a rejected and a
// load-refused event, grouping of rejects, records that do not decode, values
// that must be cut or made UTF-8, and the scan's bounds.

#include "services/saga/topics_api.h"

#include <fmt/format.h>
#include <google/protobuf/stubs/logging.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "services/saga/saga_api.h"
#include "tests/services/saga/topics_api_fixture.h"
#include "tests/support/memory_topics.h"
#include "tests/support/temp_dir.h"

namespace starling::saga {
namespace {

using nlohmann::json;
using namespace testing;  // NOLINT(google-build-using-namespace): the fixture's helpers

class TopicsApiTest : public ::testing::Test {
 protected:
  TopicsApiTest() : store_(dir_ / "db"), pipeline_(ecowheels()), stages_(pipeline_) {
    google::protobuf::SetLogHandler(nullptr);
    for (const auto& t : {pipeline_.raw_topic(), pipeline_.clean_topic(), pipeline_.rejected_topic()}) {
      topics_.create(t, 3);
    }
    options_.pipelines = {pipeline_};
    options_.source = topics_.factory();
  }

  // Puts a message on its topic: partition by key, as the stages' producers
  // do (any stable choice serves here), at time `t`.
  int64_t put(const kafka::OutMessage& m, int64_t t = kT0) {
    const int32_t p = static_cast<int32_t>(std::hash<std::string>{}(m.key) % 3);
    return topics_.add(m.topic, p, m.key, m.value, t);
  }
  // One event through ingest and clean, both outputs on their topics.
  Produced event(const json& record, const std::string& saga, uint32_t seq, int64_t t = kT0) {
    auto e = stages_.event(record, saga, seq, t);
    put(e.raw, t);
    put(e.out, t + 5);
    return e;
  }

  struct Answer {
    int status = 0;
    json body;
    HttpResponse raw;
  };
  std::optional<Answer> call(const std::string& path, std::map<std::string, std::string> query = {},
                             const std::string& method = "GET") {
    HttpRequest req;
    req.method = method;
    req.path = path;
    req.query = std::move(query);
    auto r = handle_topics_api(options_, store_, req, [this] { return now_; });
    if (!r) return std::nullopt;
    Answer a{r->status, json::parse(r->body, nullptr, false), *r};
    EXPECT_FALSE(a.body.is_discarded()) << r->body;
    return a;
  }
  Answer get(const std::string& path, std::map<std::string, std::string> query = {}) {
    auto a = call(path, std::move(query));
    EXPECT_TRUE(a.has_value()) << path << " was not routed";
    return a ? *a : Answer{};
  }
  json journey(std::map<std::string, std::string> query) {
    query.emplace("pipeline", "ecowheels");
    auto a = get("/v1/journey", std::move(query));
    EXPECT_EQ(a.status, 200) << a.body.dump();
    return a.body;
  }

  starling::testing::TempDir dir_;
  RocksSagaStore store_;
  PipelineConfig pipeline_;
  Stages stages_;
  starling::testing::MemoryTopics topics_;
  TopicsApiOptions options_;
  int64_t now_ = kT0 + 60'000;
};

// --- parameters ------------------------------------------------------------

TEST_F(TopicsApiTest, BadParametersAre400NamingTheParameterAndAnUnknownPipelineIs404) {
  store_sagas(store_, {saga_record("s1", "ecowheels", 1, kT0, {})});
  struct Case {
    std::string path;
    std::map<std::string, std::string> query;
    int status;
    std::string field;
  };
  const std::string big(5000, 'x');
  const std::vector<Case> cases = {
      {"/v1/journey", {{"event_id", "e"}}, 400, "pipeline"},
      {"/v1/journey", {{"pipeline", "ecowheels"}}, 400, "event_id"},
      {"/v1/journey", {{"pipeline", "ecowheels"}, {"event_id", "e"}, {"device_id", "d"}}, 400, "device_id"},
      {"/v1/journey", {{"pipeline", "ecowheels"}, {"event_id", "e"}, {"limit", "0"}}, 400, "limit"},
      {"/v1/journey", {{"pipeline", "ecowheels"}, {"event_id", "e"}, {"limit", "101"}}, 400, "limit"},
      {"/v1/journey", {{"pipeline", "ecowheels"}, {"event_id", "e"}, {"limit", "-1"}}, 400, "limit"},
      {"/v1/journey", {{"pipeline", "ecowheels"}, {"event_id", "e"}, {"limit", "1e3"}}, 400, "limit"},
      {"/v1/journey",
       {{"pipeline", "ecowheels"}, {"event_id", "e"}, {"limit", "99999999999999999999999"}},
       400,
       "limit"},
      {"/v1/journey", {{"pipeline", "ecowheels"}, {"event_id", "e"}, {"since", "yesterday"}}, 400, "since"},
      {"/v1/journey", {{"pipeline", "ecowheels"}, {"event_id", "e"}, {"since", "2026-11-23T10:00:00"}}, 400, "since"},
      {"/v1/journey", {{"pipeline", "nope"}, {"event_id", "e"}}, 404, "pipeline"},
      {"/v1/journey", {{"pipeline", big}, {"event_id", "e"}}, 404, "pipeline"},
      {"/v1/rejects", {}, 400, "pipeline"},
      {"/v1/rejects", {{"pipeline", "ecowheels"}, {"examples", "21"}}, 400, "examples"},
      {"/v1/rejects", {{"pipeline", "ecowheels"}, {"examples", "x"}}, 400, "examples"},
      {"/v1/rejects", {{"pipeline", "ecowheels"}, {"until", "\xff\xfe"}}, 400, "until"},
      {"/v1/rejects", {{"pipeline", "ecowheels"}, {"since", "10m"}, {"until", "1h"}}, 400, "until"},
      {"/v1/rejects", {{"pipeline", "<script>"}}, 404, "pipeline"},
      {"/v1/sagas/s1/events", {{"limit", "10001"}}, 400, "limit"},
      {"/v1/sagas/s1/events", {{"limit", ""}}, 200, ""},
      {"/v1/sagas/nope/events", {}, 404, "saga_id"},
  };
  for (const auto& c : cases) {
    const auto a = get(c.path, c.query);
    EXPECT_EQ(a.status, c.status) << c.path << " " << json(c.query).dump() << ": " << a.raw.body;
    if (c.status >= 400) {
      EXPECT_EQ(a.body["error"].value("field", ""), c.field) << a.raw.body;
      // Client bytes come back valid UTF-8 and short.
      EXPECT_LT(a.raw.body.size(), 600u) << a.raw.body;
    }
  }
  EXPECT_EQ(get("/v1/journey", {{"pipeline", "nope"}, {"event_id", "e"}}).body["error"]["code"], "unknown_pipeline");
  // Nothing was read for a refused request.
  EXPECT_EQ(topics_.created, 1u);  // the one 200 above
}

TEST_F(TopicsApiTest, OnlyItsOwnPathsAreRoutedAndOnlyGet) {
  for (const std::string path : {"/v1/sagas", "/v1/sagas/s1", "/v1/sagas/a/b/events", "/v1/sagas//events",
                                 "/v1/sagas/events", "/v1/journeys", "/v1/journey/x", "/v1/reject", "/openapi.json"}) {
    EXPECT_FALSE(call(path).has_value()) << path;
  }
  for (const std::string method : {"POST", "PUT", "DELETE"}) {
    auto a = call("/v1/journey", {}, method);
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->status, 405);
  }
}

TEST_F(TopicsApiTest, KafkaUnreachableIs503WithRetryAfter) {
  topics_.down = true;
  store_sagas(store_, {saga_record("s1", "ecowheels", 1, kT0, {})});
  for (const auto& [path, query] : std::vector<std::pair<std::string, std::map<std::string, std::string>>>{
           {"/v1/journey", {{"pipeline", "ecowheels"}, {"event_id", "e"}}},
           {"/v1/rejects", {{"pipeline", "ecowheels"}}},
           {"/v1/sagas/s1/events", {}}}) {
    const auto a = get(path, query);
    EXPECT_EQ(a.status, 503) << path;
    EXPECT_EQ(a.body["error"]["code"], "kafka_unavailable");
    EXPECT_NE(std::find(a.raw.headers.begin(), a.raw.headers.end(),
                        std::make_pair(std::string("Retry-After"), std::string("5"))),
              a.raw.headers.end());
  }
}

TEST_F(TopicsApiTest, PastMaxConcurrentReadersARequestIs503Busy) {
  options_.max_concurrent = 2;
  options_.in_flight->store(2);  // two requests reading now
  auto a = get("/v1/rejects", {{"pipeline", "ecowheels"}});
  EXPECT_EQ(a.status, 503);
  EXPECT_EQ(a.body["error"]["code"], "busy");
  EXPECT_EQ(topics_.created, 0u);
  options_.in_flight->store(1);
  EXPECT_EQ(get("/v1/rejects", {{"pipeline", "ecowheels"}}).status, 200);
  EXPECT_EQ(options_.in_flight->load(), 1u);  // its place was given back
}

// --- journey ---------------------------------------------------------------

TEST_F(TopicsApiTest, AGoodEventsJourneyShowsItsChangesAndTheRowAsLoaded) {
  const auto e = event(reading("ev-good", "bike-0001", 21.54), "s1", 0);
  ASSERT_TRUE(e.clean);
  store_sagas(store_, {saga_record("s1", "ecowheels", 1, kT0, {.cleaned = {0}, .loaded = {0}})});

  const auto body = journey({{"event_id", "ev-good"}});
  EXPECT_EQ(body["pipeline"], "ecowheels");
  EXPECT_EQ(body["complete"], true);
  EXPECT_EQ(body["undecodable"], 0);
  ASSERT_EQ(body["events"].size(), 1u) << body.dump(2);
  const auto& ev = body["events"][0];
  EXPECT_EQ(ev["event_id"], "ev-good");
  EXPECT_EQ(ev["device_id"], "bike-0001");
  EXPECT_EQ(ev["saga_id"], "s1");
  EXPECT_EQ(ev["seq"], 0);
  EXPECT_EQ(ev["status"], "loaded");
  EXPECT_EQ(ev["where"], "loaded into ride_telemetry");
  EXPECT_EQ(ev["ingested"]["topic"], "ecowheels.raw");
  EXPECT_EQ(ev["ingested"]["time_ms"], kT0);
  EXPECT_EQ(ev["ingested"]["time"], "2026-11-23T10:00:00.000Z");
  EXPECT_EQ(ev["ingested"]["payload"]["speed_kmh"], 21.54);
  EXPECT_EQ(ev["cleaned"]["topic"], "ecowheels.clean");
  EXPECT_EQ(ev["cleaned"]["payload"]["speed_kmh"], 21.5);
  // Clean's typed changes, rule by rule.
  json rounded;
  for (const auto& c : ev["cleaned"]["changes"]) {
    if (c["field"] == "speed_kmh") rounded = c;
  }
  ASSERT_TRUE(rounded.is_object()) << ev["cleaned"].dump(2);
  EXPECT_EQ(rounded["rule"], "round(1)");
  EXPECT_EQ(rounded["from"], 21.54);
  EXPECT_EQ(rounded["to"], 21.5);
  EXPECT_TRUE(ev["rejected"].is_null());
  // The row as the loader writes it: envelope columns and the mapping's.
  EXPECT_EQ(ev["loaded"]["table"], "ride_telemetry");
  const auto& row = ev["loaded"]["row"];
  EXPECT_EQ(row["event_id"], "ev-good");
  EXPECT_EQ(row["saga_id"], "s1");
  EXPECT_EQ(row["_starling_device_id"], "bike-0001");
  EXPECT_EQ(row["speed_kmh"], 21.5);
  EXPECT_EQ(row["battery_pct"], 80.0);
  EXPECT_EQ(row["status"], "RIDING");
  EXPECT_EQ(row["event_time"], "2026-11-23T10:00:00Z");
  EXPECT_TRUE(row["lat"].is_null());  // unset: NULL, as the sinks bind it
  EXPECT_EQ(row.size(), 6u + pipeline_.columns.size());
}

TEST_F(TopicsApiTest, ARejectedEventsJourneyGivesTheReasonsAndWhere) {
  event(reading("ev-fast", "bike-0002", 99), "s2", 0);
  store_sagas(store_, {saga_record("s2", "ecowheels", 1, kT0, {.rejected = {0}})});
  const auto body = journey({{"event_id", "ev-fast"}});
  ASSERT_EQ(body["events"].size(), 1u) << body.dump(2);
  const auto& ev = body["events"][0];
  EXPECT_EQ(ev["status"], "rejected");
  EXPECT_EQ(ev["where"], "rejected by clean (rule range on speed_kmh)");
  EXPECT_TRUE(ev["cleaned"].is_null());
  EXPECT_TRUE(ev["loaded"].is_null());
  EXPECT_EQ(ev["rejected"]["stage"], "clean");
  EXPECT_EQ(ev["rejected"]["topic"], "ecowheels.rejected");
  ASSERT_EQ(ev["rejected"]["reasons"].size(), 1u);
  const auto& r = ev["rejected"]["reasons"][0];
  EXPECT_EQ(r["rule"], "range");
  EXPECT_EQ(r["field"], "speed_kmh");
  EXPECT_EQ(r["value"], "99");
  EXPECT_FALSE(r["expected"].get<std::string>().empty());
  EXPECT_EQ(ev["ingested"]["payload"]["speed_kmh"], 99);
}

TEST_F(TopicsApiTest, StatusComesFromTheSagaAndElseFromWhatTheTopicsHold) {
  auto refused = event(reading("ev-refused", "bike-0003", 10), "s3", 0);
  event(reading("ev-waiting", "bike-0003", 11), "s3", 1);
  // A raw event clean has not reached.
  put(stages_.event(reading("ev-raw", "bike-0003", 12), "s3", 2).raw);
  // The loader refused seq 0 and dead-lettered it.
  topics_.create(pipeline_.dlq_topic(), 3);
  put(stages_.dead_letter(refused, "CHECK constraint failed", kT0 + 10));
  store_sagas(store_, {saga_record("s3", "ecowheels", 3, kT0, {.cleaned = {0, 1}, .rejected_at_load = {0}})});

  std::map<std::string, json> by_id;
  const auto body = journey({{"device_id", "bike-0003"}});
  for (const auto& ev : body["events"]) by_id[ev["event_id"]] = ev;
  ASSERT_EQ(by_id.size(), 3u);
  EXPECT_EQ(by_id["ev-refused"]["status"], "rejected_at_load");
  EXPECT_EQ(by_id["ev-refused"]["where"], "rejected by load (rule sink)");
  EXPECT_EQ(by_id["ev-refused"]["rejected"]["stage"], "load");
  EXPECT_EQ(by_id["ev-refused"]["rejected"]["reasons"][0]["expected"], "CHECK constraint failed");
  EXPECT_EQ(by_id["ev-waiting"]["status"], "in_flight");
  EXPECT_EQ(by_id["ev-waiting"]["where"], "waiting for load");
  EXPECT_EQ(by_id["ev-raw"]["status"], "in_flight");
  EXPECT_EQ(by_id["ev-raw"]["where"], "waiting for clean");
  EXPECT_TRUE(by_id["ev-raw"]["cleaned"].is_null());

  // Without the saga (retention removed it, or not folded yet) the topics say it.
  event(reading("ev-nosaga", "bike-0004", 99), "s4", 0);
  auto ev = journey({{"event_id", "ev-nosaga"}})["events"][0];
  EXPECT_EQ(ev["status"], "rejected");
  EXPECT_EQ(ev["saga_known"], false);
}

TEST_F(TopicsApiTest, ADeviceSearchGivesItsNewestEventsUpToLimitAndNoOtherDevices) {
  for (uint32_t i = 0; i < 8; ++i) {
    event(reading(fmt::format("d5-{}", i), "bike-0005", 10), "s5", i, kT0 + int64_t{i} * 1000);
    event(reading(fmt::format("d6-{}", i), "bike-0006", 10), "s6", i, kT0 + int64_t{i} * 1000);
  }
  const auto body = journey({{"device_id", "bike-0005"}, {"limit", "3"}});
  ASSERT_EQ(body["events"].size(), 3u) << body.dump(2);
  EXPECT_EQ(body["events"][0]["event_id"], "d5-7");
  EXPECT_EQ(body["events"][1]["event_id"], "d5-6");
  EXPECT_EQ(body["events"][2]["event_id"], "d5-5");
  for (const auto& ev : body["events"]) EXPECT_EQ(ev["device_id"], "bike-0005");
}

TEST_F(TopicsApiTest, AnEventNotFoundIsAnEmptyListAndSinceBoundsTheSearch) {
  event(reading("ev-old", "bike-0007", 10), "s7", 0, kT0 - 2 * kHourMs);
  auto body = journey({{"event_id", "no-such-event"}});
  EXPECT_EQ(body["events"], json::array());
  EXPECT_EQ(body["complete"], true);
  // The default since is an hour back: the older event is not read.
  EXPECT_EQ(journey({{"event_id", "ev-old"}})["events"].size(), 0u);
  EXPECT_EQ(journey({{"event_id", "ev-old"}, {"since", "3h"}})["events"].size(), 1u);
  EXPECT_EQ(journey({{"event_id", "ev-old"}, {"since", std::to_string(kT0 - 3 * kHourMs)}})["events"].size(), 1u);
  EXPECT_EQ(journey({{"event_id", "ev-old"}, {"since", "2026-11-23T07:00:00Z"}})["events"].size(), 1u);
}

TEST_F(TopicsApiTest, UndecodableRecordsAreCountedAndTheRestIsStillRead) {
  topics_.add("ecowheels.raw", 0, "bike-0008", "\xff\xff\xff garbage", kT0);
  topics_.add("ecowheels.raw", 0, "bike-0008", "", kT0);
  topics_.add("ecowheels.clean", 1, "bike-0008", std::string("\x0a\x05hello\x12", 8), kT0);
  topics_.add("ecowheels.rejected", 2, "bike-0008", "\x08\x96\x01not a rejection", kT0);
  event(reading("ev-after-junk", "bike-0008", 10), "s8", 0);
  // A valid envelope whose payload is not a RideTelemetry.
  auto bad = stages_.event(reading("ev-badpayload", "bike-0008", 10), "s8", 1);
  v1::Envelope env = bad.envelope;
  env.set_payload("\xff\xff\xff\xff");
  put({"ecowheels.raw", "bike-0008", env.SerializeAsString(), {}});

  const auto body = journey({{"device_id", "bike-0008"}});
  EXPECT_EQ(body["undecodable"], 4) << body.dump(2);
  std::map<std::string, json> by_id;
  for (const auto& ev : body["events"]) by_id[ev["event_id"]] = ev;
  ASSERT_TRUE(by_id.contains("ev-after-junk"));
  ASSERT_TRUE(by_id.contains("ev-badpayload"));
  EXPECT_TRUE(by_id["ev-badpayload"]["ingested"]["payload"].is_null());
  EXPECT_FALSE(by_id["ev-badpayload"]["ingested"]["payload_error"].get<std::string>().empty());

  const auto rejects = get("/v1/rejects", {{"pipeline", "ecowheels"}});
  EXPECT_EQ(rejects.status, 200);
  EXPECT_EQ(rejects.body["undecodable"], 1);
}

TEST_F(TopicsApiTest, AHostileDeviceIdComesBackAsPlainJsonText) {
  event(reading("ev-xss", kXss, 10), "s9", 0);
  const auto a = get("/v1/journey", {{"pipeline", "ecowheels"}, {"device_id", kXss}});
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(a.raw.content_type, "application/json");
  ASSERT_EQ(a.body["events"].size(), 1u) << a.raw.body;
  EXPECT_EQ(a.body["events"][0]["device_id"], kXss);
  // Rejected by clean's device_id regex, and the reason quotes it as text.
  EXPECT_EQ(a.body["events"][0]["status"], "rejected");
  EXPECT_EQ(a.body["events"][0]["rejected"]["reasons"][0]["field"], "device_id");
  EXPECT_EQ(a.body["events"][0]["rejected"]["reasons"][0]["value"], kXss);
}

TEST_F(TopicsApiTest, LongValuesAreCutWithAMarkerAndBadUtf8IsReplaced) {
  EXPECT_EQ(capped("short", 1024), "short");
  const std::string cut = capped(std::string(5000, 'a'), 1024);
  EXPECT_EQ(cut.substr(0, 1024), std::string(1024, 'a'));
  EXPECT_EQ(cut.substr(1024), "…[cut: 1024 of 5000 bytes]");
  // Never inside a character: "aéé" is 5 bytes, and a cut at 4 would split the second "é".
  EXPECT_EQ(capped("aéé", 4), "aé…[cut: 3 of 5 bytes]");
  EXPECT_EQ(capped("a\xff", 10), "a\xEF\xBF\xBD");

  // A rejection quoting a 5025-byte value whose byte 1024 is inside an "é".
  auto e = stages_.event(reading("ev-long", "bike-0010", 99), "s10", 0);
  v1::RejectedRecord rec;
  ASSERT_TRUE(rec.ParseFromString(e.out.value));
  rec.mutable_reasons(0)->set_value(std::string(1023, 'v') + "é" + std::string(4000, 'v'));
  put(e.raw);
  put({"ecowheels.rejected", e.out.key, rec.SerializeAsString(), {}});
  // Protobuf refuses a string field that is not UTF-8: such a record is undecodable.
  v1::RejectedRecord bad = rec;
  bad.mutable_envelope()->set_event_id("ev-bad-utf8");
  bad.mutable_reasons(0)->set_expected("\xc3\x28");
  put({"ecowheels.rejected", e.out.key, bad.SerializeAsString(), {}});
  const auto body = journey({{"device_id", "bike-0010"}});
  ASSERT_EQ(body["events"].size(), 1u) << body.dump(2);
  EXPECT_EQ(body["undecodable"], 1);
  const auto value = body["events"][0]["rejected"]["reasons"][0]["value"].get<std::string>();
  EXPECT_EQ(value, std::string(1023, 'v') + "…[cut: 1023 of 5025 bytes]");
}

// --- rejects ---------------------------------------------------------------

TEST_F(TopicsApiTest, RejectsAreGroupedByStageRuleAndFieldWithCountsAndExamples) {
  for (uint32_t i = 0; i < 5; ++i) event(reading(fmt::format("fast-{}", i), "bike-0011", 70 + i), "r1", i);
  for (uint32_t i = 0; i < 2; ++i) event(reading(fmt::format("bad-{}", i), fmt::format("car-{}", i), 10), "r2", i);
  event(reading("xss", kXss, 10), "r3", 0);
  event(reading("fine", "bike-0012", 10), "r4", 0);

  auto a = get("/v1/rejects", {{"pipeline", "ecowheels"}});
  ASSERT_EQ(a.status, 200) << a.raw.body;
  EXPECT_EQ(a.body["complete"], true);
  EXPECT_EQ(a.body["records"], 8);
  ASSERT_EQ(a.body["groups"].size(), 2u) << a.body.dump(2);
  const auto& range = a.body["groups"][0];  // the largest first
  EXPECT_EQ(range["stage"], "clean");
  EXPECT_EQ(range["rule"], "range");
  EXPECT_EQ(range["field"], "speed_kmh");
  EXPECT_EQ(range["count"], 5);
  ASSERT_EQ(range["examples"].size(), 3u);
  const auto& ex = range["examples"][0];
  for (const char* k : {"event_id", "device_id", "saga_id", "value", "expected", "time", "topic"}) {
    EXPECT_TRUE(ex[k].is_string()) << k;
  }
  EXPECT_EQ(ex["topic"], "ecowheels.rejected");
  EXPECT_EQ(ex["time"], "2026-11-23T10:00:00.000Z");
  EXPECT_EQ(a.body["groups"][1]["rule"], "regex");
  EXPECT_EQ(a.body["groups"][1]["count"], 3);

  // Filters.
  auto by_rule = get("/v1/rejects", {{"pipeline", "ecowheels"}, {"rule", "regex"}, {"examples", "20"}});
  ASSERT_EQ(by_rule.body["groups"].size(), 1u);
  EXPECT_EQ(by_rule.body["groups"][0]["examples"].size(), 3u);
  EXPECT_EQ(get("/v1/rejects", {{"pipeline", "ecowheels"}, {"field", "nope"}}).body["groups"], json::array());
  auto by_device = get("/v1/rejects", {{"pipeline", "ecowheels"}, {"device_id", kXss}, {"examples", "0"}});
  ASSERT_EQ(by_device.body["groups"].size(), 1u);
  EXPECT_EQ(by_device.body["groups"][0]["count"], 1);
  EXPECT_EQ(by_device.body["groups"][0]["examples"], json::array());
  // until before the records: nothing.
  auto early = get("/v1/rejects", {{"pipeline", "ecowheels"}, {"until", std::to_string(kT0 - 1)}});
  EXPECT_EQ(early.body["groups"], json::array());
  EXPECT_EQ(early.body["scanned"], 0);
}

TEST_F(TopicsApiTest, JunkRulesCannotGrowTheGroupsWithoutBound) {
  options_.scan_max = 5000;
  auto e = stages_.event(reading("junk", "bike-0013", 99), "j", 0);
  v1::RejectedRecord rec;
  ASSERT_TRUE(rec.ParseFromString(e.out.value));
  for (std::size_t i = 0; i < kGroupsMax + 10; ++i) {
    rec.mutable_reasons(0)->set_rule(fmt::format("rule-{}", i));
    topics_.add("ecowheels.rejected", 0, "k", rec.SerializeAsString(), kT0);
  }
  auto a = get("/v1/rejects", {{"pipeline", "ecowheels"}, {"examples", "0"}});
  EXPECT_EQ(a.body["groups"].size(), kGroupsMax);
  EXPECT_EQ(a.body["groups_not_listed"], 10);
}

// --- bounds ----------------------------------------------------------------

TEST_F(TopicsApiTest, TheScanBoundCutsTheScanAndSaysSo) {
  for (uint32_t i = 0; i < 40; ++i) event(reading(fmt::format("b-{}", i), "bike-0014", 99), "b", i);
  options_.scan_max = 10;
  auto j = journey({{"event_id", "b-39"}});
  EXPECT_EQ(j["scanned"], 10);
  EXPECT_EQ(j["complete"], false);
  // Without since, rejects reads each partition's newest share.
  auto r = get("/v1/rejects", {{"pipeline", "ecowheels"}});
  EXPECT_EQ(r.body["complete"], false);
  EXPECT_LE(r.body["scanned"].get<int>(), 10);
  options_.scan_max = 200'000;
  r = get("/v1/rejects", {{"pipeline", "ecowheels"}});
  EXPECT_EQ(r.body["complete"], true);
  EXPECT_EQ(r.body["groups"][0]["count"], 40);
}

TEST_F(TopicsApiTest, TheTimeBudgetCutsTheScan) {
  for (uint32_t i = 0; i < 20; ++i) event(reading(fmt::format("t-{}", i), "bike-0015", 10), "t", i);
  options_.budget = std::chrono::milliseconds(0);
  auto j = journey({{"event_id", "t-1"}});
  EXPECT_EQ(j["complete"], false);
}

// --- saga events -----------------------------------------------------------

TEST_F(TopicsApiTest, ASagasEventsComeInSeqOrderWithPositionAndStatus) {
  for (uint32_t i = 0; i < 5; ++i) event(reading(fmt::format("e-{}", i), "bike-0016", i == 3 ? 99 : 10), "sg", i);
  // Another saga's events, and junk, in the same topic.
  for (uint32_t i = 0; i < 5; ++i) event(reading(fmt::format("o-{}", i), "bike-0017", 10), "other", i);
  topics_.add("ecowheels.raw", 0, "x", "junk", kT0);
  store_sagas(store_,
              {saga_record("sg", "ecowheels", 6, kT0, {.cleaned = {0, 1, 2, 4}, .rejected = {3}, .loaded = {0, 1}})});
  auto a = get("/v1/sagas/sg/events");
  ASSERT_EQ(a.status, 200) << a.raw.body;
  EXPECT_EQ(a.body["saga_id"], "sg");
  EXPECT_EQ(a.body["pipeline"], "ecowheels");
  EXPECT_EQ(a.body["undecodable"], 1);
  EXPECT_EQ(a.body["complete"], true);
  const auto& evs = a.body["events"];
  ASSERT_EQ(evs.size(), 5u) << a.body.dump(2);  // seq 5 was never produced
  const std::vector<std::string> want = {"loaded", "loaded", "cleaned", "rejected", "cleaned"};
  for (uint32_t i = 0; i < 5; ++i) {
    EXPECT_EQ(evs[i]["seq"], i);
    EXPECT_EQ(evs[i]["event_id"], fmt::format("e-{}", i));
    EXPECT_EQ(evs[i]["device_id"], "bike-0016");
    EXPECT_EQ(evs[i]["topic"], "ecowheels.raw");
    EXPECT_EQ(evs[i]["status"], want[i]);
    EXPECT_TRUE(evs[i]["partition"].is_number() && evs[i]["offset"].is_number());
  }
  auto limited = get("/v1/sagas/sg/events", {{"limit", "2"}});
  ASSERT_EQ(limited.body["events"].size(), 2u);
  EXPECT_EQ(limited.body["events"][1]["seq"], 1);
}

TEST_F(TopicsApiTest, ASagasEventsScanStopsOnceEverySeqIsFound) {
  for (uint32_t i = 0; i < 3; ++i) event(reading(fmt::format("f-{}", i), "bike-0018", 10), "done", i);
  for (uint32_t i = 0; i < 300; ++i) event(reading(fmt::format("l-{}", i), "bike-0019", 10), "later", i, kT0 + 10);
  store_sagas(store_, {saga_record("done", "ecowheels", 3, kT0, {})});
  auto a = get("/v1/sagas/done/events");
  EXPECT_EQ(a.body["events"].size(), 3u);
  EXPECT_EQ(a.body["complete"], true);
  EXPECT_LT(a.body["scanned"].get<int>(), 303);
  // A saga created before the records' times minus the slack is read from
  // there: its events an hour earlier are not.
  store_sagas(store_, {saga_record("late", "ecowheels", 1, kT0 + 2 * kHourMs, {})});
  EXPECT_EQ(get("/v1/sagas/late/events").body["scanned"], 0);
}

}  // namespace
}  // namespace starling::saga
