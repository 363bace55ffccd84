#pragma once
// `starling groups`: how far each stage's consumer group is behind, read from
// Kafka as any lag tool reads it (the committed offsets every stage also
// commits to its group, services' broker-adapters/kafka README).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "broker-adapters/kafka/kafka.h"
#include "broker-adapters/kafka/stage_lag.h"
#include "services/common/error.h"
#include "services/common/kafka_properties.h"

namespace starling::cli {

using kafka::stage_lags;
using kafka::StageLag;

struct GroupsArgs {
  std::string kafka = "127.0.0.1:9092";
  std::vector<std::string> pipelines;  // names or YAML files; empty: pipelines/*.yaml
  bool as_json = false;
  std::vector<std::string> kafka_property_flags;
  std::string kafka_properties_file;
};

/// The user's librdkafka properties for a command; a bad one throws
/// ConfigError (run() prints it and exits 2).
KafkaProperties cli_kafka_properties(const std::string& file, const std::vector<std::string>& flags);

/// Prints the table (or JSON); 0, or 1 when Kafka could not be read.
int cmd_groups(const GroupsArgs& args, const std::vector<std::string>& default_files);

}  // namespace starling::cli
