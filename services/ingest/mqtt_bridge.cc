#include "services/ingest/mqtt_bridge.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "services/common/api_keys.h"
#include "services/common/metrics.h"
#include "services/common/records.h"
#include "services/common/text.h"
#include "services/ingest/decode.h"
#include "services/ingest/idempotency.h"

namespace starling::ingest {

namespace {

Counter& received() {
  static auto& c = metrics().counter("starling_ingest_mqtt_messages_received_total",
                                     "MQTT messages received (a redelivery counts again)");
  return c;
}
Counter& accepted_messages() {
  static auto& c = metrics().counter("starling_ingest_mqtt_messages_accepted_total",
                                     "MQTT messages acknowledged after every record was persisted");
  return c;
}
// Acknowledged without producing anything: they can never succeed.
Counter& refused_messages(const char* reason) {
  return metrics().counter("starling_ingest_mqtt_messages_refused_total",
                           "MQTT messages acknowledged and dropped, by reason", {{"reason", reason}});
}
Counter& redelivered() {
  static auto& c = metrics().counter("starling_ingest_mqtt_messages_unconfirmed_total",
                                     "MQTT messages Kafka did not confirm; left unacknowledged for redelivery");
  return c;
}
Counter& records_accepted(const std::string& pipeline) {
  return metrics().counter("starling_ingest_mqtt_records_accepted_total", "Records persisted from MQTT messages",
                           {{"pipeline", pipeline}});
}
Counter& records_refused(const std::string& pipeline) {
  return metrics().counter("starling_ingest_mqtt_records_refused_total",
                           "Records of MQTT messages that did not convert or named another device",
                           {{"pipeline", pipeline}});
}

// No Content-Type in MQTT 3.1.1. A serialized EventBatch starts with the tag
// of its field 1 (0x0a), which is also a JSON newline: JSON is tried first
// when the payload looks like it, the EventBatch when JSON did not parse.
Result<Decoded> decode_payload(const PipelineConfig& p, const std::string& payload) {
  const bool batch_tag = !payload.empty() && payload[0] == '\x0a';
  const auto first = payload.find_first_not_of(" \t\r\n");
  const bool looks_json = first != std::string::npos && (payload[first] == '{' || payload[first] == '[');
  if (looks_json || !batch_tag) {
    auto d = decode_body(p, BodyFormat::kJson, payload);
    if (d || !batch_tag) return d;
  }
  return decode_body(p, BodyFormat::kProtobuf, payload);
}

}  // namespace

std::optional<MqttTopic> parse_mqtt_topic(std::string_view topic) {
  constexpr std::string_view kPrefix = "starling/", kSuffix = "/events";
  // A topic names a pipeline and a device id that goes into records: UTF-8 only.
  if (topic.size() <= kPrefix.size() + kSuffix.size() || !topic.starts_with(kPrefix) || !topic.ends_with(kSuffix) ||
      !is_utf8(topic)) {
    return std::nullopt;
  }
  const auto middle = topic.substr(kPrefix.size(), topic.size() - kPrefix.size() - kSuffix.size());
  const auto slash = middle.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == middle.size() ||
      middle.find('/', slash + 1) != std::string_view::npos) {
    return std::nullopt;
  }
  return MqttTopic{std::string(middle.substr(0, slash)), std::string(middle.substr(slash + 1))};
}

std::string mqtt_saga_id(const std::string& pipeline, const std::string& topic, const std::string& payload) {
  const auto digest = sha256(payload);
  return derived_saga_id("mqtt", pipeline, topic + "\n" + hex(digest.data(), digest.size()));
}

void MqttIngest::handle(const MqttMessage& m, const MqttAckFn& ack) {
  try {
    accept(m, ack);
  } catch (const std::exception& e) {
    spdlog::error("MQTT: dropped a message on '{}' ({} bytes) that failed: {}", excerpt(m.topic, 256), m.payload.size(),
                  excerpt(e.what(), 256));
    refused_messages("internal_error").add();
    ack(MqttAck::kAck);
  }
}

void MqttIngest::accept(const MqttMessage& m, const MqttAckFn& ack) {
  received().add();
  const auto topic = parse_mqtt_topic(m.topic);
  if (!topic) {
    spdlog::warn("MQTT: dropped a message on '{}': the topic is not starling/<pipeline>/<device_id>/events in UTF-8",
                 excerpt(m.topic, 256));
    refused_messages("bad_topic").add();
    return ack(MqttAck::kAck);
  }
  const auto it = pipelines_.find(topic->pipeline);
  if (it == pipelines_.end()) {
    spdlog::warn("MQTT: dropped a message on '{}': no pipeline '{}' here", m.topic, topic->pipeline);
    refused_messages("unknown_pipeline").add();
    return ack(MqttAck::kAck);
  }
  const auto& p = it->second;
  auto decoded = decode_payload(p, m.payload);
  if (!decoded) {
    spdlog::warn("MQTT: dropped a message on '{}': {}", m.topic, decoded.error().message);
    refused_messages("undecodable").add();
    return ack(MqttAck::kAck);
  }

  // The topic names the device: a record fills its device id from it, and
  // one that names another device is refused.
  std::vector<FieldError> refused = std::move(decoded->refused);
  std::vector<Record> records;
  for (auto& r : decoded->records) {
    if (p.device_id_field) {
      const auto own = field_text(*r.message, p.device_id_field);
      if (own.empty()) {
        if (auto st = set_field_text(*r.message, p.device_id_field, topic->device_id); !st) {
          refused.push_back({r.index, p.device_id_field->name(), st.error().message});
          continue;
        }
      } else if (own != topic->device_id) {
        refused.push_back({r.index, p.device_id_field->name(),
                           fmt::format("'{}' is not the topic's device '{}'", own, topic->device_id)});
        continue;
      }
    }
    if (auto e = over_limits(*r.message, limits_, r.index)) {
      refused.push_back(std::move(*e));
      continue;
    }
    records.push_back(std::move(r));
  }
  if (!refused.empty()) {
    records_refused(p.name).add(refused.size());
    const auto& first = refused.front();
    spdlog::warn("MQTT: {} record(s) of a message on '{}' refused; first: record {}{}: {}", refused.size(), m.topic,
                 first.index, first.field.empty() ? "" : " field " + first.field, first.reason);
  }
  if (records.empty()) {
    refused_messages("no_valid_record").add();
    return ack(MqttAck::kAck);
  }

  Batch batch;
  batch.pipeline = &p;
  batch.records = std::move(records);
  batch.saga_id = mqtt_saga_id(p.name, m.topic, m.payload);
  batch.trace_id = batch.saga_id;  // deterministic too, so a redelivery is the same envelope
  const auto n = batch.records.size();
  auto& accepted_records = records_accepted(p.name);
  ingestor_.submit(std::move(batch), [ack, n, &accepted_records, topic = m.topic](Result<Receipt> r) {
    if (r) {
      accepted_records.add(n);
      accepted_messages().add();
      return ack(MqttAck::kAck);
    }
    spdlog::warn("MQTT: a message on '{}' was not persisted ({}); leaving it with mosquitto for redelivery", topic,
                 r.error().message);
    redelivered().add();
    ack(MqttAck::kRedeliver);
  });
}

MqttBridge::MqttBridge(MqttClientOptions options, const std::map<std::string, PipelineConfig>& pipelines,
                       Ingestor& ingestor, RecordLimits limits)
    : ingest_(pipelines, ingestor, limits),
      client_(std::move(options), [this](const MqttMessage& m, const MqttAckFn& ack) { ingest_.handle(m, ack); }) {}

}  // namespace starling::ingest
