#pragma once
// The MQTT front door: messages on starling/<pipeline>/<device_id>/events
// become one saga each through the same Ingestor as HTTP, and a message is
// acknowledged (PUBACK) only once Kafka PERSISTED every one of its events.
// Until then mosquitto keeps it in our persistent session and redelivers it
// after a crash; the saga id is derived from the message, so a redelivery
// re-produces the very same envelopes (services/ingest/README.md, "MQTT").

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "services/common/pipeline.h"
#include "services/ingest/decode.h"
#include "services/ingest/ingestor.h"
#include "services/ingest/mqtt_client.h"

namespace starling::ingest {

struct MqttTopic {
  std::string pipeline;
  std::string device_id;
};

/// "starling/<pipeline>/<device_id>/events", or nullopt.
std::optional<MqttTopic> parse_mqtt_topic(std::string_view topic);

/// The saga id of a message: a pure function of pipeline, topic and payload,
/// so every delivery of the same message gives the same saga.
std::string mqtt_saga_id(const std::string& pipeline, const std::string& topic, const std::string& payload);

/// Deciding one message. Separate from the connection so tests can drive it
/// with a fake producer.
class MqttIngest {
 public:
  MqttIngest(const std::map<std::string, PipelineConfig>& pipelines, Ingestor& ingestor, RecordLimits limits = {})
      : pipelines_(pipelines), ingestor_(ingestor), limits_(limits) {}

  /// Calls `ack` exactly once: `ack` when every record is PERSISTED or when
  /// the message can never succeed (unknown pipeline, undecodable, no valid
  /// record: logged and counted), `redeliver` when Kafka did not confirm.
  /// Throws nothing: a message that makes the decoding throw is dropped
  /// (acked) with an error log and counted as `internal_error`, since a
  /// redelivery would throw again and wedge the subscription.
  void handle(const MqttMessage& m, const MqttAckFn& ack);

 private:
  void accept(const MqttMessage& m, const MqttAckFn& ack);

  const std::map<std::string, PipelineConfig>& pipelines_;
  Ingestor& ingestor_;
  RecordLimits limits_;  // a record over them is refused, as one that does not convert
};

/// The bridge as run by starling-ingest --mqtt: an MqttClient feeding MqttIngest.
class MqttBridge {
 public:
  MqttBridge(MqttClientOptions options, const std::map<std::string, PipelineConfig>& pipelines, Ingestor& ingestor,
             RecordLimits limits = {});
  void start() { client_.start(); }
  /// See MqttClient::stop: unanswered messages stay with mosquitto.
  void stop(std::chrono::milliseconds drain) { client_.stop(drain); }
  bool connected() const { return client_.connected(); }
  std::string last_error() const { return client_.last_error(); }

 private:
  MqttIngest ingest_;
  MqttClient client_;
};

}  // namespace starling::ingest
