// The clean section of a pipeline file, checked for what it means: every
// problem is reported at once, each with its line, in file order with the
// problems the shared parse finds.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/clean/rule_config.h"
#include "services/clean/rules.h"

namespace starling::clean {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> problems_of(const std::string& rules) {
  try {
    parse_checked_pipeline("pipeline: t\nschema: {message: starling.v1.RideTelemetry}\nclean:\n  rules:\n" + rules +
                               "load: {table: x, columns: {s: speed_kmh}}\n",
                           "t.yaml");
  } catch (const ConfigError& e) {
    return e.problems();
  }
  return {};
}

TEST(CleanConfig, EveryProblemIsReportedWithItsLine) {
  // Given five broken rules on lines 5 to 15,
  const auto problems = problems_of(R"(    - field: speeed
      required: true
    - field: ride_id
      range: {min: 0}
    - field: speed_kmh
      range: {min: 9, max: 1}
    - field: device_id
      regex: 'bike-(['
    - field: temperature_c
      convert: {from: degF, to: kelvins}
    - field: lat
      round: 2
      typo: 1
)");
  // then each is listed, in file order, naming its line.
  ASSERT_EQ(problems.size(), 6u) << ::testing::PrintToString(problems);
  EXPECT_THAT(problems[0], HasSubstr("t.yaml:5:"));
  EXPECT_THAT(problems[0], HasSubstr("unknown field 'speeed'"));
  EXPECT_THAT(problems[1], HasSubstr("t.yaml:8:"));
  EXPECT_THAT(problems[1], HasSubstr("range needs a numeric field; 'ride_id' is string"));
  EXPECT_THAT(problems[2], HasSubstr("t.yaml:10:"));
  EXPECT_THAT(problems[2], HasSubstr("min 9 is greater than max 1"));
  EXPECT_THAT(problems[3], HasSubstr("t.yaml:12:"));
  EXPECT_THAT(problems[3], HasSubstr("not a valid regular expression"));
  EXPECT_THAT(problems[4], HasSubstr("t.yaml:14:"));
  EXPECT_THAT(problems[4], HasSubstr("unknown unit 'kelvins'"));
  EXPECT_THAT(problems[5], HasSubstr("t.yaml:17:"));
  EXPECT_THAT(problems[5], HasSubstr("clean.rules[5].typo: unknown key"));
}

TEST(CleanConfig, RegexIsRe2SyntaxWhichHasNoBackreferences) {
  // Backreferences need backtracking, which RE2 leaves out to match in linear time.
  const auto problems = problems_of("    - field: device_id\n      regex: '(a)\\1'\n");
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_THAT(problems[0], HasSubstr("not a valid regular expression '(a)\\1'"));
  EXPECT_THAT(problems[0], HasSubstr("RE2 syntax"));
  EXPECT_TRUE(problems_of("    - field: device_id\n      regex: 'bike-\\d{4}|scooter-[a-f0-9]+'\n").empty());
}

TEST(CleanConfig, RulesOnTheWrongTypeAreRefused) {
  EXPECT_THAT(problems_of("    - field: speed_kmh\n      regex: x\n").at(0), HasSubstr("regex needs a string field"));
  EXPECT_THAT(problems_of("    - field: ride_id\n      convert: {from: mph, to: km/h}\n").at(0),
              HasSubstr("convert needs a double or float field"));
  EXPECT_THAT(problems_of("    - field: ride_id\n      round: 1\n").at(0),
              HasSubstr("round needs a double or float field"));
  EXPECT_THAT(problems_of("    - field: speed_kmh\n      allowed: [1]\n").at(0),
              HasSubstr("allowed needs an enum, string or integer field"));
  EXPECT_THAT(problems_of("    - field: speed_kmh\n      timestamp: {max_late: 1h}\n").at(0),
              HasSubstr("timestamp needs a google.protobuf.Timestamp field"));
  EXPECT_THAT(problems_of("    - field: status\n      default: RIDING\n").at(0), HasSubstr("declare it `optional`"));
}

TEST(CleanConfig, BadValuesAreNamed) {
  EXPECT_THAT(problems_of("    - field: status\n      allowed: [RIDING, FLYING]\n").at(0),
              HasSubstr("'FLYING' is not a value of starling.v1.RideTelemetry.Status"));
  EXPECT_THAT(problems_of("    - field: speed_kmh\n      default: fast\n").at(0),
              HasSubstr("expected a number for field 'speed_kmh', got 'fast'"));
  EXPECT_THAT(problems_of("    - field: speed_kmh\n      convert: {from: mph, to: degC}\n").at(0),
              HasSubstr("cannot convert mph (speed) to degC (temperature)"));
  EXPECT_THAT(problems_of("    - field: speed_kmh\n      range: {min: 1, max: 1, max_inclusive: false}\n").at(0),
              HasSubstr("no value is in this range"));
  EXPECT_THAT(problems_of("    - field: temperature_c\n      fill_last_known: {max_age: 10m}\n").at(0),
              HasSubstr("needs keys.device_id"));
  EXPECT_THAT(problems_of("    - field: speed_kmh\n").at(0), HasSubstr("a rule needs at least one of"));
}

TEST(CleanConfig, RangeOnAStringFieldIsRefused) {
  const auto problems = problems_of("    - field: ride_id\n      range: {min: 0}\n");
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_THAT(problems[0], HasSubstr("t.yaml:6:"));
  EXPECT_THAT(problems[0], HasSubstr("range needs a numeric field"));
}

TEST(CleanConfig, RangeWithMinAboveMaxIsRefused) {
  EXPECT_THAT(problems_of("    - field: speed_kmh\n      range: {min: 9, max: 1}\n").at(0),
              HasSubstr("min 9 is greater than max 1"));
}

TEST(CleanConfig, RequiredOnAFieldWithoutPresenceIsRefused) {
  EXPECT_THAT(problems_of("    - field: status\n      required: true\n").at(0), HasSubstr("declare it `optional`"));
}

TEST(CleanConfig, TheCleanStageRefusesRulesTheSharedParseTook) {
  // The other stages read the rules as data only; the clean stage checks them before it cleans anything.
  const auto p = parse_pipeline(
      "pipeline: t\nschema: {message: starling.v1.RideTelemetry}\nclean:\n  rules:\n"
      "    - field: ride_id\n      range: {min: 0}\nload: {table: x, columns: {s: speed_kmh}}\n",
      "t.yaml");
  ASSERT_EQ(p.rules.size(), 1u);
  try {
    RuleEngine engine(p);
    ADD_FAILURE() << "a range on a string field was taken";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("t.yaml:6:14: clean.rules[0].range: range needs a numeric field; 'ride_id' is string"));
  }
}

