#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "services/broker/error.h"

namespace starling::broker {

/// The per-topic configs this broker knows. CreateTopics sets them; the
/// metadata store keeps `values` with the topic and parses them again at
/// startup. A config the broker would ignore is refused, never stored.
struct TopicConfig {
  /// Kafka's max.message.bytes: the largest record batch (whole, as stored,
  /// after compression) a Produce may append to this topic. nullopt: the
  /// broker's --message-max-bytes, as it is at the time of the Produce.
  std::optional<int32_t> max_message_bytes;
  /// The configs that were set, by name, as given (the durable form).
  std::map<std::string, std::string> values;
};

/// Config names this broker knows, for error messages.
inline constexpr const char* kKnownTopicConfigs = "max.message.bytes";

/// Checks names and values as a CreateTopics request gives them (a null value
/// means the default: nothing is set). An unknown name, a name given twice or a
/// bad value is INVALID_CONFIG with a message naming it.
Result<TopicConfig> parse_topic_config(const std::vector<std::pair<std::string, std::optional<std::string>>>& configs);

/// The same for configs read back from the metadata store.
Result<TopicConfig> parse_topic_config(const std::map<std::string, std::string>& values);

}  // namespace starling::broker
