#include "services/clean/rule_config.h"

#include <fmt/format.h>
#include <re2/re2.h>

#include <algorithm>

#include "services/common/records.h"

namespace starling::clean {
namespace {

using google::protobuf::FieldDescriptor;

bool is_numeric(const FieldDescriptor* f) {
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT:
      return true;
    default:
      return false;
  }
}

bool is_integer_text(const std::string& s) {
  static const re2::RE2 re("-?[0-9]+");
  return re2::RE2::FullMatch(s, re);
}

// The fixed unit table: each unit is (dimension, factor, offset) against the
// dimension's base unit, so base = value * factor + offset.
struct Unit {
  const char* name;
  const char* dimension;
  double factor;
  double offset;
};
constexpr Unit kUnits[] = {
    {"km/h", "speed", 1.0, 0},
    {"mph", "speed", 1.609344, 0},
    {"m/s", "speed", 3.6, 0},
    {"kn", "speed", 1.852, 0},
    {"degC", "temperature", 1.0, 0},
    {"°C", "temperature", 1.0, 0},
    {"degF", "temperature", 5.0 / 9.0, -160.0 / 9.0},
    {"°F", "temperature", 5.0 / 9.0, -160.0 / 9.0},
    {"K", "temperature", 1.0, -273.15},
    {"km", "distance", 1.0, 0},
    {"m", "distance", 0.001, 0},
    {"mi", "distance", 1.609344, 0},
    {"ft", "distance", 0.0003048, 0},
    {"mm", "depth", 1.0, 0},
    {"in", "depth", 25.4, 0},
    {"hPa", "pressure", 1.0, 0},
    {"kPa", "pressure", 10.0, 0},
    {"inHg", "pressure", 33.8638866667, 0},
    {"mmHg", "pressure", 1.33322387415, 0},
};

const Unit* find_unit(const std::string& name) {
  for (const auto& u : kUnits) {
    if (name == u.name) return &u;
  }
  return nullptr;
}

// Checks one rule and makes it ready to apply; nullopt when it has a problem.
// Each part is checked on its own, so one bad part does not hide another.
std::optional<CompiledRule> compile_rule(const PipelineConfig& p, const FieldRule& rule,
                                         std::vector<std::string>& problems) {
  const auto before = problems.size();
  auto problem = [&](const Mark& at, const std::string& text) { problems.push_back(config_problem(p.file, at, text)); };
  const auto* f = rule.descriptor;
  const bool can_be_missing = f->has_presence() || f->cpp_type() == FieldDescriptor::CPPTYPE_STRING;
  const bool floating =
      f->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE || f->cpp_type() == FieldDescriptor::CPPTYPE_FLOAT;
  const bool integral = is_numeric(f) && !floating;
  const auto needs_presence =
      fmt::format("field '{}' cannot tell missing from zero; declare it `optional` in the .proto", rule.field);
  CompiledRule out;
  out.spec = &rule;

  if (rule.required && !can_be_missing) problem(rule.at.required, needs_presence);
  if (const auto& range = rule.range) {
    if (!is_numeric(f)) {
      problem(rule.at.range, fmt::format("range needs a numeric field; '{}' is {}", rule.field, f->type_name()));
    } else if (range->min && range->max && *range->min > *range->max) {
      problem(rule.at.range, fmt::format("min {} is greater than max {}", *range->min, *range->max));
    } else if (range->min && range->max && *range->min == *range->max &&
               !(range->min_inclusive && range->max_inclusive)) {
      problem(rule.at.range,
              fmt::format("no value is in this range: min and max are both {} and a bound is exclusive", *range->min));
    }
  }
  if (!rule.allowed.empty()) {
    const auto* e = f->enum_type();
    if (e == nullptr && f->cpp_type() != FieldDescriptor::CPPTYPE_STRING && !integral) {
      problem(rule.at.allowed,
              fmt::format("allowed needs an enum, string or integer field; '{}' is {}", rule.field, f->type_name()));
    } else {
      for (std::size_t i = 0; i < rule.allowed.size(); ++i) {
        const auto& v = rule.allowed[i];
        if (e != nullptr && e->FindValueByName(v) == nullptr) {
          std::string names;
          for (int k = 0; k < e->value_count(); ++k) names += (k ? ", " : "") + e->value(k)->name();
          problem(rule.at.allowed_items[i],
                  fmt::format("'{}' is not a value of {}; it has: {}", v, e->full_name(), names));
        } else if (integral && !is_integer_text(v)) {
          problem(rule.at.allowed_items[i], fmt::format("expected an integer, got '{}'", v));
        }
      }
    }
  }
  if (rule.regex) {
    if (f->cpp_type() != FieldDescriptor::CPPTYPE_STRING || f->type() == FieldDescriptor::TYPE_BYTES) {
      problem(rule.at.regex, fmt::format("regex needs a string field; '{}' is {}", rule.field, f->type_name()));
    } else {
      // RE2: matching takes time linear in the value and no stack, so no
      // record can stall or crash the stage (std::regex recurses per character
      // and overflows the stack on a value of about 100 kB).
      re2::RE2::Options opts;
      opts.set_log_errors(false);
      auto compiled = std::make_shared<const re2::RE2>(*rule.regex, opts);
      if (!compiled->ok()) {
        problem(rule.at.regex,
                fmt::format("not a valid regular expression '{}': {} (RE2 syntax)", *rule.regex, compiled->error()));
      }
      out.regex = std::move(compiled);
    }
  }
  if (const auto& convert = rule.convert) {
    if (!floating) {
      problem(rule.at.convert,
              fmt::format("convert needs a double or float field; '{}' is {}", rule.field, f->type_name()));
    } else {
      const auto* from = find_unit(convert->from);
      const auto* to = find_unit(convert->to);
      if (from == nullptr) {
        problem(rule.at.convert_from, fmt::format("unknown unit '{}'; known units: {}", convert->from, known_units()));
      }
      if (to == nullptr) {
        problem(rule.at.convert_to, fmt::format("unknown unit '{}'; known units: {}", convert->to, known_units()));
      }
      if (from != nullptr && to != nullptr) {
        out.convert = unit_conversion(convert->from, convert->to);
        if (!out.convert) {
          problem(rule.at.convert, fmt::format("cannot convert {} ({}) to {} ({})", convert->from, from->dimension,
                                               convert->to, to->dimension));
        }
      }
    }
  }
  if (rule.round) {
    if (!floating) {
      problem(rule.at.round,
              fmt::format("round needs a double or float field; '{}' is {}", rule.field, f->type_name()));
    } else if (*rule.round > 12) {
      problem(rule.at.round, fmt::format("expected at most 12 decimals, got {}", *rule.round));
    }
  }
  if (rule.default_text) {
    if (!can_be_missing) {
      problem(rule.at.default_text, needs_presence);
    } else {
      auto scratch = new_record(p);
      if (auto st = set_field_text(*scratch, f, *rule.default_text); !st)
        problem(rule.at.default_text, st.error().message);
    }
  }
  if (rule.fill_max_age_ms) {
    if (!can_be_missing) {
      problem(rule.at.fill_last_known, needs_presence);
    } else if (p.device_id_field == nullptr) {
      problem(rule.at.fill_last_known, "needs keys.device_id: last known values are kept per device");
    }
  }
  if (rule.timestamp && !is_timestamp(f)) {
    problem(rule.at.timestamp,
            fmt::format("timestamp needs a google.protobuf.Timestamp field; '{}' is {}", rule.field, f->type_name()));
  }
  if (problems.size() != before) return std::nullopt;
  return out;
}

}  // namespace

