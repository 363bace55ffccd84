#pragma once
// What the cleaning rules of a pipeline file mean. services/common/pipeline.h
// parses them (keys, value types, field names); this checks them against the
// fields they name and the rest of the file (the unit table, RE2 syntax,
// bounds, defaults valid for the field's type, fill needing a device id) and
// makes them ready to apply. `starling check` and starling-clean load pipeline
// files with check_rule, so a rule's problems come with the file's others,
// each naming its line.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "services/common/pipeline.h"

namespace re2 {
class RE2;
}

namespace starling::clean {

/// A linear unit conversion: to = from * factor + offset (°F → °C has an offset).
struct UnitConversion {
  std::string from;
  std::string to;
  double factor = 1;
  double offset = 0;
};

/// Converting between units, by name ("mph", "km/h", "degF", "°C", ...);
/// nullopt when either is unknown or they measure different things.
std::optional<UnitConversion> unit_conversion(const std::string& from, const std::string& to);
/// The unit names unit_conversion knows, for error messages.
std::string known_units();

/// A parsed rule made ready to apply.
struct CompiledRule {
  const FieldRule* spec = nullptr;        // the pipeline's
  std::shared_ptr<const re2::RE2> regex;  // spec->regex compiled
  std::optional<UnitConversion> convert;  // spec->convert resolved
};

/// Checks what one parsed rule means and appends its problems (a RuleCheck).
void check_rule(const PipelineConfig& p, const FieldRule& rule, std::vector<std::string>& problems);

/// The pipeline's rules made ready to apply, in order. Throws ConfigError
/// with every problem check_rule finds (startup only).
std::vector<CompiledRule> compile_rules(const PipelineConfig& p);

/// load_pipeline and parse_pipeline with check_rule: every problem of the
/// file, in file order.
PipelineConfig load_checked_pipeline(const std::string& path);
/// How far back cleaning one record can look: the longest fill_last_known
/// max_age of the pipeline, 0 when no rule remembers. A replay of the clean
/// stage warms up over this much before its range.
int64_t memory_horizon_ms(const PipelineConfig& p);
PipelineConfig parse_checked_pipeline(const std::string& yaml, const std::string& origin);

}  // namespace starling::clean
