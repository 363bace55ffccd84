#include "services/common/pipeline.h"

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <google/protobuf/timestamp.pb.h>
#include <yaml-cpp/yaml.h>

namespace starling {
namespace {

using google::protobuf::FieldDescriptor;

// Walks the YAML tree with a path, so every error names file, line and key.
class Reader {
 public:
  explicit Reader(std::string origin) : origin_(std::move(origin)) {}

  [[noreturn]] void error(const YAML::Node& node, const std::string& path,
                          const std::string& problem) const {
    const auto mark = node.Mark();
    if (mark.line >= 0) {
      throw ConfigError(fmt::format("{}:{}:{}: {}: {}", origin_, mark.line + 1, mark.column + 1,
                                    path, problem));
    }
    throw ConfigError(fmt::format("{}: {}: {}", origin_, path, problem));
  }

  void expect_keys(const YAML::Node& map, const std::string& path,
                   const std::set<std::string>& allowed) const {
    if (!map.IsMap()) error(map, path, "expected a mapping");
    for (const auto& kv : map) {
      const auto key = kv.first.as<std::string>();
      if (!allowed.contains(key)) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        error(kv.first, path + "." + key, fmt::format("unknown key; expected one of: {}", list));
      }
    }
  }

  std::string string(const YAML::Node& node, const std::string& path) const {
    if (!node.IsScalar()) error(node, path, "expected a string");
    return node.as<std::string>();
  }

  double number(const YAML::Node& node, const std::string& path) const {
    if (!node.IsScalar()) error(node, path, "expected a number");
    try {
      return node.as<double>();
    } catch (const YAML::Exception&) {
      error(node, path, fmt::format("expected a number, got '{}'", node.Scalar()));
    }
  }

  int64_t integer(const YAML::Node& node, const std::string& path, int64_t min) const {
    int64_t v = 0;
    try {
      v = node.as<int64_t>();
    } catch (const YAML::Exception&) {
      error(node, path, fmt::format("expected an integer, got '{}'", node.IsScalar() ? node.Scalar() : "a collection"));
    }
    if (v < min) error(node, path, fmt::format("expected an integer >= {}, got {}", min, v));
    return v;
  }

  bool boolean(const YAML::Node& node, const std::string& path) const {
    try {
      return node.as<bool>();
    } catch (const YAML::Exception&) {
      error(node, path, fmt::format("expected true or false, got '{}'", node.IsScalar() ? node.Scalar() : "a collection"));
    }
  }

  // Durations are written like 30s, 5m, 250ms or 1h.
  int64_t duration_ms(const YAML::Node& node, const std::string& path) const {
    static const std::regex re(R"(^\s*(\d+)\s*(ms|s|m|h)\s*$)");
    const auto text = string(node, path);
    std::smatch m;
    if (!std::regex_match(text, m, re)) {
      error(node, path, fmt::format("expected a duration like 250ms, 30s, 5m or 1h, got '{}'", text));
    }
    const int64_t n = std::stoll(m[1]);
    const auto unit = m[2].str();
    return unit == "ms" ? n : unit == "s" ? n * 1000 : unit == "m" ? n * 60'000 : n * 3'600'000;
  }

  const FieldDescriptor* field(const google::protobuf::Descriptor* d, const YAML::Node& node,
                               const std::string& path) const {
    const auto name = string(node, path);
    const auto* f = d->FindFieldByName(name);
    if (f == nullptr) {
      std::string list;
      for (int i = 0; i < d->field_count(); ++i) list += (i ? ", " : "") + d->field(i)->name();
      error(node, path, fmt::format("unknown field '{}' of {}; it has: {}", name, d->full_name(), list));
    }
    if (f->is_repeated()) error(node, path, fmt::format("field '{}' is repeated; only singular fields are supported", name));
    return f;
  }

