#include "services/cli/fixtures.h"

#include <fmt/format.h>
#include <google/protobuf/util/time_util.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "services/clean/cleaner.h"
#include "services/clean/rule_config.h"
#include "services/common/records.h"

namespace starling::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string at(const std::string& file, const YAML::Node& n) {
  return fmt::format("{}:{}:{}", file, n.Mark().line + 1, n.Mark().column + 1);
}

// A YAML value as the JSON a device would send. Only the YAML decides a
// value's type, never the field it is for: a plain scalar that reads as an
// integer, a number, true/false or null is one; anything else, and any quoted
// scalar, is a string. So a fixture proves what a device sending the same JSON
// gets from ingest.
json device_json(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& kv : node) out[kv.first.as<std::string>()] = device_json(kv.second);
      return out;
    }
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (const auto& v : node) out.push_back(device_json(v));
      return out;
    }
    case YAML::NodeType::Scalar:
      break;
    default:
      return nullptr;
  }
  const auto& text = node.Scalar();
  if (node.Tag() == "!") return text;  // quoted
  if (text == "null" || text == "~" || text.empty()) return nullptr;
  if (text == "true" || text == "false") return text == "true";
  std::int64_t i = 0;
  if (YAML::convert<std::int64_t>::decode(node, i)) return i;
  std::uint64_t u = 0;
  if (YAML::convert<std::uint64_t>::decode(node, u)) return u;
  // YAML's special floats as proto JSON writes them.
  if (text == ".nan" || text == ".NaN" || text == ".NAN") return "NaN";
  if (text == ".inf" || text == "+.inf" || text == ".Inf") return "Infinity";
  if (text == "-.inf" || text == "-.Inf") return "-Infinity";
  double d = 0;
  if (YAML::convert<double>::decode(node, d)) return d;
  return text;
}

// A case's record, converted as ingest converts a device's JSON. An error
// names the fixture's line of the field at fault.
std::unique_ptr<google::protobuf::Message> fixture_record(const PipelineConfig& p, const std::string& file,
                                                          const YAML::Node& node) {
  if (!node.IsMap()) throw ConfigError(at(file, node) + ": expected a mapping of field: value");
  auto record = record_from_json(p, device_json(node));
  if (record) return std::move(*record);
  const auto& e = record.error();
  const auto top = e.field.substr(0, e.field.find_first_of(".["));
  // Not a YAML::Node copy: assigning one Node to another writes through.
  std::string where = at(file, node);
  for (const auto& kv : node) {
    if (kv.first.as<std::string>() == top) where = at(file, kv.second);
  }
  throw ConfigError(fmt::format("{}: field '{}': {}", where, e.field, e.reason));
}

int64_t time_ms(const std::string& file, const YAML::Node& n) {
  google::protobuf::Timestamp ts;
  if (!n.IsScalar() || !google::protobuf::util::TimeUtil::FromString(n.Scalar(), &ts))
    throw ConfigError(at(file, n) + ": expected an RFC 3339 time like 2024-05-01T10:00:00Z");
  return google::protobuf::util::TimeUtil::TimestampToMilliseconds(ts);
}

std::string reason_text(const v1::Reason& r) {
  return fmt::format("{}:{} (value '{}', expected '{}')", r.rule(), r.field(), r.value(), r.expected());
}

// Field-by-field differences of two records as JSON objects.
std::vector<std::string> diff(const json& expected, const json& got) {
  std::vector<std::string> out;
  std::set<std::string> keys;
  for (const auto& [k, _] : expected.items()) keys.insert(k);
  for (const auto& [k, _] : got.items()) keys.insert(k);
  for (const auto& k : keys) {
    const auto e = expected.contains(k) ? expected[k].dump() : "(missing)";
    const auto g = got.contains(k) ? got[k].dump() : "(missing)";
    if (e != g) out.push_back(fmt::format("{}: expected {}, got {}", k, e, g));
  }
  return out;
}

struct CaseResult {
  std::string name;
  std::vector<std::string> problems;  // empty: passed
};

