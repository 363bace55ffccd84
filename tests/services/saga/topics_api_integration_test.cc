// The topic-reading endpoints against a real starling-broker (port 0): the
// records are produced the way ingest and clean produce them (make_envelope,
// the real clean::Cleaner) through the librdkafka adapter, and read back with
// kafka::TopicReader. Each endpoint's JSON is checked through a real HTTP
// server: a good event's journey to its row, a rejected one's reasons, a
// device-id search, an event not found, an undecodable record in the topic, a
// hostile device id returned as plain JSON text, the rejects' groups, a
// saga's events, and a broker that is not there.

#include <fmt/format.h>
#include <google/protobuf/stubs/logging.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "services/common/http.h"
#include "services/common/text.h"
#include "services/saga/topics_api.h"
#include "tests/services/broker/broker_process.h"
#include "tests/services/saga/topics_api_fixture.h"
#include "tests/support/free_port.h"
#include "tests/support/temp_dir.h"

namespace starling::saga {
namespace {

using namespace std::chrono_literals;
using namespace testing;  // NOLINT(google-build-using-namespace): the fixture's helpers
using nlohmann::json;

class TopicsApiIntegration : public ::testing::Test {
 protected:
  TopicsApiIntegration() : store_(dir_ / "sagas"), pipeline_(ecowheels()), stages_(pipeline_), t0_(now_ms() - 60'000) {
    google::protobuf::SetLogHandler(nullptr);
  }

  void SetUp() override {
    broker_ = std::make_unique<broker::testing::BrokerProcess>(dir_.path() + "/broker");
    const kafka::KafkaOptions kafka{broker_->bootstrap(), "topics-api-test", {}, {}};
    ASSERT_TRUE(kafka::create_topics(kafka, {{pipeline_.raw_topic(), 3},
                                             {pipeline_.clean_topic(), 3},
                                             {pipeline_.rejected_topic(), 3},
                                             {pipeline_.dlq_topic(), 3}})
                    .has_value());
    auto p = kafka::KafkaProducer::create(kafka);
    ASSERT_TRUE(p.has_value()) << p.error().message;
    producer_ = std::move(*p);
    options_.kafka = kafka;
    options_.pipelines = {pipeline_};
    server_ =
        std::make_unique<HttpServer>(HttpServerOptions{}, [this](const HttpRequest& req, const HttpResponder& done) {
          auto r = handle_topics_api(options_, store_, req, [] { return now_ms(); });
          done(r ? *r : json_error(404, "not_found", "no route"));
        });
    server_->start();
  }
  void TearDown() override { server_->stop(); }

  // One event through ingest and clean, each output produced to its topic.
  Produced event(const json& record, const std::string& saga, uint32_t seq) {
    auto e = stages_.event(record, saga, seq, t0_ + seq);
    produce({e.raw, e.out});
    return e;
  }
  void produce(const std::vector<kafka::OutMessage>& msgs) {
    ASSERT_TRUE(kafka::produce_all(*producer_, msgs, 30s).has_value());
  }

