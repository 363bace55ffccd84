#include "services/clean/rules.h"

#include <cmath>

#include <fmt/format.h>

#include "services/common/records.h"

namespace starling::clean {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

namespace {

bool is_set(const Message& m, const FieldDescriptor* f) {
  const auto* r = m.GetReflection();
  if (f->has_presence()) return r->HasField(m, f);
  return f->cpp_type() != FieldDescriptor::CPPTYPE_STRING || !r->GetString(m, f).empty();
}

double number(const Message& m, const FieldDescriptor* f) {
  const auto* r = m.GetReflection();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: return r->GetInt32(m, f);
    case FieldDescriptor::CPPTYPE_INT64: return static_cast<double>(r->GetInt64(m, f));
    case FieldDescriptor::CPPTYPE_UINT32: return r->GetUInt32(m, f);
    case FieldDescriptor::CPPTYPE_UINT64: return static_cast<double>(r->GetUInt64(m, f));
    case FieldDescriptor::CPPTYPE_FLOAT: return r->GetFloat(m, f);
    case FieldDescriptor::CPPTYPE_DOUBLE: return r->GetDouble(m, f);
    default: STARLING_ASSERT(false, "range on non-numeric field {} passed config validation", f->name());
  }
}

std::string describe(const RangeRule& r) {
  std::string lo = r.min ? fmt::format("{} {} ", *r.min, r.min_inclusive ? "<=" : "<") : "";
  std::string hi = r.max ? fmt::format(" {} {}", r.max_inclusive ? "<=" : "<", *r.max) : "";
  return lo + "x" + hi;
}

v1::Reason reason(std::string rule, const std::string& field, std::string value, std::string expected) {
  v1::Reason r;
  r.set_rule(std::move(rule));
  r.set_field(field);
  r.set_value(std::move(value));
  r.set_expected(std::move(expected));
  return r;
}

}  // namespace

RuleEngine::RuleEngine(const PipelineConfig& pipeline) : pipeline_(pipeline) {}

std::vector<v1::Reason> RuleEngine::check(const Message& record) const {
  STARLING_ASSERT(record.GetDescriptor() == pipeline_.descriptor, "record of type {} checked against pipeline {}",
                  record.GetDescriptor()->full_name(), pipeline_.name);
  std::vector<v1::Reason> out;
  for (const auto& rule : pipeline_.rules) {
    const bool present = is_set(record, rule.descriptor);
    if (rule.required && !present) {
      out.push_back(reason("required", rule.field, "", "a value"));
      continue;
    }
    if (rule.range && present) {
      const double v = number(record, rule.descriptor);
      const auto& r = *rule.range;
      const bool low = r.min && (r.min_inclusive ? v < *r.min : v <= *r.min);
      const bool high = r.max && (r.max_inclusive ? v > *r.max : v >= *r.max);
      // NaN compares false everywhere: refuse it explicitly.
      if (low || high || std::isnan(v)) out.push_back(reason("range", rule.field, field_text(record, rule.descriptor), describe(r)));
    }
  }
  return out;
}

}  // namespace starling::clean
