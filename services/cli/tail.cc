#include "services/cli/tail.h"

#include <fmt/format.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/unknown_field_set.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "services/cli/groups.h"
#include "services/common/pipeline.h"
#include "services/common/records.h"
#include "services/common/shutdown.h"
#include "services/common/text.h"
#include "services/common/time.h"

namespace starling::cli {
namespace {

using google::protobuf::Message;
// Keys in the order written: the record's place first, fields in proto order.
using json = nlohmann::ordered_json;

constexpr const char* kEnvelope = "starling.v1.Envelope";
constexpr const char* kRejected = "starling.v1.RejectedRecord";

std::string base64(const std::string& bytes) {
  static constexpr char kDigits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t n = static_cast<uint8_t>(bytes[i]) << 16 | static_cast<uint8_t>(bytes[i + 1]) << 8 |
                       static_cast<uint8_t>(bytes[i + 2]);
    for (const int shift : {18, 12, 6, 0}) out += kDigits[(n >> shift) & 63];
  }
  if (i < bytes.size()) {
    uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out += kDigits[(n >> 18) & 63];
    out += kDigits[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? kDigits[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// Parses `bytes` as the message `type` names, or says why not. Protobuf's
// wire format accepts many byte strings as a message of only unknown fields;
// one with none of the type's own fields set is not taken for that type.
Result<std::unique_ptr<Message>> parse_as(const std::string& type, const std::string& bytes) {
  const auto* desc = google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(type);
  if (desc == nullptr) return fail(Errc::kNotFound, fmt::format("no message type {} is compiled in", type));
  const Message* proto = google::protobuf::MessageFactory::generated_factory()->GetPrototype(desc);
  std::unique_ptr<Message> msg(proto->New());
  if (!msg->ParseFromString(bytes)) return fail(Errc::kInvalidArgument, fmt::format("not a valid {}", type));
  std::vector<const google::protobuf::FieldDescriptor*> set;
  msg->GetReflection()->ListFields(*msg, &set);
  if (set.empty() && !msg->GetReflection()->GetUnknownFields(*msg).empty()) {
    return fail(Errc::kInvalidArgument, fmt::format("not a {}: none of its fields is set, only unknown ones", type));
  }
  return msg;
}

json message_json(const Message& m) { return json::parse(record_to_json(m)); }

// An envelope's JSON with its payload decoded as its schema_name says; a
// payload that does not decode stays base64, with "payload_error".
json envelope_json(const Message& env) {
  json out = message_json(env);
  const auto* d = env.GetDescriptor();
  const auto* r = env.GetReflection();
  const std::string schema = r->GetString(env, d->FindFieldByName("schema_name"));
  const std::string payload = r->GetString(env, d->FindFieldByName("payload"));
  if (schema.empty() || payload.empty()) return out;
  auto decoded = parse_as(schema, payload);
  if (decoded) {
    out["payload"] = message_json(**decoded);
  } else {
    out["payload_error"] = decoded.error().message;
  }
  return out;
}

}  // namespace

std::string tail_type_for_topic(const std::string& topic) {
  if (topic == kSagaTopic) return "fact";
  if (topic == kOutcomeTopic) return "outcome";
  for (const char* suffix : {".raw", ".clean", ".raw.replay", ".clean.replay"}) {
    if (topic.ends_with(suffix)) return "envelope";
  }
  if (topic.ends_with(".rejected") || topic.ends_with(".dlq")) return "rejected";
  return "raw";
}

Result<std::string> tail_message_type(const std::string& type) {
  static const std::map<std::string, std::string> short_names = {{"envelope", kEnvelope},
                                                                 {"rejected", kRejected},
                                                                 {"fact", "starling.v1.ProgressFact"},
                                                                 {"outcome", "starling.v1.SagaOutcome"},
                                                                 {"raw", ""}};
  if (auto it = short_names.find(type); it != short_names.end()) return it->second;
  if (google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(type) != nullptr) return type;
  return fail(Errc::kInvalidArgument, fmt::format("--type '{}': expected one of {}, or a message's full name such as "
                                                  "starling.v1.RideTelemetry",
                                                  type, kTailTypes));
}

std::string tail_line(const kafka::InMessage& m, const std::string& message_type) {
  json line = {{"topic", m.topic},
               {"partition", m.partition},
               {"offset", m.offset},
               {"timestamp", rfc3339(m.timestamp_ms)},
               {"timestamp_ms", m.timestamp_ms},
               {"key", utf8_safe(m.key)}};
  if (!m.headers.empty()) {
    json headers = json::object();
    for (const auto& h : m.headers) headers[utf8_safe(h.key)] = utf8_safe(h.value);
    line["headers"] = std::move(headers);
  }
  if (message_type.empty()) {
    if (is_utf8(m.value)) {
      line["value"] = m.value;
    } else {
      line["value_base64"] = base64(m.value);
    }
  } else {
    line["type"] = message_type;
    auto msg = parse_as(message_type, m.value);
    if (!msg) {
      line["error"] = msg.error().message;
      line["value_base64"] = base64(m.value);
    } else if (message_type == kEnvelope) {
      line["value"] = envelope_json(**msg);
    } else if (message_type == kRejected) {
      json v = message_json(**msg);
      const auto* f = (*msg)->GetDescriptor()->FindFieldByName("envelope");
      if ((*msg)->GetReflection()->HasField(**msg, f)) {
        v["envelope"] = envelope_json((*msg)->GetReflection()->GetMessage(**msg, f));
      }
      line["value"] = std::move(v);
    } else {
      line["value"] = message_json(**msg);
    }
  }
  return line.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<int64_t> parse_tail_from(const std::string& text, int64_t now_ms) {
  if (auto d = parse_duration_ms(text)) return now_ms - *d;
  auto t = parse_time_ms(text);
  if (!t) {
    return fail(Errc::kInvalidArgument,
                fmt::format("--from '{}': expected an RFC 3339 time (2026-11-23T10:00:00Z), Unix ms, or a duration "
                            "back from now (90s, 10m, 2h, 1d)",
                            text));
  }
  return *t;
}

int cmd_tail(const TailArgs& args) {
  const std::string type = args.type.empty() ? tail_type_for_topic(args.topic) : args.type;
  auto message_type = tail_message_type(type);
  if (!message_type) {
    fmt::print(stderr, "error: {}\n", message_type.error().message);
    return 2;
  }
  std::optional<int64_t> from_ms;
  if (!args.from.empty()) {
    auto t = parse_tail_from(args.from, now_ms());
    if (!t) {
      fmt::print(stderr, "error: {}\n", t.error().message);
      return 2;
    }
    from_ms = *t;
  }
  // Bytes that are not what their topic should carry are reported per
  // record; protobuf's own log line about them would only repeat it.
  google::protobuf::SetLogHandler(nullptr);
  const auto props = cli_kafka_properties(args.kafka_properties_file, args.kafka_property_flags);
  auto reader = kafka::TopicReader::create({args.kafka, "starling-tail", props.values, props.origins});
  auto fail_with = [](const Error& e) {
    fmt::print(stderr, "error: {}\n", e.message);
    return 1;
  };
  if (!reader) return fail_with(reader.error());
  auto partitions = (*reader)->partitions(args.topic);
  if (!partitions) return fail_with(partitions.error());

  // Where each partition starts, and (without --follow) the end it stops at:
  // the log end as the command started.
  std::map<kafka::TopicPartition, int64_t> starts;
  std::map<int32_t, int64_t> ends;
  for (int32_t p = 0; p < *partitions; ++p) {
    const kafka::TopicPartition tp{args.topic, p};
    auto w = (*reader)->watermarks(tp);
    if (!w) return fail_with(w.error());
    int64_t start = w->first;
    if (from_ms) {
      auto at = (*reader)->offset_for_time(tp, *from_ms);
      if (!at) return fail_with(at.error());
      start = std::max(*at, w->first);
    }
    if (!args.follow && start >= w->second) continue;  // nothing to read there
    starts[tp] = start;
    ends[p] = w->second;
  }
  if (starts.empty()) return 0;
  if (auto st = (*reader)->assign(starts); !st) return fail_with(st.error());

  int64_t printed = 0;
  while (!shutdown_requested() && (args.follow || !ends.empty())) {
    auto batch = (*reader)->poll_batch(500, std::chrono::milliseconds(200));
    if (!batch) return fail_with(batch.error());
    for (const auto& m : *batch) {
      if (!args.follow) {
        auto end = ends.find(m.partition);
        if (end == ends.end() || m.offset >= end->second) continue;
        if (m.offset + 1 >= end->second) ends.erase(end);
      }
      fmt::print("{}\n", tail_line(m, *message_type));
      if (args.max > 0 && ++printed >= args.max) return 0;
    }
  }
  return 0;
}

}  // namespace starling::cli
