#pragma once
// The rule engine: the pipeline's cleaning rules applied through Protobuf
// reflection. Each failed check yields a machine-readable Reason; each value a
// rule sets or changes yields a Change, so every difference between the raw
// and the clean record can be explained.

#include <google/protobuf/message.h>

#include <map>
#include <string>
#include <variant>
#include <vector>

#include "services/clean/rule_config.h"
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

/// A value as a rule read or wrote it. Numbers stay numbers (a float field's
/// as a float), in the envelope too (to_proto): formatting them was most of
/// what recording a change cost.
using FieldValue = std::variant<std::monostate, double, float, std::string>;

/// The value as field_text() writes it ("" for none): the shortest text that
/// reads back as the same number.
std::string to_text(const FieldValue& v);

/// One value a rule set or changed.
struct Change {
  enum class Kind { kFillLastKnown, kDefaultValue, kConvert, kRound };
  const FieldRule* rule = nullptr;  // the pipeline's: it outlives every outcome
  Kind kind = Kind::kDefaultValue;
  FieldValue from;  // none when the field was missing
  FieldValue to;
};

/// What a change calls its rule (Change.rule): "fill_last_known", "default",
/// "convert(mph->km/h)", "round(1)".
std::string change_label(const Change& c);

struct Outcome {
  std::vector<v1::Reason> reasons;  // empty: the record is clean
  std::vector<Change> changes;
  /// The record's own values (after convert and round) of fill_last_known
  /// fields, at its event time: what to remember when the record is clean.
  DeviceMemory observed;
};

class RuleEngine {
 public:
  /// Throws ConfigError when a rule has a problem (check_rule): at startup only.
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
  std::vector<CompiledRule> rules_;  // the pipeline's, in order
  bool uses_memory_ = false;
  std::vector<double> round_scales_;  // per rule, 10^decimals
};

/// Folds a clean record's observed values into the device's memory; an older
/// event never overwrites a newer value. Returns whether anything changed.
bool remember(DeviceMemory& memory, const DeviceMemory& observed);

/// The changes as the clean record's envelope carries them
/// (Envelope.changes), replacing what `out` held. Numbers stay numbers: a
/// change is formatted only when someone reads it.
void to_proto(const std::vector<Change>& changes, google::protobuf::RepeatedPtrField<v1::Change>& out);

/// "field:rule(from->to);..." for logs and messages, appended to `out`.
void append_changes(std::string& out, const std::vector<Change>& changes);
inline std::string describe_changes(const std::vector<Change>& changes) {
  std::string out;
  append_changes(out, changes);
  return out;
}

/// A duration as the YAML writes it (250ms, 30s, 5m, 2h, 1d).
std::string format_duration(int64_t ms);

}  // namespace starling::clean
