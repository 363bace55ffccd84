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
using google::protobuf::FieldDescriptor;
using nlohmann::json;

std::string at(const std::string& file, const YAML::Node& n) {
  return fmt::format("{}:{}:{}", file, n.Mark().line + 1, n.Mark().column + 1);
}

// A YAML mapping as the Protobuf JSON of `d`, guided by the field types (YAML
// scalars carry no type). Unknown fields are an error naming the line.
json record_json(const std::string& file, const YAML::Node& node, const google::protobuf::Descriptor* d) {
  if (!node.IsMap()) throw ConfigError(at(file, node) + ": expected a mapping of field: value");
  json out = json::object();
  for (const auto& kv : node) {
    const auto name = kv.first.as<std::string>();
    const auto* f = d->FindFieldByName(name);
    if (f == nullptr)
      throw ConfigError(fmt::format("{}: unknown field '{}' of {}", at(file, kv.first), name, d->full_name()));
    const auto& v = kv.second;
    if (v.IsNull()) continue;  // written as ~: the field is missing
    if (!v.IsScalar()) throw ConfigError(fmt::format("{}: field '{}' expects a scalar", at(file, v), name));
    const auto text = v.Scalar();
    try {
      switch (f->cpp_type()) {
        case FieldDescriptor::CPPTYPE_BOOL:
          out[name] = v.as<bool>();
          break;
        case FieldDescriptor::CPPTYPE_INT32:
        case FieldDescriptor::CPPTYPE_INT64:
          out[name] = v.as<int64_t>();
          break;
        case FieldDescriptor::CPPTYPE_UINT32:
        case FieldDescriptor::CPPTYPE_UINT64:
          out[name] = v.as<uint64_t>();
          break;
        case FieldDescriptor::CPPTYPE_DOUBLE:
        case FieldDescriptor::CPPTYPE_FLOAT:
          if (text == "NaN" || text == "nan" || text == ".nan") {
            out[name] = "NaN";
          } else if (text == "Infinity" || text == ".inf") {
            out[name] = "Infinity";
          } else if (text == "-Infinity" || text == "-.inf") {
            out[name] = "-Infinity";
          } else {
            out[name] = v.as<double>();
          }
          break;
        default:
          out[name] = text;
          break;  // strings, enum names, RFC 3339 timestamps
      }
    } catch (const YAML::Exception&) {
      throw ConfigError(fmt::format("{}: field '{}' is {}, got '{}'", at(file, v), name, f->type_name(), text));
    }
  }
  return out;
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
    auto record = record_from_json(p, record_json(file, c["input"], p.descriptor));
    if (!record) throw ConfigError(at(file, c["input"]) + ": " + record.error().message);

    v1::Envelope env;
    env.set_event_id(p.event_id_field ? field_text(**record, p.event_id_field) : "");
    if (env.event_id().empty()) env.set_event_id(fmt::format("case-{}", n));
    env.set_saga_id("fixture");
    env.set_seq(static_cast<uint32_t>(n - 1));
    env.set_pipeline(p.name);
    env.set_device_id(p.device_id_field ? field_text(**record, p.device_id_field) : "");
    const int64_t event_ms = timestamp_ms(**record, p.event_time_field);
    const int64_t ingest_ms = c["ingest_time"] ? time_ms(file, c["ingest_time"]) : default_ingest.value_or(event_ms);
    env.set_event_time_ms(event_ms != 0 ? event_ms : ingest_ms);
    env.set_ingest_time_ms(ingest_ms);
    env.set_schema_name(p.message_type);
    env.set_payload((*record)->SerializeAsString());

    const auto got = cleaner.clean(env.SerializeAsString(), 0, state, 0);
    if (c["clean"]) {
      auto want = record_from_json(p, record_json(file, c["clean"], p.descriptor));
      if (!want) throw ConfigError(at(file, c["clean"]) + ": " + want.error().message);
      if (!got.clean) {
        res.problems.push_back("expected a clean record, got rejected:");
        for (const auto& r : got.rejected.reasons()) res.problems.push_back("  " + reason_text(r));
      } else {
        auto cleaned = record_from_bytes(p, got.envelope.payload());
        res.problems = diff(json::parse(record_to_json(**want)), json::parse(record_to_json(**cleaned)));
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
