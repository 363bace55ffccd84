#include "services/cli/topics.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "broker-adapters/kafka/topics_admin.h"
#include "services/cli/groups.h"

namespace starling::cli {
namespace {

using nlohmann::json;

json partitions_json(const kafka::TopicInfo& t) {
  json parts = json::array();
  for (const auto& p : t.partitions) {
    parts.push_back({{"partition", p.partition},
                     {"leader", p.leader},
                     {"replicas", p.replicas},
                     {"isr", p.isr},
                     {"low", p.low},
                     {"high", p.high},
                     {"records", p.high - p.low}});
  }
  return parts;
}

int64_t log_end(const kafka::TopicInfo& t) {
  int64_t n = 0;
  for (const auto& p : t.partitions) n += p.high;
  return n;
}

int topics_list(const kafka::KafkaOptions& options, bool as_json) {
  auto topics = kafka::list_topics(options, true);
  if (!topics) {
    fmt::print(stderr, "error: {}\n", topics.error().message);
    return 1;
  }
  if (as_json) {
    json out = json::array();
    for (const auto& t : *topics) {
      out.push_back({{"name", t.name},
                     {"partitions", t.partitions.size()},
                     {"replication", t.replication()},
                     {"records", t.records()},
                     {"log_end", log_end(t)}});
    }
    fmt::print("{}\n", json{{"topics", std::move(out)}}.dump(2));
    return 0;
  }
  std::size_t name_w = 5;
  for (const auto& t : *topics) name_w = std::max(name_w, t.name.size());
  fmt::print("{:<{}} {:>10} {:>11} {:>10} {:>10}\n", "TOPIC", name_w, "PARTITIONS", "REPLICATION", "RECORDS",
             "LOG END");
  for (const auto& t : *topics) {
    fmt::print("{:<{}} {:>10} {:>11} {:>10} {:>10}\n", t.name, name_w, t.partitions.size(), t.replication(),
               t.records(), log_end(t));
  }
  fmt::print("\n{} topics\n", topics->size());
  return 0;
}

int topics_describe(const kafka::KafkaOptions& options, const std::string& name, bool as_json) {
  auto topic = kafka::describe_topic(options, name);
  if (!topic) {
    fmt::print(stderr, "error: {}\n", topic.error().message);
    return 1;
  }
  auto configs = kafka::topic_configs(options, name);
  if (!configs) {
    fmt::print(stderr, "error: {}\n", configs.error().message);
    return 1;
  }
  if (as_json) {
    json cfg = json::array();
    for (const auto& c : *configs) {
      cfg.push_back({{"name", c.name},
                     {"value", c.sensitive ? json() : json(c.value)},
                     {"source", c.source},
                     {"is_default", c.is_default},
                     {"read_only", c.read_only},
                     {"sensitive", c.sensitive}});
    }
    const json out = {{"name", topic->name},
                      {"replication", topic->replication()},
                      {"records", topic->records()},
                      {"partitions", partitions_json(*topic)},
                      {"configs", std::move(cfg)}};
    fmt::print("{}\n", out.dump(2));
    return 0;
  }
  fmt::print("topic        {}\npartitions   {}\nreplication  {}\nrecords      {}\n\n", topic->name,
             topic->partitions.size(), topic->replication(), topic->records());
  fmt::print("{:>9} {:>6} {:<10} {:<10} {:>10} {:>10} {:>10}\n", "PARTITION", "LEADER", "REPLICAS", "ISR", "LOW",
             "HIGH", "RECORDS");
  for (const auto& p : topic->partitions) {
    fmt::print("{:>9} {:>6} {:<10} {:<10} {:>10} {:>10} {:>10}\n", p.partition, p.leader,
               fmt::format("{}", fmt::join(p.replicas, ",")), fmt::format("{}", fmt::join(p.isr, ",")), p.low, p.high,
               p.high - p.low);
  }
  std::size_t name_w = 6;
  std::size_t value_w = 5;
  for (const auto& c : *configs) {
    name_w = std::max(name_w, c.name.size());
    value_w = std::max(value_w, c.value.size());
  }
  fmt::print("\n{:<{}} {:<{}} {}\n", "CONFIG", name_w, "VALUE", value_w, "SOURCE");
  for (const auto& c : *configs) {
    fmt::print("{:<{}} {:<{}} {}{}\n", c.name, name_w, c.sensitive ? "<sensitive>" : c.value, value_w, c.source,
               c.read_only ? " (read-only)" : "");
  }
  return 0;
}

int topics_create(const kafka::KafkaOptions& options, const TopicsArgs& a) {
  auto configs = parse_topic_configs(a.configs);
  if (!configs) {
    fmt::print(stderr, "error: {}\n", configs.error().message);
    return 2;
  }
  auto created = kafka::create_topic(options, {a.topic, a.partitions, a.replication, *configs});
  if (!created) {
    fmt::print(stderr, "error: {}\n", created.error().message);
    return created.error().code == Errc::kInvalidArgument ? 2 : 1;
  }
  if (!*created) {
    fmt::print(stderr, "error: topic {} already exists (nothing changed; `starling topics describe {}` shows it)\n",
               a.topic, a.topic);
    return 1;
  }
  if (a.as_json) {
    fmt::print(
        "{}\n",
        json{{"created", a.topic}, {"partitions", a.partitions}, {"replication", a.replication}, {"configs", *configs}}
            .dump(2));
  } else {
    fmt::print("created topic {}: {} partitions, replication {}{}\n", a.topic, a.partitions, a.replication,
               configs->empty() ? "" : fmt::format(", configs {}", fmt::join(a.configs, " ")));
  }
  return 0;
}

}  // namespace

Result<std::map<std::string, std::string>> parse_topic_configs(const std::vector<std::string>& configs) {
  std::map<std::string, std::string> out;
  for (const auto& c : configs) {
    const auto eq = c.find('=');
    if (eq == std::string::npos || eq == 0) {
      return fail(Errc::kInvalidArgument,
                  fmt::format("--config '{}': expected key=value, for example retention.ms=86400000", c));
    }
    if (!out.emplace(c.substr(0, eq), c.substr(eq + 1)).second) {
      return fail(Errc::kInvalidArgument, fmt::format("--config '{}': {} is given twice", c, c.substr(0, eq)));
    }
  }
  return out;
}

int cmd_topics(const TopicsArgs& args) {
  const auto props = cli_kafka_properties(args.kafka_properties_file, args.kafka_property_flags);
  const kafka::KafkaOptions options{args.kafka, "starling-topics", props.values, props.origins};
  if (args.command == "describe") return topics_describe(options, args.topic, args.as_json);
  if (args.command == "create") return topics_create(options, args);
  return topics_list(options, args.as_json);
}

}  // namespace starling::cli
