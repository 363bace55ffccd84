#pragma once
// The rule engine: the pipeline's cleaning rules applied through Protobuf
// reflection. Each failed check yields a machine-readable Reason; each value a
// rule sets or changes yields a Change, so every difference between the raw
// and the clean record can be explained.

#include <map>
#include <string>
#include <vector>

#include <google/protobuf/message.h>

#include "services/common/pipeline.h"
#include "starling/v1/envelope.pb.h"

namespace starling::clean {

/// The last known value of one field of one device.
struct KnownValue {
  int64_t event_time_ms = 0;
  std::string value;  // a message of the pipeline's type with only this field set, serialized
  bool operator==(const KnownValue&) const = default;
};

/// A device's last known values, by field number.
using DeviceMemory = std::map<int, KnownValue>;

/// Times a record is judged against. Both come from the envelope, never from
/// the clock, so cleaning the same input twice gives the same output.
struct RecordContext {
  int64_t ingest_time_ms = 0;
  int64_t event_time_ms = 0;
};

/// One value a rule set or changed.
struct Change {
  std::string field;
  std::string rule;  // "fill_last_known", "default", "convert", "round"
  std::string from;  // "" when the field was missing
  std::string to;
};

struct Outcome {
  std::vector<v1::Reason> reasons;  // empty: the record is clean
  std::vector<Change> changes;
  /// The record's own values (after convert and round) of fill_last_known
  /// fields, at its event time: what to remember when the record is clean.
  DeviceMemory observed;
};

class RuleEngine {
 public:
  explicit RuleEngine(const PipelineConfig& pipeline);

  /// Applies every rule in the pipeline's order, changing `record` in place.
  /// Within a rule: fill (last known within max age, else default), convert
  /// and round the record's own value (a filled or default value is already
  /// clean), then the checks required, range, allowed, regex, timestamp. A
  /// missing field skips the checks other than required. Thread-compatible.
  /// `out` is overwritten; reusing one Outcome across records keeps its buffers.
  void apply(google::protobuf::Message& record, const RecordContext& context, const DeviceMemory& memory,
             Outcome& out) const;
  Outcome apply(google::protobuf::Message& record, const RecordContext& context, const DeviceMemory& memory) const {
    Outcome out;
    apply(record, context, memory, out);
    return out;
  }

  /// Whether any rule reads the device's last known values.
  bool uses_memory() const { return uses_memory_; }

 private:
  const PipelineConfig& pipeline_;
  bool uses_memory_ = false;
  // Per rule, the Change::rule texts, formatted once.
  std::vector<std::string> convert_labels_;
  std::vector<std::string> round_labels_;
  std::vector<double> round_scales_;  // 10^decimals
};

/// Folds a clean record's observed values into the device's memory; an older
/// event never overwrites a newer value. Returns whether anything changed.
bool remember(DeviceMemory& memory, const DeviceMemory& observed);

/// "field:rule(from→to);..." for the clean record's `starling-changes` header.
std::string describe_changes(const std::vector<Change>& changes);

/// A duration as the YAML writes it (250ms, 30s, 5m, 2h, 1d).
std::string format_duration(int64_t ms);

}  // namespace starling::clean
