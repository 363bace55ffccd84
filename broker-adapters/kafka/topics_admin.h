#pragma once
// Topics as an operator sees them (`starling topics`): the cluster's topics
// with their partitions' leaders and watermarks, a topic's configs
// (DescribeConfigs), and creating one with configs. Read through the
// Metadata, ListOffsets and admin APIs; nothing here joins a group.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/error.h"

namespace starling::kafka {

struct PartitionInfo {
  int32_t partition = 0;
  int32_t leader = -1;  // broker id; -1: none
  std::vector<int32_t> replicas;
  std::vector<int32_t> isr;
  int64_t low = 0;   // the first offset still stored
  int64_t high = 0;  // the next offset to be written (log end)
};

struct TopicInfo {
  std::string name;
  std::vector<PartitionInfo> partitions;  // in partition order
  /// Records stored: the sum over partitions of high - low.
  int64_t records() const;
  /// The replication factor (replicas of partition 0; 0 without partitions).
  int replication() const;
};

struct TopicConfigEntry {
  std::string name;
  std::string value;   // "" when null or sensitive
  std::string source;  // librdkafka's name: DYNAMIC_TOPIC_CONFIG, DEFAULT_CONFIG, ...
  bool is_default = false;
  bool read_only = false;
  bool sensitive = false;
};

/// Every topic the cluster reports, sorted by name, with each partition's
/// watermarks when `watermarks` (one ListOffsets per partition).
Result<std::vector<TopicInfo>> list_topics(const KafkaOptions& options, bool watermarks,
                                           std::chrono::milliseconds timeout = std::chrono::seconds(10));

/// One topic with watermarks; Errc::kNotFound naming it when it does not
/// exist (never created by asking: all topics' metadata is read).
Result<TopicInfo> describe_topic(const KafkaOptions& options, const std::string& topic,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(10));

/// The topic's configs (DescribeConfigs), sorted by name.
Result<std::vector<TopicConfigEntry>> topic_configs(const KafkaOptions& options, const std::string& topic,
                                                    std::chrono::milliseconds timeout = std::chrono::seconds(10));

struct NewTopicSpec {
  std::string name;
  int partitions = 1;
  int replication = 1;
  std::map<std::string, std::string> configs;
};

/// Creates one topic. true: created; false: it exists already (nothing
/// changed). Errc::kInvalidArgument when the broker refused the request's
/// content (a config it does not know or a bad value, a bad partition count
/// or replication factor, a bad name), with the broker's message.
Result<bool> create_topic(const KafkaOptions& options, const NewTopicSpec& spec,
                          std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace starling::kafka
