#include "services/common/pipeline.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/support/temp_dir.h"

namespace starling {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const char* kMinimal = R"(pipeline: t
schema:
  message: starling.v1.RideTelemetry
load:
  table: rides
  columns:
    speed: speed_kmh
)";

std::string error_of(const std::string& yaml) {
  try {
    parse_pipeline(yaml, "t.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(PipelineConfig, ShippedEcowheelsPipelineLoads) {
  const auto p = load_pipeline(testing::source_path("pipelines/ecowheels.yaml"));
  EXPECT_EQ(p.name, "ecowheels");
  EXPECT_EQ(p.descriptor->full_name(), "starling.v1.RideTelemetry");
  EXPECT_EQ(p.raw_topic(), "ecowheels.raw");
  EXPECT_EQ(p.partitions, 3);
  ASSERT_NE(p.device_id_field, nullptr);
  EXPECT_EQ(p.device_id_field->name(), "device_id");
  EXPECT_GE(p.rules.size(), 2u);
  EXPECT_EQ(p.table, "ride_telemetry");
  EXPECT_EQ(p.stall_after_ms, 30'000);
}

TEST(PipelineConfig, MinimalPipelineTakesDefaults) {
  const auto p = parse_pipeline(kMinimal, "t.yaml");
  EXPECT_EQ(p.partitions, 3);
  EXPECT_TRUE(p.rules.empty());
  ASSERT_EQ(p.columns.size(), 1u);
  EXPECT_EQ(p.columns[0].name, "speed");
}

TEST(InterpolateEnv, NamesDefaultsAndLiteralDollars) {
  const EnvLookup env = [](const std::string& n) -> std::optional<std::string> {
    if (n == "TABLE") return "rides";
    if (n == "EMPTY") return "";
    return std::nullopt;
  };
  EXPECT_EQ(*interpolate_env("${TABLE}", env), "rides");
  EXPECT_EQ(*interpolate_env("t_${TABLE}_${MISSING:-x}", env), "t_rides_x");
  EXPECT_EQ(*interpolate_env("${EMPTY:-fallback}", env), "fallback");
  EXPECT_EQ(*interpolate_env("${MISSING:-}", env), "");
  EXPECT_EQ(*interpolate_env("cost $$5 ${TABLE}$", env), "cost $5 rides$");
  EXPECT_EQ(*interpolate_env("^bike-[0-9]{4}$", env), "^bike-[0-9]{4}$");  // a regex is left alone

  auto unset = interpolate_env("Bearer ${API_KEY}", env);
  ASSERT_FALSE(unset.has_value());
  EXPECT_THAT(unset.error().message, HasSubstr("the environment variable API_KEY is not set"));
  EXPECT_THAT(unset.error().message, HasSubstr("${API_KEY:-value}"));
  auto bad = interpolate_env("${1ABC}", env);
  ASSERT_FALSE(bad.has_value());
  EXPECT_THAT(bad.error().message, HasSubstr("expected ${NAME}"));
  auto open = interpolate_env("x ${TABLE", env);
  ASSERT_FALSE(open.has_value());
  EXPECT_THAT(open.error().message, HasSubstr("without a closing }"));
}

TEST(PipelineConfig, ValuesTakeEnvironmentVariablesAndAMissingOneIsNamedWithItsLine) {
  ::setenv("STARLING_TEST_TABLE", "rides_from_env", 1);
  ::unsetenv("STARLING_TEST_UNSET");
  std::string yaml = kMinimal;
  yaml.replace(yaml.find("table: rides"), 12, "table: ${STARLING_TEST_TABLE}");
  EXPECT_EQ(parse_pipeline(yaml, "t.yaml").table, "rides_from_env");
  yaml.replace(yaml.find("${STARLING_TEST_TABLE}"), 22, "${STARLING_TEST_UNSET}");
  const auto err = error_of(yaml);
  EXPECT_THAT(err, HasSubstr("t.yaml:5:10: load.table"));
  EXPECT_THAT(err, HasSubstr("STARLING_TEST_UNSET is not set"));
  ::unsetenv("STARLING_TEST_TABLE");
}

TEST(PipelineConfig, UnknownFieldNamesItsLineAndTheFieldsThatExist) {
  const auto err = error_of(std::string(kMinimal) + "clean:\n  rules:\n    - field: speeed\n      required: true\n");
  EXPECT_THAT(err, HasSubstr("t.yaml:10:"));
  EXPECT_THAT(err, HasSubstr("clean.rules[0].field"));
  EXPECT_THAT(err, HasSubstr("unknown field 'speeed'"));
  EXPECT_THAT(err, HasSubstr("speed_kmh"));
}

TEST(PipelineConfig, NonNumericBoundNamesTheKey) {
  const auto err =
      error_of(std::string(kMinimal) + "clean:\n  rules:\n    - field: speed_kmh\n      range:\n        max: fast\n");
  EXPECT_THAT(err, HasSubstr("t.yaml:12:"));
  EXPECT_THAT(err, HasSubstr("clean.rules[0].range.max: expected a number, got 'fast'"));
}

TEST(PipelineConfig, RulesAreParsedButTheirMeaningIsTheStagesCheck) {
  // Given a range on a string field and, on the next rule, a typo,
  const auto yaml =
      std::string(kMinimal) +
      "clean:\n  rules:\n    - field: ride_id\n      range: {min: 0}\n    - field: speed_kmh\n      rnge: 1\n";
  // the parse alone finds only the typo,
  EXPECT_THAT(error_of(yaml), Not(HasSubstr("ride_id")));
  // and a RuleCheck's problems come right after the rule's own, in file order.
  const RuleCheck check = [](const PipelineConfig& p, const FieldRule& rule, std::vector<std::string>& problems) {
    if (rule.range) problems.push_back(config_problem(p.file, rule.at.range, "checked"));
  };
  try {
    parse_pipeline(yaml, "t.yaml", check);
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.problems().size(), 3u) << e.what();
    EXPECT_EQ(e.problems()[0], "t.yaml:11:14: clean.rules[0].range: checked");
    EXPECT_THAT(e.problems()[1], HasSubstr("t.yaml:13:7: clean.rules[1].rnge: unknown key"));
    EXPECT_THAT(e.problems()[2], HasSubstr("t.yaml:12:7: clean.rules[1]: a rule needs at least one of"));
  }
}

TEST(PipelineConfig, UnknownKeyListsTheAllowedOnes) {
  const auto err = error_of(std::string(kMinimal) + "sagas: {}\n");
  EXPECT_THAT(err, HasSubstr("t.yaml:8:"));
  EXPECT_THAT(err, HasSubstr("unknown key"));
  EXPECT_THAT(err, HasSubstr("saga"));
}

TEST(PipelineConfig, UnknownMessageTypeIsNamed) {
  const auto err = error_of("pipeline: t\nschema:\n  message: starling.v1.Nope\nload: {table: x, columns: {a: b}}\n");
  EXPECT_THAT(err, HasSubstr("t.yaml:3:"));
  EXPECT_THAT(err, HasSubstr("no Protobuf message 'starling.v1.Nope'"));
}

TEST(PipelineConfig, BrokenYamlNamesTheLine) {
  const auto err = error_of("pipeline: t\nschema: [unclosed\n");
  EXPECT_THAT(err, HasSubstr("t.yaml:"));
}

TEST(PipelineConfig, BadDurationIsExplained) {
  const auto err = error_of(std::string(kMinimal) + "saga:\n  stall_after: soon\n");
  EXPECT_THAT(err, HasSubstr("saga.stall_after: expected a duration"));
}

TEST(PipelineConfig, SagaSectionTakesOverdueAfterAndAtomicAndRefusesTheOldFailAfter) {
  const auto p = parse_pipeline(
      std::string(kMinimal) + "saga:\n  stall_after: 1m\n  overdue_after: 10m\n  atomic: true\n", "t.yaml");
  EXPECT_EQ(p.overdue_after_ms, 600'000);
  EXPECT_TRUE(p.saga_atomic);
  EXPECT_FALSE(parse_pipeline(kMinimal, "t.yaml").saga_atomic) << "all-or-nothing is opt-in";
  const auto err = error_of(std::string(kMinimal) + "saga:\n  fail_after: 5m\n");
  EXPECT_THAT(err, HasSubstr("saga.fail_after: renamed overdue_after"));
  EXPECT_THAT(error_of(std::string(kMinimal) + "saga:\n  atomic: maybe\n"), HasSubstr("saga.atomic"));
}

TEST(PipelineConfig, ColumnNamesMustBeIdentifiers) {
  const auto err = error_of(
      "pipeline: t\nschema:\n  message: starling.v1.RideTelemetry\nload:\n  table: rides\n  columns:\n    \"a; drop "
      "table x\": speed_kmh\n");
  EXPECT_THAT(err, HasSubstr("expected an identifier"));
}

}  // namespace
}  // namespace starling
