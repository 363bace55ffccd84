#pragma once
// `starling topics list|describe|create`: the topics of the Kafka a stack
// runs on, as an operator needs them (broker-adapters/kafka/topics_admin.h).

#include <map>
#include <string>
#include <vector>

#include "services/common/error.h"

namespace starling::cli {

struct TopicsArgs {
  std::string command;  // list, describe, create
  std::string kafka = "127.0.0.1:9092";
  std::string topic;
  int partitions = 1;
  int replication = 1;
  std::vector<std::string> configs;  // --config k=v, as given
  bool as_json = false;
  std::vector<std::string> kafka_property_flags;
  std::string kafka_properties_file;
};

/// --config values as a map; an error names the argument that is not
/// key=value (or gives a key twice).
Result<std::map<std::string, std::string>> parse_topic_configs(const std::vector<std::string>& configs);

/// 0; 1 when Kafka could not be read, the topic does not exist (describe) or
/// already exists (create); 2 for a bad --config or one the broker refused.
int cmd_topics(const TopicsArgs& args);

}  // namespace starling::cli
