#include "services/clean/rules.h"

#include <fmt/compile.h>
#include <fmt/format.h>
#include <re2/re2.h>

#include <cmath>
#include <iterator>

#include "services/common/records.h"
#include "services/common/time.h"

namespace starling::clean {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

namespace {

// An empty string counts as missing, whether or not the field has presence:
// devices send "" for "I don't know".
// The record's Reflection is passed down: looking it up is a virtual call
// per use.
bool is_set(const Reflection* r, const Message& m, const FieldDescriptor* f) {
  if (f->has_presence() && !r->HasField(m, f)) return false;
  if (f->cpp_type() != FieldDescriptor::CPPTYPE_STRING) return true;
  std::string scratch;  // only used for string representations that are not a std::string
  return !r->GetStringReference(m, f, &scratch).empty();
}

double number(const Reflection* r, const Message& m, const FieldDescriptor* f) {
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return r->GetInt32(m, f);
    case FieldDescriptor::CPPTYPE_INT64:
      return static_cast<double>(r->GetInt64(m, f));
    case FieldDescriptor::CPPTYPE_UINT32:
      return r->GetUInt32(m, f);
    case FieldDescriptor::CPPTYPE_UINT64:
      return static_cast<double>(r->GetUInt64(m, f));
    case FieldDescriptor::CPPTYPE_FLOAT:
      return r->GetFloat(m, f);
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return r->GetDouble(m, f);
    default:
      STARLING_ASSERT(false, "numeric rule on non-numeric field {} passed config validation", f->name());
  }
}

// Only double and float fields are converted and rounded (config validation).
// Returns the value as stored.
FieldValue set_number(const Reflection* r, Message& m, const FieldDescriptor* f, double v) {
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) {
    r->SetDouble(&m, f, v);
    return v;
  }
  r->SetFloat(&m, f, static_cast<float>(v));
  return static_cast<float>(v);
}

// A converted or rounded field's value, as stored.
FieldValue stored_number(const FieldDescriptor* f, double v) {
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) return v;
  return static_cast<float>(v);
}

// A filled or default value as the field holds it: a double or float as
// itself, a 32-bit integer as a double (exact), anything else as text (a
// 64-bit integer too: a double would round it).
FieldValue field_value(const Reflection* r, const Message& m, const FieldDescriptor* f) {
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return r->GetDouble(m, f);
    case FieldDescriptor::CPPTYPE_FLOAT:
      return r->GetFloat(m, f);
    case FieldDescriptor::CPPTYPE_INT32:
      return static_cast<double>(r->GetInt32(m, f));
    case FieldDescriptor::CPPTYPE_UINT32:
      return static_cast<double>(r->GetUInt32(m, f));
    default:
      return field_text(m, f);
  }
}

template <class Out>
Out write_value(Out out, const FieldValue& v) {
  if (const auto* d = std::get_if<double>(&v)) return fmt::format_to(out, FMT_COMPILE("{}"), *d);
  if (const auto* f = std::get_if<float>(&v)) return fmt::format_to(out, FMT_COMPILE("{}"), *f);
  if (const auto* s = std::get_if<std::string>(&v)) return std::copy(s->begin(), s->end(), out);
  return out;
}

void copy_field(const Message& from, Message& to, const FieldDescriptor* f) {
  const auto* r = from.GetReflection();
  const auto* w = to.GetReflection();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      w->SetInt32(&to, f, r->GetInt32(from, f));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      w->SetInt64(&to, f, r->GetInt64(from, f));
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      w->SetUInt32(&to, f, r->GetUInt32(from, f));
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      w->SetUInt64(&to, f, r->GetUInt64(from, f));
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      w->SetFloat(&to, f, r->GetFloat(from, f));
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      w->SetDouble(&to, f, r->GetDouble(from, f));
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      w->SetBool(&to, f, r->GetBool(from, f));
      break;
    case FieldDescriptor::CPPTYPE_ENUM:
      w->SetEnumValue(&to, f, r->GetEnumValue(from, f));
      break;
    case FieldDescriptor::CPPTYPE_STRING:
      w->SetString(&to, f, r->GetString(from, f));
      break;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      w->MutableMessage(&to, f)->CopyFrom(r->GetMessage(from, f));
      break;
  }
}

