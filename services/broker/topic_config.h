#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "services/broker/error.h"

namespace starling::broker {

/// The per-topic configs this broker knows. CreateTopics sets them,
/// AlterConfigs and IncrementalAlterConfigs change them, all through
/// parse_topic_config; the metadata store keeps `values` with the topic and
/// parses them again at startup. A config the broker would ignore is refused,
/// never stored. nullopt: the broker's flag, as it is at the time of use.
struct TopicConfig {
  /// Kafka's max.message.bytes: the largest record batch (whole, as stored,
  /// after compression) a Produce may append to this topic (else --message-max-bytes).
  std::optional<int32_t> max_message_bytes;
  /// retention.ms / retention.bytes (-1: unlimited), else --retention-ms / --retention-bytes.
  std::optional<int64_t> retention_ms;
  std::optional<int64_t> retention_bytes;
  /// segment.bytes: the roll size of the topic's logs, else --segment-bytes.
  std::optional<int32_t> segment_bytes;
  /// The configs that were set, by name, as given (the durable form).
  std::map<std::string, std::string> values;
};

/// Config names this broker knows, for error messages.
inline constexpr const char* kKnownTopicConfigs =
    "max.message.bytes, retention.bytes, retention.ms, segment.bytes (cleanup.policy is read-only)";

using ConfigValues = std::vector<std::pair<std::string, std::optional<std::string>>>;

/// Checks names and values as CreateTopics and AlterConfigs give them (a null
/// value means the default: nothing is set). An unknown name, a name given
/// twice or a bad value is INVALID_CONFIG with a message naming it.
Result<TopicConfig> parse_topic_config(const ConfigValues& configs);

/// The same for configs read back from the metadata store.
Result<TopicConfig> parse_topic_config(const std::map<std::string, std::string>& values);

/// IncrementalAlterConfigs' operations.
enum class ConfigOp : int8_t { kSet = 0, kDelete = 1, kAppend = 2, kSubtract = 3 };
struct ConfigChange {
  std::string name;
  int8_t op = 0;
  std::optional<std::string> value;
};

/// `current` with SET and DELETE applied, checked by parse_topic_config as a
/// whole. APPEND and SUBTRACT (list configs only; none of these is one), a
/// SET without a value, an unknown name or one given twice are
/// INVALID_CONFIG naming it; an operation Kafka does not define is INVALID_REQUEST.
Result<TopicConfig> change_topic_config(const TopicConfig& current, const std::vector<ConfigChange>& changes);

/// Kafka's config sources and types, as DescribeConfigs reports them.
enum class ConfigSource : int8_t { kDynamicTopic = 1, kStaticBroker = 4, kDefault = 5 };
enum class ConfigType : int8_t { kString = 2, kInt = 3, kLong = 5 };

struct ConfigSynonym {
  std::string name;
  std::string value;
  ConfigSource source = ConfigSource::kDefault;
};

/// One config as DescribeConfigs lists it.
struct ConfigEntry {
  std::string name;
  std::string value;
  bool read_only = true;
  ConfigSource source = ConfigSource::kDefault;
  ConfigType type = ConfigType::kString;
  /// What sets it, the highest precedence first (the topic's own, then the broker's).
  std::vector<ConfigSynonym> synonyms;
};

/// Every topic config with its value for a topic of `config`, sorted by
/// name. `broker` holds the broker configs (ConfigEntry by broker name) the
/// topic configs fall back to.
std::vector<ConfigEntry> describe_topic_config(const TopicConfig& config,
                                               const std::map<std::string, ConfigEntry>& broker);

}  // namespace starling::broker
