#pragma once
// A pipeline definition (pipelines/<name>.yaml): its Protobuf type, topics,
// cleaning rules, sink mapping and saga deadlines. Fields are named, and found
// through Protobuf reflection, so a new pipeline needs no C++.

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <google/protobuf/descriptor.h>

namespace starling {

/// Thrown by load_pipeline; what() is "file:line:column: path: problem".
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct RangeRule {
  std::optional<double> min;
  std::optional<double> max;
  bool min_inclusive = true;
  bool max_inclusive = true;
};

struct FieldRule {
  std::string field;
  const google::protobuf::FieldDescriptor* descriptor = nullptr;
  bool required = false;
  std::optional<RangeRule> range;
  int line = 0;  // where the rule stands in the YAML, for messages
};

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

  std::string sink = "sqlite";
  std::string table;
  std::vector<Column> columns;

  int64_t stall_after_ms = 60'000;
  int64_t fail_after_ms = 300'000;

  std::string raw_topic() const { return name + ".raw"; }
  std::string clean_topic() const { return name + ".clean"; }
  std::string rejected_topic() const { return name + ".rejected"; }
  std::string dlq_topic() const { return name + ".dlq"; }  // rows the sink refused
};

/// Topics every deployment has, whatever its pipelines.
inline constexpr const char* kSagaTopic = "starling.saga";
inline constexpr const char* kOutcomeTopic = "starling.saga.outcomes";

/// Reads and validates a pipeline file. Throws ConfigError naming the line.
PipelineConfig load_pipeline(const std::string& path);

/// Parses YAML text; `origin` names it in error messages.
PipelineConfig parse_pipeline(const std::string& yaml, const std::string& origin);

}  // namespace starling