std::string describe(const RangeRule& r) {
  std::string lo = r.min ? fmt::format("{} {} ", *r.min, r.min_inclusive ? "<=" : "<") : "";
  std::string hi = r.max ? fmt::format(" {} {}", r.max_inclusive ? "<=" : "<", *r.max) : "";
  return lo + "x" + hi;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

v1::Reason reason(std::string rule, const std::string& field, std::string value, std::string expected) {
  v1::Reason r;
  r.set_rule(std::move(rule));
  r.set_field(field);
  r.set_value(std::move(value));
  r.set_expected(std::move(expected));
  return r;
}

bool in_range(double v, const RangeRule& r) {
  if (std::isnan(v)) return false;  // NaN compares false everywhere: refuse it explicitly
  if (r.min && (r.min_inclusive ? v < *r.min : v <= *r.min)) return false;
  if (r.max && (r.max_inclusive ? v > *r.max : v >= *r.max)) return false;
  return true;
}

}  // namespace

std::string to_text(const FieldValue& v) {
  std::string out;
  write_value(std::back_inserter(out), v);
  return out;
}

std::string format_duration(int64_t ms) {
  if (ms != 0 && ms % 86'400'000 == 0) return fmt::format("{}d", ms / 86'400'000);
  if (ms != 0 && ms % 3'600'000 == 0) return fmt::format("{}h", ms / 3'600'000);
  if (ms != 0 && ms % 60'000 == 0) return fmt::format("{}m", ms / 60'000);
  if (ms != 0 && ms % 1000 == 0) return fmt::format("{}s", ms / 1000);
  return fmt::format("{}ms", ms);
}

RuleEngine::RuleEngine(const PipelineConfig& pipeline) : pipeline_(pipeline), rules_(compile_rules(pipeline)) {
  for (const auto& rule : pipeline_.rules) {
    uses_memory_ |= rule.fill_max_age_ms.has_value();
    round_scales_.push_back(rule.round ? std::pow(10.0, *rule.round) : 1.0);
  }
}

void RuleEngine::apply(Message& record, const RecordContext& ctx, const DeviceMemory& memory, Outcome& out) const {
  STARLING_ASSERT(record.GetDescriptor() == pipeline_.descriptor, "record of type {} cleaned by pipeline {}",
                  record.GetDescriptor()->full_name(), pipeline_.name);
  out.reasons.clear();
  out.changes.clear();
  out.observed.clear();
  const auto* r = record.GetReflection();
  auto change = [&out, n = rules_.size()](const FieldRule& rule, Change::Kind kind, FieldValue from, FieldValue to) {
    if (out.changes.capacity() < 2 * n) out.changes.reserve(2 * n);
    out.changes.push_back({&rule, kind, std::move(from), std::move(to)});
  };
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    const auto& compiled = rules_[i];
    const auto& rule = *compiled.spec;
    const auto* f = rule.descriptor;
    const bool own_value = is_set(r, record, f);
    bool present = own_value;
    // 1. Fill a missing value: the device's last known one if young enough, else the default.
    if (!own_value && rule.fill_max_age_ms) {
      if (auto it = memory.find(f->number()); it != memory.end()) {
        const int64_t age = ctx.event_time_ms - it->second.event_time_ms;
        if (age >= 0 && age <= *rule.fill_max_age_ms) {
          auto known = record.New();
          if (known->ParseFromString(it->second.value) && is_set(r, *known, f)) {
            copy_field(*known, record, f);
            present = true;
            change(rule, Change::Kind::kFillLastKnown, {}, field_value(r, record, f));
          }
          delete known;
        }
      }
    }
    if (!present && rule.default_text) {
      const auto st = set_field_text(record, f, *rule.default_text);
      STARLING_ASSERT(st.has_value(), "default of {} passed config validation: {}", rule.field, st.error().message);
      present = is_set(r, record, f);
      change(rule, Change::Kind::kDefaultValue, {}, field_value(r, record, f));
    }
    // 2. Convert and round the record's own value. A filled or default value
    //    is already in the clean unit and precision.
    if (own_value && compiled.convert) {
      const double v = number(r, record, f);
      change(rule, Change::Kind::kConvert, stored_number(f, v),
             set_number(r, record, f, v * compiled.convert->factor + compiled.convert->offset));
    }
    if (own_value && rule.round) {
      const double v = number(r, record, f);
      const double scale = round_scales_[i];
      const double rounded = std::round(v * scale) / scale;
      if (std::isfinite(v) && rounded != v)
        change(rule, Change::Kind::kRound, stored_number(f, v), set_number(r, record, f, rounded));
    }
    // 3. Check.
    if (!present) {
      if (rule.required) out.reasons.push_back(reason("required", rule.field, "", "a value"));
      continue;
    }
    if (rule.range && !in_range(number(r, record, f), *rule.range)) {
      out.reasons.push_back(reason("range", rule.field, field_text(record, f), describe(*rule.range)));
    }
    if (!rule.allowed.empty()) {
      const auto text = field_text(record, f);
      if (std::find(rule.allowed.begin(), rule.allowed.end(), text) == rule.allowed.end()) {
        out.reasons.push_back(reason("allowed", rule.field, text, "one of: " + join(rule.allowed)));
      }
    }
    if (compiled.regex) {  // a string field (config validation)
      std::string scratch;
      const auto& text = r->GetStringReference(record, f, &scratch);
      if (!re2::RE2::FullMatch(text, *compiled.regex)) {
        out.reasons.push_back(reason("regex", rule.field, text, "matches /" + *rule.regex + "/"));
      }
    }
    if (rule.timestamp) {
      const int64_t t = timestamp_ms(record, f);
      const auto& ts = *rule.timestamp;
      if (ts.max_future_ms && t > ctx.ingest_time_ms + *ts.max_future_ms) {
        out.reasons.push_back(reason("timestamp", rule.field, field_text(record, f),
                                     fmt::format("at most {} after ingest time {}", format_duration(*ts.max_future_ms),
                                                 rfc3339_trimmed(ctx.ingest_time_ms))));
      } else if (ts.max_late_ms && t < ctx.ingest_time_ms - *ts.max_late_ms) {
        out.reasons.push_back(reason("timestamp", rule.field, field_text(record, f),
                                     fmt::format("at most {} before ingest time {}", format_duration(*ts.max_late_ms),
                                                 rfc3339_trimmed(ctx.ingest_time_ms))));
      }
    }
    if (own_value && rule.fill_max_age_ms) {
      auto only = record.New();
      copy_field(record, *only, f);
      out.observed[f->number()] = KnownValue{ctx.event_time_ms, only->SerializeAsString()};
      delete only;
    }
  }
}