std::vector<CaseResult> run_cases(const PipelineConfig& p, const std::string& file) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(file);
  } catch (const YAML::BadFile&) {
    throw ConfigError(file + ": cannot open fixture file (it sits beside the pipeline: x.yaml → x.test.yaml)");
  } catch (const YAML::ParserException& e) {
    throw ConfigError(fmt::format("{}:{}:{}: {}", file, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  if (!root.IsMap() || !root["cases"] || !root["cases"].IsSequence())
    throw ConfigError(file + ": expected a mapping with `cases:`, a list of {name, input, clean | rejected}");
  std::optional<int64_t> default_ingest;
  if (root["ingest_time"]) default_ingest = time_ms(file, root["ingest_time"]);

  clean::Cleaner cleaner(p, "starling-test");
  clean::MemoryCleanState state;  // shared by the cases, in order
  std::vector<CaseResult> results;
  int n = 0;
  for (const auto& c : root["cases"]) {
    ++n;
    CaseResult res;
    res.name = c["name"] ? c["name"].as<std::string>() : fmt::format("case {}", n);
    if (!c["input"]) throw ConfigError(at(file, c) + ": a case needs input");
    if (!c["clean"] == !c["rejected"])
      throw ConfigError(at(file, c) + ": a case expects exactly one of clean or rejected");
    const auto record = fixture_record(p, file, c["input"]);

    v1::Envelope env;
    env.set_event_id(p.event_id_field ? field_text(*record, p.event_id_field) : "");
    if (env.event_id().empty()) env.set_event_id(fmt::format("case-{}", n));
    env.set_saga_id("fixture");
    env.set_seq(static_cast<uint32_t>(n - 1));
    env.set_pipeline(p.name);
    env.set_device_id(p.device_id_field ? field_text(*record, p.device_id_field) : "");
    const int64_t event_ms = timestamp_ms(*record, p.event_time_field);
    const int64_t ingest_ms = c["ingest_time"] ? time_ms(file, c["ingest_time"]) : default_ingest.value_or(event_ms);
    env.set_event_time_ms(event_ms != 0 ? event_ms : ingest_ms);
    env.set_ingest_time_ms(ingest_ms);
    env.set_schema_name(p.message_type);
    env.set_payload(record->SerializeAsString());

    const auto got = cleaner.clean(env.SerializeAsString(), 0, state, 0);
    if (c["clean"]) {
      const auto want = fixture_record(p, file, c["clean"]);
      if (!got.clean) {
        res.problems.push_back("expected a clean record, got rejected:");
        for (const auto& r : got.rejected.reasons()) res.problems.push_back("  " + reason_text(r));
      } else {
        auto cleaned = record_from_bytes(p, got.envelope.payload());
        res.problems = diff(json::parse(record_to_json(*want)), json::parse(record_to_json(**cleaned)));
      }
    } else {
      const auto& want = c["rejected"];
      if (!want.IsSequence())
        throw ConfigError(at(file, want) + ": expected a list of {rule, field[, value, expected]}");
      if (got.clean) {
        auto cleaned = record_from_bytes(p, got.envelope.payload());
        res.problems.push_back("expected rejected, got clean: " + record_to_json(**cleaned));
      } else {
        const auto& reasons = got.rejected.reasons();
        bool same = static_cast<int>(want.size()) == reasons.size();
        for (std::size_t i = 0; same && i < want.size(); ++i) {
          const auto& w = want[i];
          const auto& r = reasons[static_cast<int>(i)];
          for (const auto* key : {"rule", "field", "value", "expected"}) {
            if (!w[key]) continue;
            const auto& actual = std::string(key) == "rule"    ? r.rule()
                                 : std::string(key) == "field" ? r.field()
                                 : std::string(key) == "value" ? r.value()
                                                               : r.expected();
            same &= w[key].as<std::string>() == actual;
          }
        }
        if (!same) {
          res.problems.push_back("expected reasons:");
          for (const auto& w : want) {
            std::string line;
            for (const auto* key : {"rule", "field", "value", "expected"}) {
              if (w[key]) line += fmt::format("{}{}: '{}'", line.empty() ? "" : ", ", key, w[key].as<std::string>());
            }
            res.problems.push_back("  " + line);
          }
          res.problems.push_back("got reasons:");
          for (const auto& r : reasons) res.problems.push_back("  " + reason_text(r));
        }
      }
    }
    results.push_back(std::move(res));
  }
  return results;
}

}  // namespace

std::string fixture_path(const std::string& pipeline_file) {
  fs::path p(pipeline_file);
  return (p.parent_path() / (p.stem().string() + ".test.yaml")).string();
}

int run_fixture_files(const std::vector<std::string>& pipeline_files) {
  int worst = 0;
  for (const auto& f : pipeline_files) {
    try {
      const auto p = clean::load_checked_pipeline(f);
      const auto fixtures = fixture_path(f);
      const auto results = run_cases(p, fixtures);
      std::size_t failed = 0;
      fmt::print("{}\n", fixtures);
      for (const auto& r : results) {
        fmt::print("  {}  {}\n", r.problems.empty() ? "PASS" : "FAIL", r.name);
        for (const auto& line : r.problems) fmt::print("        {}\n", line);
        failed += !r.problems.empty();
      }
      fmt::print("{} cases: {} passed, {} failed\n", results.size(), results.size() - failed, failed);
      if (failed > 0) worst = std::max(worst, 1);
    } catch (const ConfigError& e) {
      fmt::print(stderr, "{}\n", e.what());
      worst = 2;
    }
  }
  return worst;
}

}  // namespace starling::cli
