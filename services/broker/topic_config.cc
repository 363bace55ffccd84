#include "services/broker/topic_config.h"

#include <fmt/format.h>

#include <charconv>
#include <limits>
#include <set>

#include "services/common/text.h"

namespace starling::broker {

namespace {

/// What the broker knows of a topic config: its type, the broker config it
/// falls back to, and the range of its values.
struct Spec {
  const char* name;
  const char* broker_name;
  ConfigType type;
  bool read_only;
  int64_t min;
  int64_t max;
};

// Sorted by name. The ranges are Kafka's (segment.bytes at least the 14 bytes
// of a legacy record's overhead, as Kafka 3.x accepts).
constexpr Spec kSpecs[] = {
    {"cleanup.policy", "log.cleanup.policy", ConfigType::kString, true, 0, 0},
    {"max.message.bytes", "message.max.bytes", ConfigType::kInt, false, 0, std::numeric_limits<int32_t>::max()},
    {"retention.bytes", "log.retention.bytes", ConfigType::kLong, false, -1, std::numeric_limits<int64_t>::max()},
    {"retention.ms", "log.retention.ms", ConfigType::kLong, false, -1, std::numeric_limits<int64_t>::max()},
    {"segment.bytes", "log.segment.bytes", ConfigType::kInt, false, 14, std::numeric_limits<int32_t>::max()},
};

const Spec* find_spec(const std::string& name) {
  for (const auto& s : kSpecs) {
    if (name == s.name) return &s;
  }
  return nullptr;
}

// A whole number in [min, max], written as plain decimal digits (and a sign).
std::optional<int64_t> parse_number(const std::string& s, int64_t min, int64_t max) {
  int64_t v = 0;
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, v);
  if (s.empty() || ec != std::errc() || ptr != end || v < min || v > max) return std::nullopt;
  return v;
}

Result<void> unknown(const std::string& name) {
  return fail(ErrorCode::kInvalidConfig,
              fmt::format("unknown topic config '{}' (this broker knows: {})", excerpt(name), kKnownTopicConfigs));
}

// Checks the name (known, not read-only) of a config being set.
Result<const Spec*> settable(const std::string& name) {
  const Spec* spec = find_spec(name);
  if (spec == nullptr) return std::unexpected(unknown(name).error());
  if (spec->read_only) {
    return fail(ErrorCode::kInvalidConfig,
                fmt::format("topic config '{}' is read-only: this broker only deletes old segments", name));
  }
  return spec;
}

Result<void> apply(TopicConfig& config, const std::string& name, const std::string& value) {
  auto spec = settable(name);
  if (!spec) return std::unexpected(spec.error());
  auto v = parse_number(value, (*spec)->min, (*spec)->max);
  if (!v) {
    return fail(ErrorCode::kInvalidConfig, fmt::format("{} must be a whole number in [{}, {}], got '{}'", name,
                                                       (*spec)->min, (*spec)->max, excerpt(value)));
  }
  if (name == "max.message.bytes") {
    config.max_message_bytes = static_cast<int32_t>(*v);
  } else if (name == "retention.ms") {
    config.retention_ms = v;
  } else if (name == "retention.bytes") {
    config.retention_bytes = v;
  } else if (name == "segment.bytes") {
    config.segment_bytes = static_cast<int32_t>(*v);
  }
  config.values[name] = value;
  return {};
}

}  // namespace

Result<TopicConfig> parse_topic_config(const ConfigValues& configs) {
  TopicConfig out;
  std::set<std::string> seen;
  for (const auto& [name, value] : configs) {
    if (!seen.insert(name).second) {
      return fail(ErrorCode::kInvalidConfig, fmt::format("topic config '{}' is given twice", excerpt(name)));
    }
    if (auto spec = settable(name); !spec) return std::unexpected(spec.error());
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

Result<TopicConfig> change_topic_config(const TopicConfig& current, const std::vector<ConfigChange>& changes) {
  std::map<std::string, std::string> values = current.values;
  std::set<std::string> seen;
  for (const auto& c : changes) {
    if (!seen.insert(c.name).second) {
      return fail(ErrorCode::kInvalidConfig, fmt::format("topic config '{}' is given twice", excerpt(c.name)));
    }
    if (auto spec = settable(c.name); !spec) return std::unexpected(spec.error());
    switch (static_cast<ConfigOp>(c.op)) {
      case ConfigOp::kSet:
        if (!c.value) return fail(ErrorCode::kInvalidConfig, fmt::format("SET of '{}' has no value", c.name));
        values[c.name] = *c.value;
        break;
      case ConfigOp::kDelete:
        values.erase(c.name);
        break;
      case ConfigOp::kAppend:
      case ConfigOp::kSubtract:
        return fail(ErrorCode::kInvalidConfig,
                    fmt::format("APPEND and SUBTRACT apply to list configs; '{}' is not one", c.name));
      default:
        return fail(ErrorCode::kInvalidRequest, fmt::format("unknown config operation {} for '{}'", c.op, c.name));
    }
  }
  ConfigValues all(values.begin(), values.end());
  return parse_topic_config(all);
}

std::vector<ConfigEntry> describe_topic_config(const TopicConfig& config,
                                               const std::map<std::string, ConfigEntry>& broker) {
  std::vector<ConfigEntry> out;
  for (const auto& spec : kSpecs) {
    ConfigEntry e;
    e.name = spec.name;
    e.read_only = spec.read_only;
    e.type = spec.type;
    if (auto set = config.values.find(spec.name); set != config.values.end()) {
      e.value = set->second;
      e.source = ConfigSource::kDynamicTopic;
      e.synonyms.push_back({e.name, e.value, e.source});
    }
    if (auto b = broker.find(spec.broker_name); b != broker.end()) {
      if (e.synonyms.empty()) {
        e.value = b->second.value;
        e.source = b->second.source;
      }
      e.synonyms.push_back({b->first, b->second.value, b->second.source});
    }
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace starling::broker
