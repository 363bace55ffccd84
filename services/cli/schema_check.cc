#include "services/cli/schema_check.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <stdexcept>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validation_results.hpp>
#include <valijson/validator.hpp>

#include "services/common/pipeline.h"

namespace starling::cli {

namespace {

using nlohmann::json;

// A plain scalar as YAML 1.2's core schema types it (what editors and the
// ajv gate read); a quoted one is always a string.
json typed(const std::string& s) {
  static const std::regex null_re("~|null|Null|NULL|");
  static const std::regex true_re("true|True|TRUE");
  static const std::regex false_re("false|False|FALSE");
  static const std::regex int_re("[-+]?[0-9]+");
  static const std::regex float_re(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
  if (std::regex_match(s, null_re)) return nullptr;
  if (std::regex_match(s, true_re)) return true;
  if (std::regex_match(s, false_re)) return false;
  try {
    if (std::regex_match(s, int_re)) return std::stoll(s);
    if (std::regex_match(s, float_re)) return std::stod(s);
  } catch (const std::out_of_range&) {
    return std::stod(s);
  }
  return s;
}

json to_json(const YAML::Node& node, const EnvLookup& env) {
  if (node.IsMap()) {
    json out = json::object();
    for (const auto& kv : node) out[kv.first.Scalar()] = to_json(kv.second, env);
    return out;
  }
  if (node.IsSequence()) {
    json out = json::array();
    for (const auto& item : node) out.push_back(to_json(item, env));
    return out;
  }
  if (!node.IsScalar()) return nullptr;
  std::string text = node.Scalar();
  // As the pipeline parser does: ${VAR} first. An unset variable is the
  // parser's error to report; here the text stays as written.
  if (text.find('$') != std::string::npos) {
    if (auto v = interpolate_env(text, env)) text = *v;
  }
  return node.Tag() == "!" ? json(text) : typed(text);
}

// The line (1-based) of the node at a valijson context ("<root>", "[clean]",
// "[rules]", "[0]", ...), or of the deepest node found on the way.
int line_of(const YAML::Node& root, const std::vector<std::string>& context) {
  // reset() rebinds; operator= would write into the document.
  YAML::Node at;
  at.reset(root);
  int line = at.Mark().line + 1;
  for (const auto& c : context) {
    if (c.size() < 2 || c.front() != '[' || c.back() != ']') continue;
    const auto key = c.substr(1, c.size() - 2);
    YAML::Node next;
    bool found = false;
    if (at.IsSequence()) {
      if (key.empty() || key.find_first_not_of("0123456789") != std::string::npos) break;
      const auto i = std::stoul(key);
      if (i < at.size()) {
        next.reset(at[i]);
        found = true;
      }
    } else if (at.IsMap()) {
      for (const auto& kv : at) {
        if (kv.first.Scalar() == key) {
          next.reset(kv.second);
          found = true;
          break;
        }
      }
    }
    if (!found) break;
    at.reset(next);
    if (at.Mark().line >= 0) line = at.Mark().line + 1;
  }
  return line;
}

std::string path_of(const std::vector<std::string>& context) {
  std::string out;
  for (const auto& c : context) {
    if (c.size() < 2 || c.front() != '[') continue;
    const auto key = c.substr(1, c.size() - 2);
    const bool index = !key.empty() && key.find_first_not_of("0123456789") == std::string::npos;
    out += index ? "[" + key + "]" : (out.empty() ? "" : ".") + key;
  }
  return out.empty() ? "(top)" : out;
}

}  // namespace

std::vector<std::string> schema_problems(const std::string& yaml, const std::string& origin,
                                         const std::string& schema) {
  const auto schema_doc = json::parse(schema, nullptr, false);
  if (schema_doc.is_discarded()) throw std::invalid_argument("the pipeline schema is not JSON");
  valijson::Schema compiled;
  valijson::SchemaParser parser(valijson::SchemaParser::kDraft7);
  const valijson::adapters::NlohmannJsonAdapter schema_adapter(schema_doc);
  parser.populateSchema(schema_adapter, compiled);

  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception&) {
    return {};  // the pipeline parser names the line
  }
  const json doc = to_json(root, process_env());
  valijson::Validator validator(valijson::Validator::kStrongTypes);
  valijson::ValidationResults results;
  const valijson::adapters::NlohmannJsonAdapter doc_adapter(doc);
  if (validator.validate(compiled, doc_adapter, &results)) return {};

  // valijson reports an error at each level it passed through (the object
  // that holds the property, the array that holds the item): only the
  // deepest are news.
  std::vector<valijson::ValidationResults::Error> errors;
  valijson::ValidationResults::Error e;
  while (results.popError(e)) errors.push_back(e);
  auto has_deeper = [&](const valijson::ValidationResults::Error& a) {
    return std::any_of(errors.begin(), errors.end(), [&](const auto& b) {
      return b.context.size() > a.context.size() && std::equal(a.context.begin(), a.context.end(), b.context.begin());
    });
  };
  std::vector<std::pair<int, std::string>> found;
  std::set<std::string> seen;
  for (const auto& err : errors) {
    if (has_deeper(err)) continue;
    auto text = fmt::format("{}: {}", path_of(err.context), err.description);
    if (!seen.insert(text).second) continue;
    found.emplace_back(line_of(root, err.context), std::move(text));
  }
  std::stable_sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  out.reserve(found.size());
  for (auto& [line, text] : found) out.push_back(fmt::format("{}:{}: schema: {}", origin, line, text));
  return out;
}

}  // namespace starling::cli
