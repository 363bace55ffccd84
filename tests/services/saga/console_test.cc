// The console's server side: the access check in front of every /v1 path
// (keys, scopes, pipelines), the static files and their headers, the
// overview's arithmetic (Activity) and the replay list and controls. The
// browser side is tests/console.

#include "services/saga/console.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "services/common/files.h"
#include "services/common/http.h"
#include "services/common/pipeline.h"
#include "services/replay/replay.h"
#include "tests/support/memory_topics.h"
#include "tests/support/temp_dir.h"

namespace starling::saga {
namespace {

using nlohmann::json;

constexpr int64_t kT0 = 1'795'428'000'000;  // 2026-11-23T10:00:00Z

std::string hash_hex(const std::string& key) {
  const auto h = sha256(key);
  return hex(h.data(), h.size());
}

v1::ProgressFact fact(const std::string& pipeline, v1::Step step, uint32_t first, uint32_t last, int64_t time_ms) {
  v1::ProgressFact f;
  f.set_saga_id("s");
  f.set_pipeline(pipeline);
  f.set_step(step);
  f.set_time_ms(time_ms);
  if (step == v1::STEP_INGESTED) {
    f.set_total(last - first + 1);
  } else {
    auto* r = f.add_seqs();
    r->set_first(first);
    r->set_last(last);
  }
  return f;
}

std::string header(const HttpResponse& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return {};
}

HttpRequest get(const std::string& path, const std::string& key = {}, std::map<std::string, std::string> query = {}) {
  HttpRequest r;
  r.method = "GET";
  r.path = path;
  r.query = std::move(query);
  if (!key.empty()) r.headers["authorization"] = "Bearer " + key;
  return r;
}

HttpRequest post(const std::string& path, const std::string& key) {
  auto r = get(path, key);
  r.method = "POST";
  return r;
}

std::string code(const HttpResponse& r) { return json::parse(r.body)["error"]["code"]; }

TEST(Activity, RatesAndSeriesCountEventsPerSecondOfTheLastMinute) {
  Activity a;
  // 40 events ingested in each of the seconds T0-5 .. T0-1; 10 loaded at T0-1.
  for (int s = 5; s >= 1; --s) a.record(fact("p", v1::STEP_INGESTED, 0, 39, kT0), kT0, kT0 - int64_t{s} * 1000);
  a.record(fact("p", v1::STEP_LOADED, 0, 9, kT0), kT0 - 100, kT0 - 1000);
  const auto o = a.overview(kT0, {});
  ASSERT_EQ(o["pipelines"].size(), 1u);
  const auto& p = o["pipelines"][0];
  EXPECT_EQ(p["name"], "p");
  const auto& series = p["stages"]["ingested"]["series"];
  ASSERT_EQ(series.size(), 60u);
  EXPECT_EQ(series[59], 40);  // the last whole second, T0-1
  EXPECT_EQ(series[55], 40);
  EXPECT_EQ(series[54], 0);
  EXPECT_DOUBLE_EQ(p["stages"]["ingested"]["rate"].get<double>(), 200.0 / Activity::kRateSeconds);
  EXPECT_EQ(p["stages"]["loaded"]["series"][59], 10);
  EXPECT_EQ(p["stages"]["cleaned"]["series"][59], 0);
  // A minute later the window has moved past all of it.
  const auto later = a.overview(kT0 + 61'000, {});
  EXPECT_EQ(later["pipelines"][0]["stages"]["ingested"]["rate"], 0.0);
  EXPECT_TRUE(later["pipelines"][0]["latency_ms"].is_null());
}

TEST(Activity, LatencyPercentilesComeFromLoadedFactsWeightedByEvents) {
  Activity a;
  // 99 events loaded 10 ms after their saga was created, one 5 s after.
  a.record(fact("p", v1::STEP_LOADED, 0, 98, kT0 + 10), kT0, kT0);
  a.record(fact("p", v1::STEP_LOADED, 99, 99, kT0 + 5000), kT0, kT0);
  const auto lat = a.overview(kT0 + 1000, {})["pipelines"][0]["latency_ms"];
  EXPECT_EQ(lat["samples"], 100);
  // Reported as the bucket's upper bound: at most 19% above the value.
  EXPECT_GE(lat["p50"].get<double>(), 10.0);
  EXPECT_LE(lat["p50"].get<double>(), 10.0 * 1.19);
  EXPECT_LE(lat["p99"].get<double>(), 10.0 * 1.19);  // the 99th of 100 is still 10 ms
  a.record(fact("p", v1::STEP_LOADED, 100, 101, kT0 + 5000), kT0, kT0);
  EXPECT_GE(a.overview(kT0 + 1000, {})["pipelines"][0]["latency_ms"]["p99"].get<double>(), 5000.0);
  EXPECT_EQ(Activity::latency_bucket(-5), 0);
  EXPECT_EQ(Activity::latency_bucket(1e12), Activity::kLatencyBuckets - 1);
}

TEST(Activity, RejectsAreGroupedByRuleAndFieldAndTheirKeysAreBounded) {
  Activity a;
  auto f = fact("p", v1::STEP_REJECTED, 0, 2, kT0);
  for (uint32_t seq = 0; seq < 3; ++seq) {
    auto* r = f.add_rejections();
    r->set_seq(seq);
    auto* reason = r->add_reasons();
    reason->set_rule("range");
    reason->set_field(seq < 2 ? "speed_kmh" : "battery_pct");
  }
  a.record(f, kT0, kT0);
  auto rpm = a.overview(kT0 + 1000, {})["pipelines"][0]["rejects_per_min"];
  ASSERT_EQ(rpm.size(), 2u);
  EXPECT_EQ(rpm[0], json({{"rule", "range"}, {"field", "speed_kmh"}, {"count", 2}}));
  EXPECT_EQ(rpm[1]["field"], "battery_pct");
  // A flood of distinct fields from a hostile pipeline stays bounded.
  v1::ProgressFact flood = fact("p", v1::STEP_REJECTED, 0, 0, kT0);
  auto* r = flood.add_rejections();
  for (std::size_t i = 0; i < 5 * Activity::kRuleKeys; ++i) {
    auto* reason = r->add_reasons();
    reason->set_rule("required");
    reason->set_field(fmt::format("f{}", i));
  }
  a.record(flood, kT0, kT0 + 2000);
  rpm = a.overview(kT0 + 3000, {})["pipelines"][0]["rejects_per_min"];
  EXPECT_LE(rpm.size(), 2 + Activity::kRuleKeys + 1);
  EXPECT_EQ(rpm[0]["rule"], "other");
}

TEST(Activity, PipelinesAreBoundedAndFilteredByWhatAKeyMaySee) {
  Activity a;
  for (std::size_t i = 0; i < Activity::kPipelines + 50; ++i) {
    a.record(fact(fmt::format("p{}", i), v1::STEP_INGESTED, 0, 0, kT0), kT0, kT0);
  }
  EXPECT_EQ(a.overview(kT0, {})["pipelines"].size(), Activity::kPipelines);
  const auto only = a.overview(kT0, [](const std::string& p) { return p == "p7"; });
  ASSERT_EQ(only["pipelines"].size(), 1u);
  EXPECT_EQ(only["pipelines"][0]["name"], "p7");
}

TEST(Activity, LagAndStatesAreShownAsSet) {
  Activity a;
  EXPECT_EQ(a.last_viewed_ms(), 0);  // nobody looked: main() reads no lag from Kafka
  a.set_states({{{"p", v1::SAGA_STATE_STALLED}, 3}, {{"p", v1::SAGA_STATE_COMPLETED}, 9}});
  a.set_lag("p", "clean", 120);
  a.set_lag("p", "load", std::nullopt);
  a.set_lag("", "saga", 4);
  const auto o = a.overview(kT0, {});
  EXPECT_EQ(a.last_viewed_ms(), kT0);
  EXPECT_EQ(o["saga_lag"], 4);
  const auto& p = o["pipelines"][0];
  EXPECT_EQ(p["sagas_by_state"]["STALLED"], 3);
  EXPECT_EQ(p["sagas_by_state"]["COMPLETED"], 9);
  EXPECT_EQ(p["lag"]["clean"], 120);
  EXPECT_TRUE(p["lag"]["load"].is_null());
}

TEST(IsLoopbackListen, OnlyLoopbackAddressesAreLoopback) {
  EXPECT_TRUE(is_loopback_listen("127.0.0.1:8081"));
  EXPECT_TRUE(is_loopback_listen("127.1.2.3:0"));
  EXPECT_TRUE(is_loopback_listen("localhost:80"));
  EXPECT_TRUE(is_loopback_listen("[::1]:8081"));
  EXPECT_FALSE(is_loopback_listen("0.0.0.0:8081"));
  EXPECT_FALSE(is_loopback_listen("[::]:8081"));
  EXPECT_FALSE(is_loopback_listen("127.evil.example:80"));
  EXPECT_FALSE(is_loopback_listen("10.0.0.5:8081"));
}

class ConsoleHttpTest : public ::testing::Test {
 protected:
  ConsoleHttpTest() : store_(dir_ / "db") {
    std::filesystem::create_directories(replays_);
    auto keys = KeyStore::parse(fmt::format(R"(keys:
  - name: ops-ro
    sha256: {}
    pipelines: ["*"]
    scopes: [read]
  - name: ops
    sha256: {}
    pipelines: ["*"]
    scopes: [read, admin]
  - name: device
    sha256: {}
    pipelines: ["*"]
  - name: lisbon
    sha256: {}
    pipelines: [p]
    scopes: [admin]
)",
                                            hash_hex("ro"), hash_hex("admin"), hash_hex("device"), hash_hex("lisbon")),
                                "keys.yaml");
    EXPECT_TRUE(keys) << keys.error().message;
    SagaHttpOptions o;
    o.keys = std::move(*keys);
    o.replay_dir = replays_.string();
    o.kafka = "127.0.0.1:1";
    o.run_replay = [this](const replay::ReplayOptions& r) {
      std::unique_lock lock(mu_);
      started_.push_back(r);
      cv_.notify_all();
      cv_.wait(lock, [this] { return released_; });
    };
    http_ = std::make_unique<SagaHttp>(
        store_, activity_, [] { return kT0; }, std::move(o));
    v1::SagaRecord other;
    other.set_saga_id("saga-q");
    other.set_pipeline("q");
    other.set_state(v1::SAGA_STATE_IN_FLIGHT);
    v1::SagaRecord mine = other;
    mine.set_saga_id("saga-p");
    mine.set_pipeline("p");
    EXPECT_TRUE(store_.commit({other, mine}, {}, {}));
  }

  void replay(const std::string& id, const std::string& pipeline, const std::string& state, int pid) {
    replay::ReplayStatus s;
    s.id = id;
    s.pipeline = pipeline;
    s.stage = "clean";
    s.state = state;
    s.pid = pid;
    s.started_ms = kT0 - 10'000;
    s.updated_ms = kT0;
    s.partitions.push_back({.partition = 0, .from = 0, .to = 1000, .next = 400});
    ASSERT_TRUE(write_file_atomically((replays_ / (id + ".json")).string(), replay::to_json(s).dump()));
  }

  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  ~ConsoleHttpTest() override {
    release();
    http_.reset();
  }
  HttpRequest start(const std::string& key, const json& body) {
    auto r = post("/v1/replays", key);
    r.body = body.dump();
    return r;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
  std::vector<replay::ReplayOptions> started_;
  testing::TempDir dir_;
  std::filesystem::path replays_ = dir_ / "replays";
  RocksSagaStore store_;
  Activity activity_;
  std::unique_ptr<SagaHttp> http_;
};

TEST_F(ConsoleHttpTest, ConsoleFilesNeedNoKeyAndCarryAStrictContentSecurityPolicy) {
  const auto index = http_->handle(get("/console/"));
  ASSERT_EQ(index.status, 200);
  EXPECT_EQ(index.content_type, "text/html; charset=utf-8");
  EXPECT_NE(index.body.find("<html"), std::string::npos);
  EXPECT_EQ(header(index, "Content-Security-Policy"), kConsoleCsp);
  EXPECT_NE(std::string(kConsoleCsp).find("script-src 'self'"), std::string::npos);
  EXPECT_EQ(std::string(kConsoleCsp).find("unsafe-inline"), std::string::npos);
  EXPECT_EQ(header(index, "X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(header(index, "Cache-Control"), "no-store");
  // The charting library is compiled in: nothing is fetched from elsewhere.
  const auto chart = http_->handle(get("/console/vendor/uPlot.iife.min.js"));
  EXPECT_EQ(chart.status, 200);
  EXPECT_EQ(chart.content_type, "text/javascript; charset=utf-8");
  EXPECT_GT(chart.body.size(), 10'000u);
  EXPECT_EQ(http_->handle(get("/console")).body, index.body);
  // Anything else outside /console/ is the API's: who asks comes first.
  EXPECT_EQ(http_->handle(get("/consolex")).status, 401);
  auto head = get("/console/");
  head.method = "POST";
  EXPECT_EQ(http_->handle(head).status, 405);
  for (const auto* path : {"/console/../../etc/passwd", "/console/nope.js", "/console/vendor/", "/console/%2e%2e"}) {
    const auto r = http_->handle(get(path));
    EXPECT_EQ(r.status, 404) << path;
    EXPECT_EQ(header(r, "Content-Security-Policy"), kConsoleCsp) << path;
  }
}

TEST_F(ConsoleHttpTest, EveryApiPathNeedsAKnownKeyWithTheReadScope) {
  for (const auto* path : {"/v1/overview", "/v1/sagas", "/v1/sagas/saga-p", "/v1/replays", "/v1/whoami"}) {
    EXPECT_EQ(code(http_->handle(get(path))), "missing_api_key") << path;
    EXPECT_EQ(code(http_->handle(get(path, "guess"))), "invalid_api_key") << path;
    const auto device = http_->handle(get(path, "device"));
    EXPECT_EQ(device.status, 403) << path;
    EXPECT_EQ(code(device), "read_scope_required") << path;
    EXPECT_EQ(http_->handle(get(path, "ro")).status, 200) << path;
  }
  const auto who = json::parse(http_->handle(get("/v1/whoami", "ro")).body);
  EXPECT_EQ(who["auth"], true);
  EXPECT_EQ(who["name"], "ops-ro");
  EXPECT_EQ(who["scopes"], json({"read"}));
  // The document is public, as every service's is.
  EXPECT_EQ(http_->handle(get("/openapi.json")).status, 200);
}

TEST_F(ConsoleHttpTest, OnlyAnAdminKeyMayPressAReplayControl) {
  replay("replay-1", "p", "running", ::getpid());
  const auto ro = http_->handle(post("/v1/replays/replay-1/pause", "ro"));
  EXPECT_EQ(ro.status, 403);
  EXPECT_EQ(code(ro), "admin_scope_required");
  EXPECT_FALSE(std::filesystem::exists(replays_ / "replay-1.control"));
  const auto ok = http_->handle(post("/v1/replays/replay-1/pause", "admin"));
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_TRUE(std::filesystem::exists(replays_ / "replay-1.control"));
  EXPECT_EQ(http_->handle(get("/v1/replays/replay-1/pause", "admin")).status, 405);
  EXPECT_EQ(http_->handle(post("/v1/replays/replay-1/explode", "admin")).status, 404);
  EXPECT_EQ(code(http_->handle(post("/v1/replays/nope/pause", "admin"))), "unknown_replay");
  EXPECT_EQ(code(http_->handle(post("/v1/replays/.hidden/pause", "admin"))), "invalid_parameter");
  // A finished replay cannot be paused: 409 with the reason.
  replay("replay-2", "p", "published", ::getpid());
  const auto done = http_->handle(post("/v1/replays/replay-2/pause", "admin"));
  EXPECT_EQ(done.status, 409);
  EXPECT_NE(json::parse(done.body)["error"]["message"].get<std::string>().find("published already"), std::string::npos);
  // Every other POST is refused too: the saga API is read-only.
  EXPECT_EQ(http_->handle(post("/v1/sagas", "admin")).status, 405);
}

TEST_F(ConsoleHttpTest, AnAdminStartsAReplayOfOneSagaAndBadRequestsNameTheField) {
  EXPECT_EQ(code(http_->handle(start("ro", {{"pipeline", "p"}, {"saga", "saga-p"}}))), "admin_scope_required");
  const auto ok = http_->handle(start("admin", {{"pipeline", "p"}, {"saga", "saga-p"}, {"rate", 50}}));
  ASSERT_EQ(ok.status, 202) << ok.body;
  const auto id = json::parse(ok.body)["id"].get<std::string>();
  EXPECT_TRUE(id.starts_with("replay-")) << id;
  {
    std::unique_lock lock(mu_);
    ASSERT_TRUE(cv_.wait_for(lock, std::chrono::seconds(10), [this] { return !started_.empty(); }));
    const auto& r = started_.front();
    EXPECT_EQ(r.id, id);
    EXPECT_EQ(r.pipeline, "p");
    EXPECT_EQ(r.stage, "clean");
    EXPECT_EQ(r.saga, "saga-p");
    EXPECT_EQ(r.rate, 50);
    EXPECT_EQ(r.state_dir, replays_.string());
    EXPECT_EQ(r.kafka, "127.0.0.1:1");
  }
  const auto bad = [&](const json& body, const std::string& field) {
    const auto r = http_->handle(start("admin", body));
    EXPECT_EQ(r.status, 400) << body.dump() << " " << r.body;
    EXPECT_EQ(json::parse(r.body)["error"]["field"], field) << body.dump() << " " << r.body;
  };
  bad({{"pipeline", "p"}, {"flavour", "range"}}, "flavour");
  // A re-drive needs the topics, which this service was not given.
  EXPECT_EQ(code(http_->handle(start("admin", {{"pipeline", "p"}, {"rule", "range"}}))), "replays_not_configured");
  bad({{"pipeline", "p"}, {"saga", "saga-p"}, {"stage", "warehouse"}}, "stage");
  bad({{"pipeline", "p"}, {"from", "yesterday-ish"}}, "from");
  bad({{"pipeline", "p"}}, "from");
  bad({{"pipeline", "p"}, {"saga", "saga-p"}, {"rate", -1}}, "rate");
  bad({{"pipeline", 7}}, "pipeline");
  bad({{"pipeline", std::string(201, 'p')}}, "pipeline");
  bad({{"saga", "saga-p"}}, "pipeline");
  EXPECT_EQ(http_->handle(start("admin", json::array())).status, 400);
  auto garbage = post("/v1/replays", "admin");
  garbage.body = "{\"pipeline\":";
  EXPECT_EQ(code(http_->handle(garbage)), "invalid_body");
  garbage.body = std::string(5000, ' ');
  EXPECT_EQ(http_->handle(garbage).status, 413);
  EXPECT_EQ(code(http_->handle(start("admin", {{"pipeline", "p"}, {"saga", "saga-q"}}))), "unknown_saga");
  EXPECT_EQ(code(http_->handle(start("lisbon", {{"pipeline", "q"}, {"from", "beginning"}}))), "pipeline_not_allowed");
  // At most kConsoleReplaysMax at a time: the runner holds them all.
  for (std::size_t i = 1; i < kConsoleReplaysMax; ++i) {
    EXPECT_EQ(http_->handle(start("admin", {{"pipeline", "p"}, {"from", "beginning"}})).status, 202);
  }
  EXPECT_EQ(code(http_->handle(start("admin", {{"pipeline", "p"}, {"from", "beginning"}}))), "too_many_replays");
}

TEST_F(ConsoleHttpTest, ReplaysAreListedWithProgressRateAndEta) {
  replay("replay-1", "p", "running", ::getpid());
  std::ofstream(replays_ / "garbage.json") << "{not json";
  const auto body = json::parse(http_->handle(get("/v1/replays", "ro")).body);
  ASSERT_EQ(body["replays"].size(), 1u) << body.dump();
  const auto& r = body["replays"][0];
  EXPECT_EQ(r["id"], "replay-1");
  EXPECT_EQ(r["offsets_read"], 400);
  EXPECT_EQ(r["offsets_total"], 1000);
  EXPECT_DOUBLE_EQ(r["rate"].get<double>(), 40.0);   // 400 offsets in 10 s
  EXPECT_DOUBLE_EQ(r["eta_s"].get<double>(), 15.0);  // 600 more at 40/s
}

TEST_F(ConsoleHttpTest, AKeyLimitedToSomePipelinesSeesNothingOfTheOthers) {
  replay("replay-q", "q", "running", ::getpid());
  EXPECT_EQ(code(http_->handle(get("/v1/sagas", "lisbon", {{"pipeline", "q"}}))), "pipeline_not_allowed");
  EXPECT_EQ(http_->handle(get("/v1/sagas", "lisbon", {{"pipeline", "p"}})).status, 200);
  EXPECT_EQ(code(http_->handle(get("/v1/sagas", "lisbon"))), "invalid_parameter");
  EXPECT_EQ(http_->handle(get("/v1/sagas/saga-p", "lisbon")).status, 200);
  EXPECT_EQ(code(http_->handle(get("/v1/sagas/saga-q", "lisbon"))), "unknown_saga");
  EXPECT_EQ(json::parse(http_->handle(get("/v1/replays", "lisbon")).body)["replays"].size(), 0u);
  EXPECT_EQ(code(http_->handle(post("/v1/replays/replay-q/cancel", "lisbon"))), "unknown_replay");
  activity_.record(fact("q", v1::STEP_INGESTED, 0, 0, kT0), kT0, kT0);
  activity_.record(fact("p", v1::STEP_INGESTED, 0, 0, kT0), kT0, kT0);
  const auto o = json::parse(http_->handle(get("/v1/overview", "lisbon")).body);
  ASSERT_EQ(o["pipelines"].size(), 1u);
  EXPECT_EQ(o["pipelines"][0]["name"], "p");
}

TEST(ConsoleHttp, ARedriveReplaysExactlyTheRecordsCleanRejectedThatMatch) {
  testing::TempDir dir;
  RocksSagaStore store(dir / "db");
  Activity activity;
  testing::MemoryTopics topics;
  const auto pipeline = load_pipeline(testing::source_path("pipelines/ecowheels.yaml"));
  const auto reject = [&](const std::string& event_id, const std::string& stage, const std::string& rule,
                          int64_t ingest_ms) {
    v1::RejectedRecord r;
    r.set_stage(stage);
    r.mutable_envelope()->set_event_id(event_id);
    r.mutable_envelope()->set_device_id("bike-1");
    r.mutable_envelope()->set_ingest_time_ms(ingest_ms);
    auto* reason = r.add_reasons();
    reason->set_rule(rule);
    reason->set_field("speed_kmh");
    topics.add(pipeline.rejected_topic(), 0, "bike-1", r.SerializeAsString(), ingest_ms + 5);
  };
  reject("e1", "clean", "range", kT0 - 50'000);
  reject("e2", "clean", "range", kT0 - 10'000);
  reject("e3", "clean", "required", kT0 - 30'000);
  reject("e4", "load", "range", kT0 - 20'000);  // the sink's refusal: not clean's to re-drive
  topics.add(pipeline.rejected_topic(), 0, "bike-1", "not a record", kT0);
  std::vector<replay::ReplayOptions> started;
  std::mutex mu;
  SagaHttpOptions o;
  o.replay_dir = (dir / "replays");
  o.kafka = "127.0.0.1:1";
  o.run_replay = [&](const replay::ReplayOptions& r) {
    std::lock_guard lock(mu);
    started.push_back(r);
  };
  TopicsApiOptions t;
  t.source = topics.factory();
  t.pipelines = {pipeline};
  o.topics = t;
  {
    SagaHttp http(
        store, activity, [] { return kT0; }, std::move(o));
    auto req = post("/v1/replays", "");
    req.body = json({{"pipeline", "ecowheels"}, {"rule", "range"}, {"field", "speed_kmh"}}).dump();
    const auto ok = http.handle(req);
    ASSERT_EQ(ok.status, 202) << ok.body;
    EXPECT_EQ(json::parse(ok.body)["records"], 2);
    req.body = json({{"pipeline", "ecowheels"}, {"rule", "regex"}}).dump();
    EXPECT_EQ(code(http.handle(req)), "nothing_to_redrive");
    req.body = json({{"pipeline", "ecowheels"}, {"rule", "range"}, {"stage", "load"}}).dump();
    EXPECT_EQ(json::parse(http.handle(req).body)["error"]["field"], "stage");
    req.body = json({{"pipeline", "ecowheels"}, {"rule", "range"}, {"saga", "s"}}).dump();
    EXPECT_EQ(json::parse(http.handle(req).body)["error"]["field"], "saga");
    req.body = json({{"pipeline", "nope"}, {"rule", "range"}}).dump();
    EXPECT_EQ(code(http.handle(req)), "unknown_pipeline");
  }  // joins the replays' threads
  ASSERT_EQ(started.size(), 1u);
  const auto& r = started.front();
  EXPECT_EQ(r.stage, "clean");
  EXPECT_EQ(r.event_ids, (std::set<std::string>{"e1", "e2"}));
  EXPECT_EQ(r.from, std::to_string(kT0 - 50'000 - 60'000));  // read back from <p>.raw over their ingest times
  EXPECT_EQ(r.to, std::to_string(kT0 - 10'000 + 60'000));
}

TEST(ConsoleHttp, WithoutAKeysFileEverythingIsOpen) {
  testing::TempDir dir;
  RocksSagaStore store(dir / "db");
  Activity activity;
  SagaHttp http(store, activity, [] { return kT0; }, {});
  const auto who = json::parse(http.handle(get("/v1/whoami")).body);
  EXPECT_EQ(who["auth"], false);
  EXPECT_EQ(who["scopes"], json({"read", "admin"}));
  EXPECT_EQ(http.handle(get("/v1/overview")).status, 200);
  EXPECT_EQ(json::parse(http.handle(get("/v1/replays")).body)["replays"].size(), 0u);
}

}  // namespace
}  // namespace starling::saga
