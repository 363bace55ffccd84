#pragma once
// librdkafka properties a user passes to every service and to the CLI: SASL,
// TLS and mTLS to a secured Kafka, client tuning. Three sources, each later one
// overriding the earlier: a properties file (--kafka-properties-file),
// STARLING_KAFKA_* environment variables, and --kafka-property k=v flags.
// Each value remembers where it came from, so an error can say.

#include <CLI/CLI.hpp>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "services/common/error.h"

namespace starling {

struct KafkaProperties {
  std::map<std::string, std::string> values;
  std::map<std::string, std::string> origins;  // key -> "--kafka-property", "STARLING_KAFKA_X", "file:3"
};

/// The flags: --kafka-property (repeatable) and --kafka-properties-file
/// (also STARLING_KAFKA_PROPERTIES_FILE).
void add_kafka_property_flags(CLI::App& app, std::vector<std::string>& flags, std::string& file);

/// The variable that sets property `key`: sasl.mechanism is
/// STARLING_KAFKA_SASL_MECHANISM.
std::string kafka_property_env_name(std::string_view key);

/// The environment's STARLING_KAFKA_<NAME>=value as property <name> (lower
/// case, '_' read as '.'): STARLING_KAFKA_SASL_MECHANISM=PLAIN is
/// sasl.mechanism=PLAIN. STARLING_KAFKA_BOOTSTRAP (the --kafka flag) and
/// STARLING_KAFKA_PROPERTIES_FILE are not properties.
std::map<std::string, std::string> kafka_properties_from_env(char** envp);

/// Reads the file (key=value lines; '#' and '!' start a comment line; blank
/// lines skipped), then `env`, then `flags`. An error names the source and
/// line and what was expected. Properties Starling sets itself because its
/// guarantees depend on them (acks, enable.idempotence, group.id, the offset
/// commit settings, bootstrap.servers: use --kafka) are refused.
Result<KafkaProperties> collect_kafka_properties(const std::string& file, const std::map<std::string, std::string>& env,
                                                 const std::vector<std::string>& flags);

/// collect_kafka_properties with this process's environment.
Result<KafkaProperties> user_kafka_properties(const std::string& file, const std::vector<std::string>& flags);

/// Whether a property's value is a secret (passwords, keys, tokens): never
/// printed, in errors or logs.
bool secret_kafka_property(std::string_view key);

/// `value`, or "<redacted>" for a secret property.
std::string shown_kafka_value(std::string_view key, std::string_view value);

}  // namespace starling
