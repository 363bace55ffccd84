#pragma once
// A pipeline definition (pipelines/<name>.yaml): its Protobuf type, topics,
// cleaning rules, sink mapping and saga deadlines. Fields are named, and found
// through Protobuf reflection, so a new pipeline needs no C++.

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <google/protobuf/descriptor.h>

namespace re2 {
class RE2;
}

namespace starling {

/// Thrown by load_pipeline. Each problem is "file:line:column: path: problem";
/// what() lists every problem found, one per line.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(const std::string& problem) : ConfigError(std::vector<std::string>{problem}) {}
  explicit ConfigError(std::vector<std::string> problems);
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  std::vector<std::string> problems_;
};

struct RangeRule {
  std::optional<double> min;
  std::optional<double> max;
  bool min_inclusive = true;
  bool max_inclusive = true;
};

/// A linear unit conversion: to = from * factor + offset (°F → °C has an offset).
struct UnitConversion {
  std::string from;
  std::string to;
  double factor = 1;
  double offset = 0;
};

/// Timestamp sanity, relative to the envelope's ingest time.
struct TimestampRule {
  std::optional<int64_t> max_future_ms;  // clock skew a device may have
  std::optional<int64_t> max_late_ms;    // how old an event may arrive
};

/// Everything the YAML says about one field. The clean stage applies the
/// parts in a fixed order (see services/clean/README.md): fill (last known,
/// then default), convert, round, then the checks required, range, allowed,
/// regex, timestamp.
struct FieldRule {
  std::string field;
  const google::protobuf::FieldDescriptor* descriptor = nullptr;
  bool required = false;
  std::optional<RangeRule> range;
  std::vector<std::string> allowed;         // enum value names, strings or integers, as text
  std::string regex_text;                   // empty: none; must match the whole value
  std::shared_ptr<const re2::RE2> regex;    // compiled regex_text (RE2 syntax)
  std::optional<UnitConversion> convert;
  std::optional<int> round;                 // decimals
  std::optional<std::string> default_text;  // the default value, valid for the field's type
  std::optional<int64_t> fill_max_age_ms;   // fill from the device's last known value this young
  std::optional<TimestampRule> timestamp;
  int line = 0;  // where the rule stands in the YAML, for messages
};

/// Converting between units, by name ("mph", "km/h", "degF", "°C", ...);
/// nullopt when either is unknown or they measure different things.
std::optional<UnitConversion> unit_conversion(const std::string& from, const std::string& to);
/// The unit names unit_conversion knows, for error messages.
std::string known_units();

struct Column {
  std::string name;
  std::string field;
  const google::protobuf::FieldDescriptor* descriptor = nullptr;
};

struct PipelineConfig {
  std::string name;
  std::string file;
  std::string message_type;
  uint32_t schema_version = 1;
  const google::protobuf::Descriptor* descriptor = nullptr;

  // Fields of the message with a special meaning; empty when not used.
  const google::protobuf::FieldDescriptor* event_id_field = nullptr;
  const google::protobuf::FieldDescriptor* device_id_field = nullptr;
  const google::protobuf::FieldDescriptor* event_time_field = nullptr;

  int partitions = 3;
  std::vector<FieldRule> rules;
  /// Drop an event whose event id was seen this recently (by ingest time) on
  /// the same device's partition; 0: no dedupe.
  int64_t dedupe_window_ms = 0;

  std::string sink = "sqlite";
  std::string table;
  std::vector<Column> columns;

  int64_t stall_after_ms = 60'000;
  int64_t fail_after_ms = 300'000;

  std::string raw_topic() const { return name + ".raw"; }
  std::string clean_topic() const { return name + ".clean"; }
  std::string rejected_topic() const { return name + ".rejected"; }
  std::string dlq_topic() const { return name + ".dlq"; }  // rows the sink refused
  // What `starling replay` re-publishes, consumed beside the live topic:
  // a replay of the clean stage's input, and one of the load stage's.
  std::string raw_replay_topic() const { return name + ".raw.replay"; }
  std::string clean_replay_topic() const { return name + ".clean.replay"; }
};

/// Topics every deployment has, whatever its pipelines.
inline constexpr const char* kSagaTopic = "starling.saga";
inline constexpr const char* kOutcomeTopic = "starling.saga.outcomes";

/// Reads and validates a pipeline file. Throws ConfigError naming the line.
PipelineConfig load_pipeline(const std::string& path);

/// Parses YAML text; `origin` names it in error messages.
PipelineConfig parse_pipeline(const std::string& yaml, const std::string& origin);

}  // namespace starling
