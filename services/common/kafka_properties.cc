#include "services/common/kafka_properties.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <fstream>

#include "services/common/text.h"

namespace starling {
namespace {

constexpr std::string_view kEnvPrefix = "STARLING_KAFKA_";

// Set by Starling itself: each one holds up a guarantee (README of
// broker-adapters/kafka) or has its own flag.
struct Reserved {
  std::string_view key;
  std::string_view why;
};
constexpr std::array kReserved{
    Reserved{"bootstrap.servers", "use --kafka (STARLING_KAFKA_BOOTSTRAP)"},
    Reserved{"metadata.broker.list", "use --kafka (STARLING_KAFKA_BOOTSTRAP)"},
    Reserved{"group.id", "each stage's consumer group is its own (starling groups lists them)"},
    Reserved{"acks", "every producer writes with acks=all: a 202 means the event is on every in-sync replica"},
    Reserved{"request.required.acks",
             "every producer writes with acks=all: a 202 means the event is on every in-sync replica"},
    Reserved{"enable.idempotence", "a retried send must never duplicate an event"},
    Reserved{"enable.auto.commit", "a stage stores its offsets with its effects and commits them to the group itself"},
    Reserved{"enable.auto.offset.store",
             "a stage stores its offsets with its effects and commits them to the group itself"},
    Reserved{"auto.offset.reset", "a partition a stage never stored starts at the beginning, so nothing is skipped"},
    Reserved{"partition.assignment.strategy", "the stages settle their work in eager rebalance callbacks"},
};

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r");
  return std::string(s.substr(b, e - b + 1));
}

Status add(KafkaProperties& out, std::string key, std::string value, const std::string& origin) {
  if (key.empty()) return fail(Errc::kInvalidArgument, fmt::format("{}: expected key=value, the key is empty", origin));
  for (const auto& r : kReserved) {
    if (key == r.key) {
      return fail(Errc::kInvalidArgument,
                  fmt::format("{}: {} is set by Starling itself and cannot be changed ({})", origin, key, r.why));
    }
  }
  out.origins[key] = origin;
  out.values[std::move(key)] = std::move(value);
  return {};
}

Status add_line(KafkaProperties& out, std::string_view line, const std::string& origin) {
  const auto eq = line.find('=');
  if (eq == std::string_view::npos) {
    return fail(Errc::kInvalidArgument,
                fmt::format("{}: expected key=value, got '{}'", origin, excerpt(trim(line), 40)));
  }
  return add(out, trim(line.substr(0, eq)), trim(line.substr(eq + 1)), origin);
}

}  // namespace

void add_kafka_property_flags(CLI::App& app, std::vector<std::string>& flags, std::string& file) {
  app.add_option("--kafka-property", flags,
                 "A librdkafka property key=value for every Kafka client (repeatable; e.g. "
                 "security.protocol=SASL_SSL, sasl.mechanism=SCRAM-SHA-512, ssl.ca.location=FILE). Also "
                 "STARLING_KAFKA_<KEY> variables (sasl.mechanism: STARLING_KAFKA_SASL_MECHANISM). Keep secrets "
                 "in the file or the environment: flags show in ps");
  app.add_option("--kafka-properties-file", file,
                 "A file of librdkafka properties, key=value per line ('#' comments); the environment and "
                 "--kafka-property override it")
      ->envname("STARLING_KAFKA_PROPERTIES_FILE");
}

std::string kafka_property_env_name(std::string_view key) {
  std::string var(kEnvPrefix);
  for (const char c : key) var += c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return var;
}

std::map<std::string, std::string> kafka_properties_from_env(char** envp) {
  std::map<std::string, std::string> out;
  for (char** e = envp; e != nullptr && *e != nullptr; ++e) {
    const std::string_view kv(*e);
    if (!kv.starts_with(kEnvPrefix)) continue;
    const auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    const auto name = kv.substr(kEnvPrefix.size(), eq - kEnvPrefix.size());
    if (name == "BOOTSTRAP" || name == "PROPERTIES_FILE" || name.empty()) continue;
    std::string key;
    for (const char c : name) key += c == '_' ? '.' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out[key] = std::string(kv.substr(eq + 1));
  }
  return out;
}

Result<KafkaProperties> collect_kafka_properties(const std::string& file, const std::map<std::string, std::string>& env,
                                                 const std::vector<std::string>& flags) {
  KafkaProperties out;
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) return fail(Errc::kInvalidArgument, fmt::format("--kafka-properties-file {}: cannot be read", file));
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      const auto t = trim(line);
      if (t.empty() || t[0] == '#' || t[0] == '!') continue;
      if (auto st = add_line(out, t, fmt::format("{}:{}", file, n)); !st) return std::unexpected(st.error());
    }
  }
  for (const auto& [k, v] : env) {
    if (auto st = add(out, k, v, kafka_property_env_name(k)); !st) return std::unexpected(st.error());
  }
  for (const auto& f : flags) {
    if (auto st = add_line(out, f, "--kafka-property"); !st) return std::unexpected(st.error());
  }
  return out;
}

Result<KafkaProperties> user_kafka_properties(const std::string& file, const std::vector<std::string>& flags) {
  return collect_kafka_properties(file, kafka_properties_from_env(::environ), flags);
}

bool secret_kafka_property(std::string_view key) {
  std::string k(key);
  std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const std::string_view word :
       {"password", "secret", "token", "key.pem", "jaas", "credential", "oauthbearer.config"}) {
    if (k.find(word) != std::string::npos) return true;
  }
  return false;
}

std::string shown_kafka_value(std::string_view key, std::string_view value) {
  return secret_kafka_property(key) ? "<redacted>" : excerpt(value, 200);
}

}  // namespace starling
