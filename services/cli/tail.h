#pragma once
// `starling tail TOPIC`: a topic's records as JSON lines, each decoded as the
// Protobuf message its topic carries (an Envelope with its pipeline payload,
// a RejectedRecord, a ProgressFact, a SagaOutcome). A record that does not
// decode is printed with its bytes in base64 and an "error"; never a crash.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/error.h"

namespace starling::cli {

struct TailArgs {
  std::string topic;
  std::string kafka = "127.0.0.1:9092";
  std::string from;  // RFC 3339, Unix ms or a duration back from now (10m); empty: the beginning
  bool follow = false;
  int64_t max = 0;   // records to print; 0: no limit
  std::string type;  // the decoder; empty: by topic name (tail_type_for_topic)
  std::vector<std::string> kafka_property_flags;
  std::string kafka_properties_file;
};

/// The decoders `--type` takes besides a message's full name
/// (starling.v1.RideTelemetry): envelope, rejected, fact, outcome, raw.
inline constexpr const char* kTailTypes = "envelope, rejected, fact, outcome, raw";

/// What a Starling topic carries, by its name (services/common/pipeline.h):
/// <p>.raw, <p>.clean and their .replay topics envelopes; <p>.rejected and
/// <p>.dlq rejected records; starling.saga facts; starling.saga.outcomes
/// outcomes; any other topic "raw".
std::string tail_type_for_topic(const std::string& topic);

/// A --type value as a message's full name ("" for raw); an error names the
/// value and lists what is accepted.
Result<std::string> tail_message_type(const std::string& type);

/// One record as one JSON line (no newline): topic, partition, offset,
/// timestamp, key, headers, and "value" decoded as `message_type` ("" for
/// raw); or "value_base64" and "error" when it does not decode.
std::string tail_line(const kafka::InMessage& m, const std::string& message_type);

/// --from: RFC 3339 or Unix ms, or a duration back from `now_ms` (10m, 2h).
Result<int64_t> parse_tail_from(const std::string& text, int64_t now_ms);

/// Prints records until the end of the partitions as they were at start (or,
/// with --follow, until SIGINT/SIGTERM), or --max. 0; 1 when the topic does
/// not exist or Kafka cannot be read; 2 for a bad --from or --type.
int cmd_tail(const TailArgs& args);

}  // namespace starling::cli
