#include "services/broker/topic_config.h"

#include <fmt/format.h>

#include <charconv>
#include <limits>
#include <set>

#include "services/common/text.h"

namespace starling::broker {

namespace {

// A byte count in [0, INT32_MAX], written as plain decimal digits (Kafka's
// config type int, at least 0).
std::optional<int32_t> parse_bytes(const std::string& s) {
  int32_t v = 0;
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, v);
  if (s.empty() || ec != std::errc() || ptr != end || v < 0) return std::nullopt;
  return v;
}

Result<void> unknown(const std::string& name) {
  return fail(ErrorCode::kInvalidConfig,
              fmt::format("unknown topic config '{}' (this broker knows: {})", excerpt(name), kKnownTopicConfigs));
}

bool known(const std::string& name) { return name == "max.message.bytes"; }

Result<void> apply(TopicConfig& config, const std::string& name, const std::string& value) {
  if (name == "max.message.bytes") {
    auto v = parse_bytes(value);
    if (!v) {
      return fail(ErrorCode::kInvalidConfig, fmt::format("max.message.bytes must be a byte count in [0, {}], got '{}'",
                                                         std::numeric_limits<int32_t>::max(), excerpt(value)));
    }
    config.max_message_bytes = v;
  } else {
    return unknown(name);
  }
  config.values[name] = value;
  return {};
}

}  // namespace

Result<TopicConfig> parse_topic_config(const std::vector<std::pair<std::string, std::optional<std::string>>>& configs) {
  TopicConfig out;
  std::set<std::string> seen;
  for (const auto& [name, value] : configs) {
    if (!seen.insert(name).second) {
      return fail(ErrorCode::kInvalidConfig, fmt::format("topic config '{}' is given twice", excerpt(name)));
    }
    if (!known(name)) return std::unexpected(unknown(name).error());
    if (!value) continue;  // null: the default, nothing to set
    if (auto r = apply(out, name, *value); !r) return std::unexpected(r.error());
  }
  return out;
}

Result<TopicConfig> parse_topic_config(const std::map<std::string, std::string>& values) {
  TopicConfig out;
  for (const auto& [name, value] : values) {
    if (auto r = apply(out, name, value); !r) return std::unexpected(r.error());
  }
  return out;
}

}  // namespace starling::broker