bool remember(DeviceMemory& memory, const DeviceMemory& observed) {
  bool changed = false;
  for (const auto& [field, v] : observed) {
    auto [it, fresh] = memory.try_emplace(field, v);
    if (fresh) {
      changed = true;
    } else if (v.event_time_ms >= it->second.event_time_ms && !(it->second == v)) {
      it->second = v;
      changed = true;
    }
  }
  return changed;
}

namespace {

template <class Out>
Out write_label(Out out, const Change& c) {
  switch (c.kind) {
    case Change::Kind::kFillLastKnown:
      return fmt::format_to(out, FMT_COMPILE("fill_last_known"));
    case Change::Kind::kDefaultValue:
      return fmt::format_to(out, FMT_COMPILE("default"));
    case Change::Kind::kConvert:
      return fmt::format_to(out, FMT_COMPILE("convert({}->{})"), c.rule->convert->from, c.rule->convert->to);
    case Change::Kind::kRound:
      return fmt::format_to(out, FMT_COMPILE("round({})"), *c.rule->round);
  }
  return out;
}

}  // namespace

std::string change_label(const Change& c) {
  std::string out;
  write_label(std::back_inserter(out), c);
  return out;
}

void to_proto(const std::vector<Change>& changes, google::protobuf::RepeatedPtrField<v1::Change>& out) {
  // Cleared elements are reused, strings and all: no allocation per record
  // once the first few records have been through.
  out.Clear();
  for (const auto& c : changes) {
    auto& p = *out.Add();
    p.set_field(c.rule->field);
    write_label(std::back_inserter(*p.mutable_rule()), c);
    if (const auto* d = std::get_if<double>(&c.from)) p.set_from_number(*d);
    if (const auto* f = std::get_if<float>(&c.from)) p.set_from_float(*f);
    if (const auto* s = std::get_if<std::string>(&c.from)) p.set_from_text(*s);
    if (const auto* d = std::get_if<double>(&c.to)) p.set_to_number(*d);
    if (const auto* f = std::get_if<float>(&c.to)) p.set_to_float(*f);
    if (const auto* s = std::get_if<std::string>(&c.to)) p.set_to_text(*s);
  }
}

void append_changes(std::string& out, const std::vector<Change>& changes) {
  out.reserve(out.size() + 64 * changes.size());  // one allocation: a change takes 30-60 characters
  auto it = std::back_inserter(out);
  for (std::size_t i = 0; i < changes.size(); ++i) {
    const auto& c = changes[i];
    if (i > 0) out += ';';
    out.append(c.rule->field).append(":");
    write_label(it, c);
    out.append("(");
    if (std::holds_alternative<std::monostate>(c.from)) {
      out.append("missing");
    } else {
      write_value(it, c.from);
    }
    out.append("->");
    write_value(it, c.to);
    out += ')';
  }
}

}  // namespace starling::clean
