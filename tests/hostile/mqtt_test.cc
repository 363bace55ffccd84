// The MQTT bridge's handling of one message (MqttIngest, against a fake
// producer) under topics and payloads no honest device sends: each is dropped
// with its reason or refused, and nothing throws into the client's thread.

#include <gtest/gtest.h>

#include <optional>
#include <stdexcept>
#include <string>

#include "services/common/text.h"
#include "services/ingest/ingestor.h"
#include "services/ingest/mqtt_bridge.h"
#include "tests/support/fake_kafka.h"
#include "tests/support/temp_dir.h"

namespace starling::ingest {
namespace {

class HostileMqtt : public ::testing::Test {
 protected:
  HostileMqtt() {
    auto p = load_pipeline(testing::source_path("pipelines/ecowheels.yaml"));
    pipelines_.emplace(p.name, p);
  }

  // Handles one message; the answer, which must come exactly once.
  std::optional<MqttAck> handle(const std::string& topic, const std::string& payload) {
    std::optional<MqttAck> answer;
    int answers = 0;
    EXPECT_NO_THROW(ingest_.handle(MqttMessage{topic, payload, 1, false, false}, [&](MqttAck a) {
      answer = a;
      ++answers;
    }));
    EXPECT_EQ(answers, 1);
    return answer;
  }

  std::map<std::string, PipelineConfig> pipelines_;
  testing::FakeProducer producer_;
  Ingestor ingestor_{producer_, "test"};
  MqttIngest ingest_{pipelines_, ingestor_};
};

TEST_F(HostileMqtt, ATopicThatIsNotUtf8IsDroppedAndItsDeviceIdNeverStored) {
  EXPECT_FALSE(parse_mqtt_topic("starling/ecowheels/bike-\xff/events").has_value());
  EXPECT_EQ(handle("starling/ecowheels/bike-\xff/events", R"({"battery_pct": 50})"), MqttAck::kAck);
  EXPECT_TRUE(producer_.produced().empty());
}

TEST_F(HostileMqtt, APayloadNestedTooDeepIsDroppedWithoutRecursion) {
  const std::string deep = std::string(100'000, '[') + std::string(100'000, ']');
  EXPECT_EQ(handle("starling/ecowheels/bike-1/events", deep), MqttAck::kAck);
  EXPECT_EQ(handle("starling/ecowheels/bike-1/events", R"({"battery_pct":)" + deep + "}"), MqttAck::kAck);
  EXPECT_TRUE(producer_.produced().empty());
}

TEST_F(HostileMqtt, ARecordOverTheSizeLimitsIsRefusedNotAccepted) {
  // From the topic (a 20 KB device id) or from the payload.
  EXPECT_EQ(handle("starling/ecowheels/" + std::string(20'000, 'd') + "/events", R"({"battery_pct": 50})"),
            MqttAck::kAck);
  EXPECT_EQ(handle("starling/ecowheels/bike-1/events", R"({"ride_id":")" + std::string(20'000, 'r') + "\"}"),
            MqttAck::kAck);
  EXPECT_TRUE(producer_.produced().empty());
}

TEST_F(HostileMqtt, APayloadThatMakesTheIngestThrowIsDroppedNotRethrown) {
  // A redelivery would throw again, so the message is acknowledged (and
  // logged and counted as internal_error) rather than wedging the session.
  producer_.decide([](const kafka::OutMessage&) -> kafka::Delivery { throw std::runtime_error("a bug"); });
  EXPECT_EQ(handle("starling/ecowheels/bike-1/events", R"({"battery_pct": 50})"), MqttAck::kAck);
  // The next message is handled as usual.
  producer_.decide(nullptr);
  EXPECT_EQ(handle("starling/ecowheels/bike-1/events", R"({"battery_pct": 51})"), MqttAck::kAck);
  EXPECT_FALSE(producer_.produced().empty());
}

}  // namespace
}  // namespace starling::ingest
