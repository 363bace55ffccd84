#include "services/ingest/ingest_service.h"

#include <future>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "starling/v1/envelope.pb.h"
#include "starling/v1/saga.pb.h"
#include "tests/support/temp_dir.h"

namespace starling::ingest {
namespace {

using nlohmann::json;

// Resolves every message with a chosen status, as a delivery report would.
class FakeProducer : public kafka::Producer {
 public:
  kafka::DeliveryStatus status = kafka::DeliveryStatus::persisted;
  std::vector<kafka::OutMessage> sent;
  void produce(kafka::OutMessage msg, kafka::DeliveryCallback done) override {
    sent.push_back(msg);
    done({status, 0, static_cast<int64_t>(sent.size()), status == kafka::DeliveryStatus::persisted ? "" : "broker down"});
  }
  Status flush(std::chrono::milliseconds) override { return {}; }
};

class IngestServiceTest : public ::testing::Test {
 protected:
  IngestServiceTest() {
    auto p = load_pipeline(testing::source_path("pipelines/ecowheels.yaml"));
    service_ = std::make_unique<IngestService>(std::map<std::string, PipelineConfig>{{"ecowheels", p}}, producer_, "ingest-test");
  }
  HttpResponse post(const std::string& pipeline, const std::string& body) {
    HttpRequest req;
    req.method = "POST";
    req.path = "/v1/pipelines/" + pipeline + "/events";
    req.body = body;
    std::promise<HttpResponse> answer;
    service_->handle(req, [&](HttpResponse r) { answer.set_value(std::move(r)); });
    return answer.get_future().get();
  }
  FakeProducer producer_;
  std::unique_ptr<IngestService> service_;
};

const char* kTwo = R"([{"event_id":"a","device_id":"bike-1","battery_pct":50,"event_time":"2026-11-23T10:00:00Z"},
                       {"event_id":"b","device_id":"bike-2","battery_pct":60}])";

TEST_F(IngestServiceTest, PersistedBatchGets202WithReceiptAndOneSagaFact) {
  const auto resp = post("ecowheels", kTwo);
  ASSERT_EQ(resp.status, 202) << resp.body;
  const auto receipt = json::parse(resp.body);
  EXPECT_EQ(receipt["accepted"], 2);
  EXPECT_EQ(receipt["saga_id"].get<std::string>().size(), 32u);
  ASSERT_EQ(producer_.sent.size(), 3u);
  v1::Envelope env;
  ASSERT_TRUE(env.ParseFromString(producer_.sent[0].value));
  EXPECT_EQ(producer_.sent[0].topic, "ecowheels.raw");
  EXPECT_EQ(producer_.sent[0].key, "bike-1");
  EXPECT_EQ(env.event_id(), "a");
  EXPECT_EQ(env.seq(), 0u);
  EXPECT_EQ(env.saga_id(), receipt["saga_id"]);
  EXPECT_EQ(env.event_time_ms(), 1795428000000);
  EXPECT_EQ(env.schema_name(), "starling.v1.RideTelemetry");
  ASSERT_EQ(producer_.sent[0].headers.size(), 1u);
  EXPECT_EQ(producer_.sent[0].headers[0].key, "trace-id");
  EXPECT_EQ(producer_.sent[0].headers[0].value, env.trace_id());
  v1::ProgressFact fact;
  ASSERT_TRUE(fact.ParseFromString(producer_.sent[2].value));
  EXPECT_EQ(producer_.sent[2].topic, "starling.saga");
  EXPECT_EQ(fact.step(), v1::STEP_INGESTED);
  EXPECT_EQ(fact.total(), 2u);
}

TEST_F(IngestServiceTest, UnpersistedDeliveryGets503WithRetryAfterNot202) {
  producer_.status = kafka::DeliveryStatus::possibly_persisted;
  const auto resp = post("ecowheels", kTwo);
  EXPECT_EQ(resp.status, 503);
  bool retry_after = false;
  for (const auto& [k, v] : resp.headers) retry_after |= (k == "Retry-After");
  EXPECT_TRUE(retry_after);
  EXPECT_EQ(json::parse(resp.body)["error"]["code"], "broker_unavailable");
}

TEST_F(IngestServiceTest, UnknownPipelineIs404NamingThePipelineField) {
  const auto resp = post("nope", kTwo);
  EXPECT_EQ(resp.status, 404);
  EXPECT_EQ(json::parse(resp.body)["error"]["field"], "pipeline");
  EXPECT_TRUE(producer_.sent.empty());
}

TEST_F(IngestServiceTest, MalformedJsonIs400WithThePosition) {
  const auto resp = post("ecowheels", "[{\"device_id\": }");
  EXPECT_EQ(resp.status, 400);
  const auto err = json::parse(resp.body)["error"];
  EXPECT_EQ(err["code"], "invalid_json");
  EXPECT_EQ(err["field"], "body");
  EXPECT_NE(err["message"].get<std::string>().find("column"), std::string::npos);
}

TEST_F(IngestServiceTest, EmptyArrayIs400) {
  EXPECT_EQ(post("ecowheels", "[]").status, 400);
}

TEST_F(IngestServiceTest, BadRecordsAreListedAndTheRestAccepted) {
  const auto resp = post("ecowheels", R"([{"device_id":"ok","battery_pct":5},{"device_id":"x","speed_kmh":"fast"},{"nope":1}])");
  ASSERT_EQ(resp.status, 202) << resp.body;
  const auto receipt = json::parse(resp.body);
  EXPECT_EQ(receipt["accepted"], 1);
  ASSERT_EQ(receipt["refused"].size(), 2u);
  EXPECT_EQ(receipt["refused"][0]["index"], 1);
  EXPECT_NE(receipt["refused"][0]["reason"].get<std::string>().find("speed_kmh"), std::string::npos);
  EXPECT_EQ(receipt["refused"][1]["index"], 2);
  EXPECT_NE(receipt["refused"][1]["reason"].get<std::string>().find("nope"), std::string::npos);
}

TEST_F(IngestServiceTest, NoConvertibleRecordIs422AndNothingIsProduced) {
  const auto resp = post("ecowheels", R"([{"speed_kmh":"fast"}])");
  EXPECT_EQ(resp.status, 422);
  EXPECT_EQ(json::parse(resp.body)["refused"].size(), 1u);
  EXPECT_TRUE(producer_.sent.empty());
}

TEST_F(IngestServiceTest, EventWithoutIdGetsOneDerivedFromSagaAndSeq) {
  ASSERT_EQ(post("ecowheels", R"([{"device_id":"d","battery_pct":1}])").status, 202);
  v1::Envelope env;
  ASSERT_TRUE(env.ParseFromString(producer_.sent[0].value));
  EXPECT_EQ(env.event_id(), env.saga_id() + "-0");
}

}  // namespace
}  // namespace starling::ingest