  struct Answer {
    int status = 0;
    json body;
    HttpResponse raw;
  };
  Answer get(const std::string& path, const std::map<std::string, std::string>& query) {
    std::string url = fmt::format("http://127.0.0.1:{}{}", server_->port(), path);
    char sep = '?';
    for (const auto& [k, v] : query) {
      url += fmt::format("{}{}={}", sep, k, url_encode(v));
      sep = '&';
    }
    auto r = http_call("GET", url, {}, {}, 30'000);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
    if (!r) return {};
    return {r->status, json::parse(r->body, nullptr, false), *r};
  }
  json journey(const std::map<std::string, std::string>& query) {
    auto q = query;
    q["pipeline"] = "ecowheels";
    auto a = get("/v1/journey", q);
    EXPECT_EQ(a.status, 200) << a.raw.body;
    return a.body;
  }

  starling::testing::TempDir dir_;
  RocksSagaStore store_;
  PipelineConfig pipeline_;
  Stages stages_;
  int64_t t0_;
  std::unique_ptr<broker::testing::BrokerProcess> broker_;
  std::unique_ptr<kafka::KafkaProducer> producer_;
  TopicsApiOptions options_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(TopicsApiIntegration, EachEndpointAnswersFromTheRealTopics) {
  // Given: saga s1 of five events of bike-0101: 0, 1, 2 good, 3 too fast,
  // 4 from a hostile device id; and junk on the raw topic.
  for (uint32_t i = 0; i < 3; ++i) event(reading(fmt::format("ev-{}", i), "bike-0101", 20.04 + i, t0_), "s1", i);
  event(reading("ev-fast", "bike-0101", 99, t0_), "s1", 3);
  event(reading("ev-xss", kXss, 10, t0_), "s1", 4);
  produce({{pipeline_.raw_topic(), "bike-0101", "\xff\x01 not an envelope", {}}});
  event(reading("ev-other", "bike-0202", 10, t0_), "s2", 0);
  store_sagas(store_,
              {saga_record("s1", "ecowheels", 5, t0_, {.cleaned = {0, 1, 2}, .rejected = {3, 4}, .loaded = {0, 1}})});

  // A good event: its changes and its row.
  auto good = journey({{"event_id", "ev-0"}});
  EXPECT_EQ(good["complete"], true);
  EXPECT_EQ(good["undecodable"], 1);
  ASSERT_EQ(good["events"].size(), 1u) << good.dump(2);
  const auto& ev = good["events"][0];
  EXPECT_EQ(ev["status"], "loaded");
  EXPECT_EQ(ev["where"], "loaded into ride_telemetry");
  EXPECT_EQ(ev["ingested"]["topic"], "ecowheels.raw");
  EXPECT_GE(ev["ingested"]["offset"].get<int64_t>(), 0);
  EXPECT_EQ(ev["ingested"]["payload"]["speed_kmh"], 20.04);
  EXPECT_EQ(ev["cleaned"]["topic"], "ecowheels.clean");
  bool rounded = false;
  for (const auto& c : ev["cleaned"]["changes"]) {
    rounded |= c["field"] == "speed_kmh" && c["rule"] == "round(1)" && c["from"] == 20.04 && c["to"] == 20.0;
  }
  EXPECT_TRUE(rounded) << ev["cleaned"].dump(2);
  EXPECT_EQ(ev["loaded"]["table"], "ride_telemetry");
  EXPECT_EQ(ev["loaded"]["row"]["speed_kmh"], 20.0);
  EXPECT_EQ(ev["loaded"]["row"]["event_id"], "ev-0");

  // A rejected one: the reasons.
  auto fast = journey({{"event_id", "ev-fast"}});
  ASSERT_EQ(fast["events"].size(), 1u);
  EXPECT_EQ(fast["events"][0]["status"], "rejected");
  EXPECT_EQ(fast["events"][0]["where"], "rejected by clean (rule range on speed_kmh)");
  EXPECT_EQ(fast["events"][0]["rejected"]["reasons"][0]["value"], "99");
  EXPECT_EQ(fast["events"][0]["rejected"]["topic"], "ecowheels.rejected");

  // A device: its events, newest first, none of another device.
  auto device = journey({{"device_id", "bike-0101"}});
  ASSERT_EQ(device["events"].size(), 4u) << device.dump(2);
  EXPECT_EQ(device["events"][0]["event_id"], "ev-fast");
  for (const auto& e : device["events"]) EXPECT_EQ(e["device_id"], "bike-0101");

  // Not found.
  auto none = journey({{"event_id", "no-such-event"}});
  EXPECT_EQ(none["events"], json::array());
  EXPECT_EQ(none["complete"], true);

  // The hostile device id is JSON text, served as application/json.
  auto xss = get("/v1/journey", {{"pipeline", "ecowheels"}, {"device_id", kXss}});
  ASSERT_EQ(xss.status, 200);
  EXPECT_EQ(xss.raw.content_type, "application/json");
  ASSERT_EQ(xss.body["events"].size(), 1u);
  EXPECT_EQ(xss.body["events"][0]["device_id"], kXss);
  EXPECT_EQ(xss.body["events"][0]["rejected"]["reasons"][0]["field"], "device_id");

  // Rejects: grouped, with examples.
  auto rejects = get("/v1/rejects", {{"pipeline", "ecowheels"}, {"since", "1h"}});
  ASSERT_EQ(rejects.status, 200) << rejects.raw.body;
  EXPECT_EQ(rejects.body["complete"], true);
  std::map<std::string, json> groups;
  for (const auto& g : rejects.body["groups"])
    groups[g["rule"].get<std::string>() + ":" + g["field"].get<std::string>()] = g;
  ASSERT_TRUE(groups.contains("range:speed_kmh")) << rejects.body.dump(2);
  EXPECT_EQ(groups["range:speed_kmh"]["count"], 1);
  EXPECT_EQ(groups["range:speed_kmh"]["examples"][0]["event_id"], "ev-fast");
  ASSERT_TRUE(groups.contains("regex:device_id"));
  EXPECT_EQ(groups["regex:device_id"]["examples"][0]["device_id"], kXss);

  // The saga's events: position and status per seq.
  auto events = get("/v1/sagas/s1/events", {});
  ASSERT_EQ(events.status, 200) << events.raw.body;
  EXPECT_EQ(events.body["complete"], true);
  ASSERT_EQ(events.body["events"].size(), 5u) << events.body.dump(2);
  const std::vector<std::string> want = {"loaded", "loaded", "cleaned", "rejected", "rejected"};
  for (uint32_t i = 0; i < 5; ++i) {
    EXPECT_EQ(events.body["events"][i]["seq"], i);
    EXPECT_EQ(events.body["events"][i]["status"], want[i]);
    EXPECT_EQ(events.body["events"][i]["topic"], "ecowheels.raw");
  }
  EXPECT_EQ(get("/v1/sagas/nope/events", {}).status, 404);
}

TEST_F(TopicsApiIntegration, ABrokerThatIsNotThereIs503WithinTheBudget) {
  options_.kafka.bootstrap = fmt::format("127.0.0.1:{}", starling::testing::free_port());
  options_.budget = 2s;
  const auto start = std::chrono::steady_clock::now();
  auto a = get("/v1/rejects", {{"pipeline", "ecowheels"}});
  EXPECT_EQ(a.status, 503) << a.raw.body;
  EXPECT_EQ(a.body["error"]["code"], "kafka_unavailable");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

}  // namespace
}  // namespace starling::saga
