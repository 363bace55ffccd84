// The MQTT bridge's decisions, one message at a time, against a fake
// producer: what is acknowledged, what is left for redelivery, and that a
// redelivery gives the same saga.

#include "services/ingest/mqtt_bridge.h"

#include <gtest/gtest.h>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/pipeline.h"
#include "services/ingest/ingestor.h"
#include "starling/v1/ecowheels.pb.h"
#include "starling/v1/envelope.pb.h"
#include "starling/v1/ingest.pb.h"
#include "tests/support/temp_dir.h"

namespace starling::ingest {
namespace {

class FakeProducer : public kafka::Producer {
 public:
  void produce(const kafka::OutMessage& msg, kafka::DeliveryCallback done) override {
    sent.push_back(msg);
    kafka::Delivery d;
    d.status = status;
    if (status != kafka::DeliveryStatus::kPersisted) d.error = "broker down";
    done(d);
  }
  Status flush(std::chrono::milliseconds) override { return {}; }

  kafka::DeliveryStatus status = kafka::DeliveryStatus::kPersisted;
  std::vector<kafka::OutMessage> sent;
};

class MqttIngestTest : public ::testing::Test {
 protected:
  MqttIngestTest() {
    auto p = load_pipeline(testing::source_path("pipelines/ecowheels.yaml"));
    pipelines_.emplace(p.name, p);
  }

  // Handles one message and returns what the bridge answered (nullopt: no answer yet).
  std::optional<MqttAck> handle(const std::string& topic, const std::string& payload) {
    std::optional<MqttAck> answer;
    int answers = 0;
    ingest_.handle(MqttMessage{topic, payload, 1, false, false}, [&](MqttAck a) {
      answer = a;
      ++answers;
    });
    EXPECT_LE(answers, 1);
    return answer;
  }

  std::vector<v1::Envelope> raw() const {
    std::vector<v1::Envelope> out;
    for (const auto& m : producer_.sent) {
      if (m.topic != "ecowheels.raw") continue;
      v1::Envelope e;
      EXPECT_TRUE(e.ParseFromString(m.value));
      out.push_back(e);
    }
    return out;
  }