TEST(CleanConfig, EveryRuleParses) {
  const auto p = parse_checked_pipeline(R"(pipeline: t
schema: {message: starling.v1.RideTelemetry}
keys: {device_id: device_id}
clean:
  dedupe: {window: 10m}
  rules:
    - field: speed_kmh
      convert: {from: mph, to: km/h}
      round: 1
      range: {min: 0, max: 60, min_inclusive: false}
    - field: temperature_c
      fill_last_known: {max_age: 5m}
      default: 15
    - field: status
      allowed: [RIDING, PARKED]
    - field: device_id
      regex: 'bike-\d+'
    - field: event_time
      timestamp: {max_future: 30s, max_late: 1d}
load: {table: x, columns: {s: speed_kmh}}
)",
                                        "t.yaml");
  EXPECT_EQ(p.dedupe_window_ms, 600'000);
  ASSERT_EQ(p.rules.size(), 5u);
  EXPECT_EQ(p.rules[0].convert->from, "mph");
  EXPECT_NEAR(compile_rules(p)[0].convert->factor, 1.609344, 1e-12);
  EXPECT_EQ(p.rules[0].round, 1);
  EXPECT_FALSE(p.rules[0].range->min_inclusive);
  EXPECT_EQ(p.rules[1].fill_max_age_ms, 300'000);
  EXPECT_EQ(p.rules[1].default_text, "15");
  EXPECT_EQ(p.rules[2].allowed, (std::vector<std::string>{"RIDING", "PARKED"}));
  EXPECT_EQ(p.rules[4].timestamp->max_late_ms, 86'400'000);
  EXPECT_EQ(p.rules[4].line, 18);
}

TEST(CleanConfig, ShippedPipelinesAreValid) {
  for (const auto* f : {"pipelines/ecowheels.yaml", "pipelines/weather.yaml"}) {
    EXPECT_NO_THROW(load_checked_pipeline(std::string(STARLING_SOURCE_DIR) + "/" + f)) << f;
  }
}

}  // namespace
}  // namespace starling::clean
