// `starling check` holds every pipeline file to the published JSON Schema
// too: the schema and the pipeline parser agree on every file we ship and on
// every broken one, and a schema error names the line and the path.

#include "services/cli/schema_check.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "services/clean/rule_config.h"
#include "services/common/error.h"
#include "services/common/pipeline.h"
#include "tests/support/temp_dir.h"

namespace starling::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::filesystem::path> yaml_files(const std::string& dir) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(testing::source_path(dir))) {
    const auto name = e.path().filename().string();
    if (name.ends_with(".yaml") && !name.ends_with(".test.yaml")) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(SchemaCheck, EveryPipelineWeShipValidates) {
  auto files = yaml_files("pipelines");
  files.push_back(testing::source_path("tests/services/extract/data/weather_poll.yaml"));
  ASSERT_GE(files.size(), 3u);
  for (const auto& f : files) {
    EXPECT_NO_THROW(clean::load_checked_pipeline(f.string())) << f;
    EXPECT_THAT(schema_problems(slurp(f), f.string()), IsEmpty()) << f;
  }
}

TEST(SchemaCheck, EveryBrokenPipelineIsRefusedByTheSchemaAsByTheParser) {
  const auto files = yaml_files("tests/contract/bad_pipelines");
  ASSERT_GE(files.size(), 5u);
  for (const auto& f : files) {
    EXPECT_THROW(clean::load_checked_pipeline(f.string()), ConfigError) << f;
    EXPECT_THAT(schema_problems(slurp(f), f.string()), Not(IsEmpty())) << f;
  }
}

constexpr const char* kRulesSchema = R"({
  "type": "object",
  "properties": {
    "n": {"type": "integer"},
    "clean": {"type": "object", "properties": {
      "rules": {"type": "array", "items": {"$ref": "#/$defs/rule"}}}}
  },
  "$defs": {"rule": {"type": "object", "required": ["field"], "additionalProperties": false,
                     "properties": {"field": {"type": "string"}, "round": {"type": "integer"}}}}
})";

TEST(SchemaCheck, AnErrorNamesTheLineAndThePathOfWhatIsWrong) {
  const std::string yaml =
      "n: 1\n"
      "clean:\n"
      "  rules:\n"
      "    - field: a\n"
      "    - round: 2\n"
      "    - field: c\n"
      "      colour: red\n";
  const auto problems = schema_problems(yaml, "p.yaml", kRulesSchema);
  ASSERT_THAT(problems, Not(IsEmpty()));
  bool missing = false;
  bool unknown = false;
  for (const auto& p : problems) {
    missing = missing || (p.starts_with("p.yaml:5: schema: clean.rules[1]") && p.find("field") != std::string::npos);
    unknown = unknown || (p.starts_with("p.yaml:6: schema: clean.rules[2]") && p.find("colour") != std::string::npos);
  }
  // Only the deepest: not also "clean.rules: failed to validate item #1".
  EXPECT_EQ(problems.size(), 2u) << ::testing::PrintToString(problems);
  EXPECT_TRUE(missing) << ::testing::PrintToString(problems);
  EXPECT_TRUE(unknown) << ::testing::PrintToString(problems);
}

TEST(SchemaCheck, ScalarsAreTypedAsYamlsCoreSchemaTypesThemAfterInterpolation) {
  EXPECT_THAT(schema_problems("n: 3\n", "p.yaml", kRulesSchema), IsEmpty());
  // Quoted, it is a string.
  EXPECT_THAT(schema_problems("n: \"3\"\n", "p.yaml", kRulesSchema), ElementsAre(HasSubstr("p.yaml:1: schema: n")));
  EXPECT_THAT(schema_problems("n: three\n", "p.yaml", kRulesSchema), Not(IsEmpty()));
  // ${VAR:-default} first, as the pipeline parser does.
  EXPECT_THAT(schema_problems("n: ${STARLING_SCHEMA_TEST_UNSET_N:-4}\n", "p.yaml", kRulesSchema), IsEmpty());
  // A file that is not YAML is the parser's to report.
  EXPECT_THAT(schema_problems("n: [1,\n", "p.yaml", kRulesSchema), IsEmpty());
}

}  // namespace
}  // namespace starling::cli