std::optional<UnitConversion> unit_conversion(const std::string& from, const std::string& to) {
  const auto* a = find_unit(from);
  const auto* b = find_unit(to);
  if (a == nullptr || b == nullptr || std::string_view(a->dimension) != b->dimension) return std::nullopt;
  // base = v * a.factor + a.offset; to = (base - b.offset) / b.factor
  return UnitConversion{from, to, a->factor / b->factor, (a->offset - b->offset) / b->factor};
}

std::string known_units() {
  std::string out;
  for (const auto& u : kUnits) out += (out.empty() ? "" : ", ") + std::string(u.name);
  return out;
}

void check_rule(const PipelineConfig& p, const FieldRule& rule, std::vector<std::string>& problems) {
  (void)compile_rule(p, rule, problems);
}

std::vector<CompiledRule> compile_rules(const PipelineConfig& p) {
  std::vector<CompiledRule> out;
  std::vector<std::string> problems;
  for (const auto& rule : p.rules) {
    if (auto compiled = compile_rule(p, rule, problems)) out.push_back(std::move(*compiled));
  }
  if (!problems.empty()) throw ConfigError(std::move(problems));
  return out;
}

PipelineConfig load_checked_pipeline(const std::string& path) { return load_pipeline(path, check_rule); }

PipelineConfig parse_checked_pipeline(const std::string& yaml, const std::string& origin) {
  return parse_pipeline(yaml, origin, check_rule);
}

int64_t memory_horizon_ms(const PipelineConfig& p) {
  int64_t horizon = 0;
  for (const auto& rule : p.rules) horizon = std::max(horizon, rule.fill_max_age_ms.value_or(0));
  return horizon;
}

}  // namespace starling::clean
