#include "services/cli/groups.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "services/common/kafka_properties.h"
#include "services/common/pipeline.h"
#include "services/common/time.h"

namespace starling::cli {
namespace {

using nlohmann::json;

// "4.2 s", "3 min 12 s", "2 h 5 min": how long ago a record was written.
std::string age(int64_t ts_ms, int64_t now) {
  const int64_t ms = std::max<int64_t>(0, now - ts_ms);
  if (ms < 60'000) return fmt::format("{:.1f} s", static_cast<double>(ms) / 1000);
  const int64_t s = ms / 1000;
  if (s < 3600) return fmt::format("{} min {} s", s / 60, s % 60);
  return fmt::format("{} h {} min", s / 3600, s % 3600 / 60);
}

std::string committed_text(int64_t c) { return c < 0 ? "none" : std::to_string(c); }

json to_json(const std::vector<StageLag>& stages, int64_t now) {
  json out = json::array();
  for (const auto& s : stages) {
    json parts = json::array();
    for (const auto& p : s.partitions) {
      parts.push_back({{"topic", p.tp.topic},
                       {"partition", p.tp.partition},
                       {"committed", p.committed},
                       {"log_start", p.log_start},
                       {"log_end", p.log_end},
                       {"lag", p.lag},
                       {"oldest_unprocessed_ms", p.oldest_unprocessed_ms ? json(*p.oldest_unprocessed_ms) : json()}});
    }
    out.push_back({{"pipeline", s.pipeline},
                   {"stage", s.stage},
                   {"group", s.group},
                   {"lag", s.lag},
                   {"oldest_unprocessed_ms", s.oldest_unprocessed_ms ? json(*s.oldest_unprocessed_ms) : json()},
                   {"oldest_unprocessed_age_ms",
                    s.oldest_unprocessed_ms ? json(std::max<int64_t>(0, now - *s.oldest_unprocessed_ms)) : json()},
                   {"partitions", std::move(parts)}});
  }
  return {{"groups", std::move(out)}};
}

void print_table(const std::vector<StageLag>& stages, int64_t now) {
  std::size_t group_w = 5;
  std::size_t topic_w = 5;
  for (const auto& s : stages) {
    group_w = std::max(group_w, s.group.size());
    for (const auto& p : s.partitions) topic_w = std::max(topic_w, p.tp.topic.size());
  }
  fmt::print("{:<6} {:<{}} {:<{}} {:>4} {:>10} {:>10} {:>8}  {}\n", "STAGE", "GROUP", group_w, "TOPIC", topic_w, "PART",
             "COMMITTED", "END", "LAG", "OLDEST UNPROCESSED");
  for (const auto& s : stages) {
    for (const auto& p : s.partitions) {
      fmt::print("{:<6} {:<{}} {:<{}} {:>4} {:>10} {:>10} {:>8}  {}\n", s.stage, s.group, group_w, p.tp.topic, topic_w,
                 p.tp.partition, committed_text(p.committed), p.log_end, p.lag,
                 p.oldest_unprocessed_ms ? age(*p.oldest_unprocessed_ms, now) + " ago" : "-");
    }
    fmt::print("{:<6} {:<{}} {:<{}} {:>4} {:>10} {:>10} {:>8}  {}\n\n", s.stage, s.group, group_w, "total", topic_w, "",
               "", "", s.lag, s.oldest_unprocessed_ms ? age(*s.oldest_unprocessed_ms, now) + " ago" : "-");
  }
}

}  // namespace

KafkaProperties cli_kafka_properties(const std::string& file, const std::vector<std::string>& flags) {
  auto props = user_kafka_properties(file, flags);
  if (!props) throw ConfigError(props.error().message);
  return std::move(*props);
}

int cmd_groups(const GroupsArgs& args, const std::vector<std::string>& default_files) {
  std::vector<std::string> names;
  for (const auto& p : args.pipelines.empty() ? default_files : args.pipelines) {
    // A YAML file gives its pipeline's name; anything else is a name.
    const bool file = p.ends_with(".yaml") || p.ends_with(".yml") || std::filesystem::is_regular_file(p);
    names.push_back(file ? load_pipeline(p).name : p);
  }
  if (names.empty()) {
    fmt::print(stderr,
               "error: no pipeline: pass --pipeline NAME (or a YAML file), or run from a folder with "
               "pipelines/*.yaml\n");
    return 2;
  }
  const auto props = cli_kafka_properties(args.kafka_properties_file, args.kafka_property_flags);
  const kafka::KafkaOptions options{args.kafka, "starling-groups", props.values, props.origins};
  auto stages = stage_lags(options, names);
  if (!stages) {
    fmt::print(stderr, "error: {}\n", stages.error().message);
    return 1;
  }
  const int64_t now = now_ms();
  if (args.as_json) {
    fmt::print("{}\n", to_json(*stages, now).dump(2));
  } else {
    print_table(*stages, now);
  }
  return 0;
}

}  // namespace starling::cli
