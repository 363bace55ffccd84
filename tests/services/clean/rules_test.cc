#include "services/clean/rules.h"

#include <cmath>

#include <gtest/gtest.h>

#include "starling/v1/ecowheels.pb.h"

namespace starling::clean {
namespace {

PipelineConfig pipeline() {
  return parse_pipeline(R"(pipeline: t
schema: {message: starling.v1.RideTelemetry}
clean:
  rules:
    - field: device_id
      required: true
    - field: battery_pct
      required: true
      range: {min: 0, max: 100}
    - field: speed_kmh
      range: {min: 0, max: 60, max_inclusive: false}
load: {table: x, columns: {s: speed_kmh}}
)",
                        "t.yaml");
}

v1::RideTelemetry valid() {
  v1::RideTelemetry r;
  r.set_device_id("bike-1");
  r.set_battery_pct(50);
  r.set_speed_kmh(20);
  return r;
}

TEST(RuleEngine, ValidRecordPassesEveryRule) {
  const auto p = pipeline();
  EXPECT_TRUE(RuleEngine(p).check(valid()).empty());
}

TEST(RuleEngine, MissingRequiredFieldIsReportedWithoutARangeCheck) {
  const auto p = pipeline();
  auto r = valid();
  r.clear_battery_pct();
  const auto reasons = RuleEngine(p).check(r);
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_EQ(reasons[0].rule(), "required");
  EXPECT_EQ(reasons[0].field(), "battery_pct");
  EXPECT_EQ(reasons[0].value(), "");
}

TEST(RuleEngine, ValueAboveMaxNamesValueAndExpectation) {
  const auto p = pipeline();
  auto r = valid();
  r.set_battery_pct(140);
  const auto reasons = RuleEngine(p).check(r);
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_EQ(reasons[0].rule(), "range");
  EXPECT_EQ(reasons[0].field(), "battery_pct");
  EXPECT_EQ(reasons[0].value(), "140");
  EXPECT_EQ(reasons[0].expected(), "0 <= x <= 100");
}

TEST(RuleEngine, BoundsAreInclusiveUnlessSaidOtherwise) {
  const auto p = pipeline();
  auto r = valid();
  r.set_battery_pct(100);  // inclusive max
  r.set_speed_kmh(0);      // inclusive min
  EXPECT_TRUE(RuleEngine(p).check(r).empty());
  r.set_speed_kmh(60);     // exclusive max
  const auto reasons = RuleEngine(p).check(r);
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_EQ(reasons[0].expected(), "0 <= x < 60");
}

TEST(RuleEngine, BelowMinIsRejected) {
  const auto p = pipeline();
  auto r = valid();
  r.set_speed_kmh(-0.5);
  ASSERT_EQ(RuleEngine(p).check(r).size(), 1u);
}

TEST(RuleEngine, NanIsNeverInRange) {
  const auto p = pipeline();
  auto r = valid();
  r.set_speed_kmh(std::nan(""));
  ASSERT_EQ(RuleEngine(p).check(r).size(), 1u);
}

TEST(RuleEngine, EveryBrokenRuleIsListedInRuleOrder) {
  const auto p = pipeline();
  v1::RideTelemetry r;
  r.set_speed_kmh(99);
  const auto reasons = RuleEngine(p).check(r);
  ASSERT_EQ(reasons.size(), 3u);
  EXPECT_EQ(reasons[0].field(), "device_id");
  EXPECT_EQ(reasons[1].field(), "battery_pct");
  EXPECT_EQ(reasons[2].field(), "speed_kmh");
}

TEST(RuleEngine, AbsentOptionalFieldSkipsItsRange) {
  const auto p = pipeline();
  auto r = valid();
  r.clear_speed_kmh();
  EXPECT_TRUE(RuleEngine(p).check(r).empty());
}

}  // namespace
}  // namespace starling::clean