  std::map<std::string, PipelineConfig> pipelines_;
  FakeProducer producer_;
  Ingestor ingestor_{producer_, "test"};
  MqttIngest ingest_{pipelines_, ingestor_};
};

TEST(MqttTopic, ParsesPipelineAndDeviceAndRefusesOtherShapes) {
  auto t = parse_mqtt_topic("starling/ecowheels/bike-0001/events");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->pipeline, "ecowheels");
  EXPECT_EQ(t->device_id, "bike-0001");
  for (const char* bad : {"starling/ecowheels/events", "starling//bike-1/events", "starling/p/d/x/events",
                          "other/p/d/events", "starling/p/d/event", "starling/p//events"}) {
    EXPECT_FALSE(parse_mqtt_topic(bad).has_value()) << bad;
  }
}

TEST(MqttTopic, SagaIdIsAPureFunctionOfPipelineTopicAndPayload) {
  const auto a = mqtt_saga_id("ecowheels", "starling/ecowheels/bike-0001/events", R"({"ride_id":"r1"})");
  EXPECT_EQ(a, mqtt_saga_id("ecowheels", "starling/ecowheels/bike-0001/events", R"({"ride_id":"r1"})"));
  EXPECT_NE(a, mqtt_saga_id("ecowheels", "starling/ecowheels/bike-0002/events", R"({"ride_id":"r1"})"));
  EXPECT_NE(a, mqtt_saga_id("ecowheels", "starling/ecowheels/bike-0001/events", R"({"ride_id":"r2"})"));
  EXPECT_EQ(a.size(), 32u);
}

TEST_F(MqttIngestTest, DeviceIdMissingFromTheRecordIsTakenFromTheTopic) {
  EXPECT_EQ(handle("starling/ecowheels/bike-0007/events", R"([{"ride_id":"r1"},{"ride_id":"r2"}])"), MqttAck::kAck);
  const auto envs = raw();
  ASSERT_EQ(envs.size(), 2u);
  for (const auto& e : envs) {
    EXPECT_EQ(e.device_id(), "bike-0007");
    v1::RideTelemetry r;
    ASSERT_TRUE(r.ParseFromString(e.payload()));
    EXPECT_EQ(r.device_id(), "bike-0007");
  }
}

TEST_F(MqttIngestTest, EventBatchPayloadIsTakenAndPrettyJsonStartingWithANewlineToo) {
  v1::EventBatch batch;
  for (const char* ride : {"p1", "p2"}) {
    v1::RideTelemetry r;
    r.set_ride_id(ride);
    r.SerializeToString(batch.add_records());
  }
  EXPECT_EQ(handle("starling/ecowheels/bike-0004/events", batch.SerializeAsString()), MqttAck::kAck);
  EXPECT_EQ(handle("starling/ecowheels/bike-0004/events", "\n{\n  \"ride_id\": \"j1\"\n}\n"), MqttAck::kAck);
  std::vector<std::string> rides;
  for (const auto& e : raw()) {
    v1::RideTelemetry r;
    ASSERT_TRUE(r.ParseFromString(e.payload()));
    rides.push_back(r.ride_id());
    EXPECT_EQ(e.device_id(), "bike-0004");
  }
  EXPECT_EQ(rides, (std::vector<std::string>{"p1", "p2", "j1"}));
}

TEST_F(MqttIngestTest, RecordNamingAnotherDeviceIsRefusedAndTheRestAccepted) {
  EXPECT_EQ(handle("starling/ecowheels/bike-0001/events",
                   R"([{"ride_id":"ok","device_id":"bike-0001"},{"ride_id":"no","device_id":"bike-0002"}])"),
            MqttAck::kAck);
  const auto envs = raw();
  ASSERT_EQ(envs.size(), 1u);
  v1::RideTelemetry r;
  ASSERT_TRUE(r.ParseFromString(envs[0].payload()));
  EXPECT_EQ(r.ride_id(), "ok");
}

TEST_F(MqttIngestTest, MessagesThatCanNeverSucceedAreAcknowledgedWithoutProducing) {
  EXPECT_EQ(handle("starling/nosuch/bike-0001/events", R"({"ride_id":"r"})"), MqttAck::kAck);
  EXPECT_EQ(handle("starling/ecowheels/bike-0001/events", "not json"), MqttAck::kAck);
  EXPECT_EQ(handle("starling/ecowheels/bike-0001/events", R"({"battery_pct":"full"})"), MqttAck::kAck);
  EXPECT_EQ(handle("elsewhere", R"({"ride_id":"r"})"), MqttAck::kAck);
  EXPECT_TRUE(producer_.sent.empty());
}

TEST_F(MqttIngestTest, MessageKafkaDidNotConfirmIsLeftForRedelivery) {
  producer_.status = kafka::DeliveryStatus::kPossiblyPersisted;
  EXPECT_EQ(handle("starling/ecowheels/bike-0001/events", R"({"ride_id":"r1"})"), MqttAck::kRedeliver);
  producer_.status = kafka::DeliveryStatus::kNotPersisted;
  EXPECT_EQ(handle("starling/ecowheels/bike-0001/events", R"({"ride_id":"r1"})"), MqttAck::kRedeliver);
}

TEST_F(MqttIngestTest, RedeliveredMessageGivesTheSameSagaSeqsAndEventIds) {
  const std::string topic = "starling/ecowheels/bike-0003/events";
  const std::string payload = R"([{"ride_id":"a"},{"ride_id":"b"},{"ride_id":"c"}])";
  ASSERT_EQ(handle(topic, payload), MqttAck::kAck);
  const auto first = raw();
  producer_.sent.clear();
  ASSERT_EQ(handle(topic, payload), MqttAck::kAck);
  const auto second = raw();
  ASSERT_EQ(first.size(), 3u);
  ASSERT_EQ(second.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(first[i].saga_id(), mqtt_saga_id("ecowheels", topic, payload));
    EXPECT_EQ(first[i].saga_id(), second[i].saga_id());
    EXPECT_EQ(first[i].seq(), second[i].seq());
    EXPECT_EQ(first[i].event_id(), second[i].event_id());
    EXPECT_EQ(first[i].event_id(), first[i].saga_id() + "-" + std::to_string(i));
    EXPECT_EQ(first[i].payload(), second[i].payload());
  }
}

}  // namespace
}  // namespace starling::ingest
