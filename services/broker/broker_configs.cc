// Broker handlers of the config APIs: DescribeConfigs, AlterConfigs, IncrementalAlterConfigs.
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "services/broker/broker.h"
#include "services/broker/response.h"
#include "services/common/text.h"

namespace starling::broker {

namespace {

constexpr auto kTopicResource = static_cast<int8_t>(ResourceType::kTopic);
constexpr auto kBrokerResource = static_cast<int8_t>(ResourceType::kBroker);

Error unsupported_resource(int8_t type) {
  return {ErrorCode::kInvalidRequest,
          fmt::format("resource type {} is not supported (topics, 2, and the broker, 4, are)", type)};
}

}  // namespace

std::map<std::string, ConfigEntry> Broker::broker_configs() const {
  // A value other than the built-in default was given by a flag.
  const BrokerConfig defaults;
  std::map<std::string, ConfigEntry> out;
  auto add = [&](const char* name, const auto& value, const auto& default_value, ConfigType type) {
    ConfigEntry e;
    e.name = name;
    e.value = fmt::format("{}", value);
    e.read_only = true;  // flags: this broker has no dynamic broker configs
    e.source = value == default_value ? ConfigSource::kDefault : ConfigSource::kStaticBroker;
    e.type = type;
    e.synonyms.push_back({e.name, e.value, e.source});
    out.emplace(name, std::move(e));
  };
  add("message.max.bytes", config_.message_max_bytes, defaults.message_max_bytes, ConfigType::kInt);
  add("log.retention.ms", config_.log.retention_ms, defaults.log.retention_ms, ConfigType::kLong);
  add("log.retention.bytes", config_.log.retention_bytes, defaults.log.retention_bytes, ConfigType::kLong);
  add("log.segment.bytes", config_.log.segment_bytes, defaults.log.segment_bytes, ConfigType::kInt);
  add("log.cleanup.policy", std::string("delete"), std::string("delete"), ConfigType::kString);
  add("group.initial.rebalance.delay.ms", config_.groups.initial_rebalance_delay.count(),
      defaults.groups.initial_rebalance_delay.count(), ConfigType::kInt);
  return out;
}

Reply Broker::handle_describe_configs(const RequestHeader& h, const DescribeConfigsRequest& req) {
  const int16_t v = h.api_version;
  const auto broker = broker_configs();
  Response resp(h);
  auto& w = resp.w;
  w.i32(0);  // throttle_time_ms
  w.array_len(req.resources.size());
  for (const auto& res : req.resources) {
    Result<std::vector<ConfigEntry>> entries = std::vector<ConfigEntry>{};
    if (res.name_count > CreateTopicsRequest::kMaxKeptConfigs) {
      entries = fail(ErrorCode::kInvalidRequest, fmt::format("{} config names given, at most {}", res.name_count,
                                                             CreateTopicsRequest::kMaxKeptConfigs));
    } else if (res.type == kTopicResource) {
      auto it = topics_.find(res.name);
      if (it == topics_.end()) {
        entries = fail(ErrorCode::kUnknownTopicOrPartition, fmt::format("unknown topic '{}'", excerpt(res.name)));
      } else {
        entries = describe_topic_config(it->second.config, broker);
      }
    } else if (res.type == kBrokerResource) {
      if (res.name.empty() || res.name == std::to_string(config_.node_id)) {
        for (const auto& [name, e] : broker) entries->push_back(e);
      } else {
        entries = fail(ErrorCode::kInvalidRequest,
                       fmt::format("broker '{}' is not this node ({})", excerpt(res.name), config_.node_id));
      }
    } else {
      entries = std::unexpected(unsupported_resource(res.type));
    }
    if (entries && !res.all) {
      std::erase_if(*entries, [&](const ConfigEntry& e) {
        return std::find(res.names.begin(), res.names.end(), e.name) == res.names.end();
      });
    }
    w.i16(code(entries ? ErrorCode::kNone : entries.error().code));
    w.nullable_string(entries ? std::nullopt : std::optional<std::string>(entries.error().message));
    w.i8(res.type);
    w.string(res.name);
    const std::vector<ConfigEntry> none;
    const auto& list = entries ? *entries : none;
    w.array_len(list.size());
    for (const auto& e : list) {
      w.string(e.name);
      w.nullable_string(e.value);
      w.boolean(e.read_only);
      if (v == 0) {
        w.boolean(e.source == ConfigSource::kDefault ||
                  (res.type == kTopicResource && e.source != ConfigSource::kDynamicTopic));  // is_default
      } else {
        w.i8(static_cast<int8_t>(e.source));
      }
      w.boolean(false);  // is_sensitive: none of these is
      if (v >= 1) {
        const size_t synonyms = req.include_synonyms ? e.synonyms.size() : 0;
        w.array_len(synonyms);
        for (size_t i = 0; i < synonyms; ++i) {
          w.string(e.synonyms[i].name);
          w.nullable_string(e.synonyms[i].value);
          w.i8(static_cast<int8_t>(e.synonyms[i].source));
        }
      }
      if (v >= 3) {
        w.i8(static_cast<int8_t>(e.type));
        w.nullable_string(std::nullopt);  // documentation: see README.md
      }
    }
  }
  return resp.done();
}

Result<void> Broker::alter_resource(const AlterConfigsRequest::Resource& res, bool incremental, bool validate_only) {
  if (res.type == kBrokerResource) {
    return fail(ErrorCode::kInvalidConfig, "broker configs are command-line flags of starling-broker, not alterable");
  }
  if (res.type != kTopicResource) return std::unexpected(unsupported_resource(res.type));
  auto it = topics_.find(res.name);
  if (it == topics_.end()) {
    return fail(ErrorCode::kUnknownTopicOrPartition, fmt::format("unknown topic '{}'", excerpt(res.name)));
  }
  if (res.config_count > CreateTopicsRequest::kMaxKeptConfigs) {
    return fail(ErrorCode::kInvalidConfig,
                fmt::format("{} configs given, at most {}", res.config_count, CreateTopicsRequest::kMaxKeptConfigs));
  }
  // The same checks as CreateTopics' configs (parse_topic_config), of the
  // whole set the topic would then have.
  Result<TopicConfig> next;
  if (incremental) {
    std::vector<ConfigChange> changes;
    changes.reserve(res.configs.size());
    for (const auto& c : res.configs) changes.push_back({c.name, c.op, c.value});
    next = change_topic_config(it->second.config, changes);
  } else {
    ConfigValues values;
    for (const auto& c : res.configs) values.emplace_back(c.name, c.value);
    next = parse_topic_config(values);
  }
  if (!next) return std::unexpected(next.error());
  if (validate_only) return {};
  return set_topic_config(res.name, std::move(*next));
}

namespace {

// AlterConfigs v0-2 and IncrementalAlterConfigs v0-1 answer alike (v2 and v1 flexible).
template <class Alter>
Reply alter_response(const RequestHeader& h, const AlterConfigsRequest& req, Alter&& alter) {
  // A resource named twice is refused both times, as in Kafka.
  std::map<std::pair<int8_t, std::string>, int> named;
  for (const auto& res : req.resources) ++named[{res.type, res.name}];
  Response resp(h);
  auto& w = resp.w;
  w.i32(0);  // throttle_time_ms
  w.array_len(req.resources.size());
  for (const auto& res : req.resources) {
    Result<void> r =
        named[{res.type, res.name}] > 1
            ? fail(ErrorCode::kInvalidRequest, fmt::format("resource '{}' is named twice", excerpt(res.name)))
            : alter(res);
    w.i16(code(r ? ErrorCode::kNone : r.error().code));
    w.nullable_string(r ? std::nullopt : std::optional<std::string>(r.error().message));
    w.i8(res.type);
    w.string(res.name);
    w.tags();
  }
  w.tags();
  return resp.done();
}

}  // namespace

Reply Broker::handle_alter_configs(const RequestHeader& h, const AlterConfigsRequest& req) {
  return alter_response(h, req, [&](const auto& res) { return alter_resource(res, false, req.validate_only); });
}

Reply Broker::handle_incremental_alter_configs(const RequestHeader& h, const AlterConfigsRequest& req) {
  return alter_response(h, req, [&](const auto& res) { return alter_resource(res, true, req.validate_only); });
}

}  // namespace starling::broker