 private:
  std::string origin_;
};

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

bool is_timestamp(const FieldDescriptor* f) {
  return f->message_type() != nullptr &&
         f->message_type()->full_name() == google::protobuf::Timestamp::descriptor()->full_name();
}

bool is_identifier(const std::string& s) {
  static const std::regex re("^[A-Za-z_][A-Za-z0-9_]{0,62}$");
  return std::regex_match(s, re);
}

}  // namespace

PipelineConfig parse_pipeline(const std::string& yaml, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(fmt::format("{}:{}:{}: {}", origin, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  Reader r(origin);
  if (!root.IsMap()) r.error(root, "(top)", "expected a mapping with pipeline, schema, clean, load");
  r.expect_keys(root, "(top)", {"pipeline", "description", "schema", "keys", "topics", "clean", "load", "saga"});

  PipelineConfig p;
  p.file = origin;
  if (!root["pipeline"]) r.error(root, "pipeline", "missing; name the pipeline");
  p.name = r.string(root["pipeline"], "pipeline");
  if (!is_identifier(p.name)) r.error(root["pipeline"], "pipeline", "expected letters, digits and _ only");

  const auto schema = root["schema"];
  if (!schema) r.error(root, "schema", "missing; name the Protobuf message, e.g. message: starling.v1.RideTelemetry");
  r.expect_keys(schema, "schema", {"message", "version"});
  p.message_type = r.string(schema["message"], "schema.message");
  p.descriptor = google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(p.message_type);
  if (p.descriptor == nullptr) {
    r.error(schema["message"], "schema.message",
            fmt::format("no Protobuf message '{}' is compiled in; add its .proto under schemas/", p.message_type));
  }
  if (schema["version"]) p.schema_version = static_cast<uint32_t>(r.integer(schema["version"], "schema.version", 1));

  if (const auto keys = root["keys"]) {
    r.expect_keys(keys, "keys", {"event_id", "device_id", "event_time"});
    if (keys["event_id"]) {
      p.event_id_field = r.field(p.descriptor, keys["event_id"], "keys.event_id");
      if (p.event_id_field->cpp_type() != FieldDescriptor::CPPTYPE_STRING)
        r.error(keys["event_id"], "keys.event_id", "expected a string field");
    }
    if (keys["device_id"]) {
      p.device_id_field = r.field(p.descriptor, keys["device_id"], "keys.device_id");
      if (p.device_id_field->cpp_type() != FieldDescriptor::CPPTYPE_STRING)
        r.error(keys["device_id"], "keys.device_id", "expected a string field");
    }
    if (keys["event_time"]) {
      p.event_time_field = r.field(p.descriptor, keys["event_time"], "keys.event_time");
      if (!is_timestamp(p.event_time_field))
        r.error(keys["event_time"], "keys.event_time", "expected a google.protobuf.Timestamp field");
    }
  }

  if (const auto topics = root["topics"]) {
    r.expect_keys(topics, "topics", {"partitions"});
    if (topics["partitions"]) p.partitions = static_cast<int>(r.integer(topics["partitions"], "topics.partitions", 1));
  }

  if (const auto clean = root["clean"]) {
    r.expect_keys(clean, "clean", {"rules"});
    const auto rules = clean["rules"];
    if (rules && !rules.IsSequence()) r.error(rules, "clean.rules", "expected a list of rules");
    for (std::size_t i = 0; rules && i < rules.size(); ++i) {
      const auto node = rules[i];
      const auto path = fmt::format("clean.rules[{}]", i);
      r.expect_keys(node, path, {"field", "required", "range"});
      if (!node["field"]) r.error(node, path + ".field", "missing; name the field the rule checks");
      FieldRule rule;
      rule.line = node.Mark().line + 1;
      rule.field = r.string(node["field"], path + ".field");
      rule.descriptor = r.field(p.descriptor, node["field"], path + ".field");
      if (node["required"]) {
        rule.required = r.boolean(node["required"], path + ".required");
        if (rule.required && !rule.descriptor->has_presence() &&
            rule.descriptor->cpp_type() != FieldDescriptor::CPPTYPE_STRING) {
          r.error(node["required"], path + ".required",
                  fmt::format("field '{}' cannot tell missing from zero; declare it `optional` in the .proto", rule.field));
        }
      }
      if (const auto range = node["range"]) {
        if (!is_numeric(rule.descriptor)) {
          r.error(range, path + ".range",
                  fmt::format("range needs a numeric field; '{}' is {}", rule.field, rule.descriptor->type_name()));
        }
        r.expect_keys(range, path + ".range", {"min", "max", "min_inclusive", "max_inclusive"});
        RangeRule rr;
        if (range["min"]) rr.min = r.number(range["min"], path + ".range.min");
        if (range["max"]) rr.max = r.number(range["max"], path + ".range.max");
        if (range["min_inclusive"]) rr.min_inclusive = r.boolean(range["min_inclusive"], path + ".range.min_inclusive");
        if (range["max_inclusive"]) rr.max_inclusive = r.boolean(range["max_inclusive"], path + ".range.max_inclusive");
        if (!rr.min && !rr.max) r.error(range, path + ".range", "expected min, max or both");
        if (rr.min && rr.max && *rr.min > *rr.max)
          r.error(range, path + ".range", fmt::format("min {} is greater than max {}", *rr.min, *rr.max));
        rule.range = rr;
      }
      if (!rule.required && !rule.range) r.error(node, path, "a rule needs required or range");
      p.rules.push_back(std::move(rule));
    }
  }

  const auto load = root["load"];
  if (!load) r.error(root, "load", "missing; give the sink table and its columns");
  r.expect_keys(load, "load", {"sink", "table", "columns"});
  if (load["sink"]) {
    p.sink = r.string(load["sink"], "load.sink");
    if (p.sink != "sqlite" && p.sink != "postgres")
      r.error(load["sink"], "load.sink", fmt::format("expected sqlite or postgres, got '{}'", p.sink));
  }
  if (!load["table"]) r.error(load, "load.table", "missing");
  p.table = r.string(load["table"], "load.table");
  if (!is_identifier(p.table)) r.error(load["table"], "load.table", "expected an identifier: letters, digits, _");
  const auto columns = load["columns"];
  if (!columns || !columns.IsMap() || columns.size() == 0)
    r.error(columns ? columns : load, "load.columns", "expected a mapping of column: field");
  std::set<std::string> seen;
  for (const auto& kv : columns) {
    Column c;
    c.name = kv.first.as<std::string>();
    const auto path = "load.columns." + c.name;
    if (!is_identifier(c.name)) r.error(kv.first, path, "expected an identifier: letters, digits, _");
    if (c.name.starts_with("_starling") || c.name == "event_id" || c.name == "saga_id" || c.name == "seq" ||
        c.name == "event_time_ms" || c.name == "ingest_time_ms")
      r.error(kv.first, path, "this column name is reserved for the envelope columns");
    if (!seen.insert(c.name).second) r.error(kv.first, path, "duplicate column");
    c.field = r.string(kv.second, path);
    c.descriptor = r.field(p.descriptor, kv.second, path);
    if (c.descriptor->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && !is_timestamp(c.descriptor))
      r.error(kv.second, path, "only scalar, enum and google.protobuf.Timestamp fields map to columns");
    p.columns.push_back(std::move(c));
  }

  if (const auto saga = root["saga"]) {
    r.expect_keys(saga, "saga", {"stall_after", "fail_after"});
    if (saga["stall_after"]) p.stall_after_ms = r.duration_ms(saga["stall_after"], "saga.stall_after");
    if (saga["fail_after"]) p.fail_after_ms = r.duration_ms(saga["fail_after"], "saga.fail_after");
    if (p.fail_after_ms <= p.stall_after_ms)
      r.error(saga, "saga", "fail_after must be longer than stall_after");
  }
  return p;
}

PipelineConfig load_pipeline(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("{}: cannot open pipeline file", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_pipeline(ss.str(), path);
}

}  // namespace starling
