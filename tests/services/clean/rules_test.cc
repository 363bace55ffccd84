#include "services/clean/rules.h"

#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <array>
#include <cmath>

#include "services/common/records.h"
#include "starling/v1/ecowheels.pb.h"

namespace starling::clean {
namespace {

using google::protobuf::util::TimeUtil;

constexpr int64_t kIngest = 1'700'000'000'000;  // a fixed ingest time: results never depend on the clock

PipelineConfig pipeline(const std::string& rules, const std::string& keys = "") {
  return parse_pipeline("pipeline: t\nschema: {message: starling.v1.RideTelemetry}\n" + keys + "clean:\n  rules:\n" +
                            rules + "load: {table: x, columns: {s: speed_kmh}}\n",
                        "t.yaml");
}

const char* kBasic = R"(    - field: device_id
      required: true
    - field: battery_pct
      required: true
      range: {min: 0, max: 100}
    - field: speed_kmh
      range: {min: 0, max: 60, max_inclusive: false}
)";

v1::RideTelemetry valid() {
  v1::RideTelemetry r;
  r.set_device_id("bike-1");
  r.set_battery_pct(50);
  r.set_speed_kmh(20);
  return r;
}

Outcome run(const PipelineConfig& p, v1::RideTelemetry& r, const DeviceMemory& memory = {},
            int64_t event_ms = kIngest) {
  return RuleEngine(p).apply(r, {kIngest, event_ms}, memory);
}

TEST(RuleEngine, ValidRecordPassesEveryRuleUnchanged) {
  const auto p = pipeline(kBasic);
  auto r = valid();
  const auto out = run(p, r);
  EXPECT_TRUE(out.reasons.empty());
  EXPECT_TRUE(out.changes.empty());
  EXPECT_EQ(r.SerializeAsString(), valid().SerializeAsString());
}

TEST(RuleEngine, MissingRequiredFieldIsReportedWithoutARangeCheck) {
  const auto p = pipeline(kBasic);
  auto r = valid();
  r.clear_battery_pct();
  const auto reasons = run(p, r).reasons;
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_EQ(reasons[0].rule(), "required");
  EXPECT_EQ(reasons[0].field(), "battery_pct");
  EXPECT_EQ(reasons[0].value(), "");
  EXPECT_EQ(reasons[0].expected(), "a value");
}

TEST(RuleEngine, EmptyStringCountsAsMissingForRequired) {
  const auto p = pipeline(kBasic);
  auto r = valid();
  r.set_device_id("");
  const auto reasons = run(p, r).reasons;
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_EQ(reasons[0].field(), "device_id");
}

TEST(RuleEngine, ValueAboveMaxNamesValueAndExpectation) {
  const auto p = pipeline(kBasic);
  auto r = valid();
  r.set_battery_pct(140);
  const auto reasons = run(p, r).reasons;
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_EQ(reasons[0].rule(), "range");
  EXPECT_EQ(reasons[0].field(), "battery_pct");
  EXPECT_EQ(reasons[0].value(), "140");
  EXPECT_EQ(reasons[0].expected(), "0 <= x <= 100");
}

TEST(RuleEngine, BoundsAreInclusiveUnlessSaidOtherwise) {
  const auto p = pipeline(kBasic);
  auto r = valid();
  r.set_battery_pct(100);  // inclusive max
  r.set_speed_kmh(0);      // inclusive min
  EXPECT_TRUE(run(p, r).reasons.empty());
  r.set_speed_kmh(60);  // exclusive max
  const auto reasons = run(p, r).reasons;
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_EQ(reasons[0].expected(), "0 <= x < 60");
  r.set_speed_kmh(59.999);
  EXPECT_TRUE(run(p, r).reasons.empty());
}

TEST(RuleEngine, ExclusiveMinRefusesTheBoundItself) {
  const auto p = pipeline("    - field: speed_kmh\n      range: {min: 0, min_inclusive: false}\n");
  auto r = valid();
  r.set_speed_kmh(0);
  const auto reasons = run(p, r).reasons;
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_EQ(reasons[0].expected(), "0 < x");
  r.set_speed_kmh(1e-9);
  EXPECT_TRUE(run(p, r).reasons.empty());
}

TEST(RuleEngine, BelowMinIsRejected) {
  const auto p = pipeline(kBasic);
  auto r = valid();
  r.set_speed_kmh(-0.5);
  ASSERT_EQ(run(p, r).reasons.size(), 1u);
}

TEST(RuleEngine, NanAndInfinityAreNeverInRange) {
  const auto p = pipeline(kBasic);
  auto r = valid();
  r.set_speed_kmh(std::nan(""));
  auto reasons = run(p, r).reasons;
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_EQ(reasons[0].value(), "nan");
  r.set_speed_kmh(INFINITY);
  EXPECT_EQ(run(p, r).reasons.size(), 1u);
}

TEST(RuleEngine, EveryBrokenRuleIsListedInRuleOrder) {
  const auto p = pipeline(kBasic);
  v1::RideTelemetry r;
  r.set_speed_kmh(99);
  const auto reasons = run(p, r).reasons;
  ASSERT_EQ(reasons.size(), 3u);
  EXPECT_EQ(reasons[0].field(), "device_id");
  EXPECT_EQ(reasons[1].field(), "battery_pct");
  EXPECT_EQ(reasons[2].field(), "speed_kmh");
}

TEST(RuleEngine, AbsentOptionalFieldSkipsItsChecks) {
  const auto p = pipeline(kBasic + std::string("    - field: ride_id\n      regex: '^r[0-9]+$'\n"));
  auto r = valid();
  r.clear_speed_kmh();
  EXPECT_TRUE(run(p, r).reasons.empty());
}

TEST(RuleEngine, AllowedEnumValuesByName) {
  const auto p = pipeline("    - field: status\n      allowed: [RIDING, PARKED]\n");
  auto r = valid();
  r.set_status(v1::RideTelemetry::RIDING);
  EXPECT_TRUE(run(p, r).reasons.empty());
  r.set_status(v1::RideTelemetry::FAULT);
  const auto reasons = run(p, r).reasons;
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_EQ(reasons[0].rule(), "allowed");
  EXPECT_EQ(reasons[0].value(), "FAULT");
  EXPECT_EQ(reasons[0].expected(), "one of: RIDING, PARKED");
}

TEST(RuleEngine, AllowedStrings) {
  const auto p = pipeline("    - field: ride_id\n      allowed: [a, b]\n");
  auto r = valid();
  r.set_ride_id("b");
  EXPECT_TRUE(run(p, r).reasons.empty());
  r.set_ride_id("B");
  EXPECT_EQ(run(p, r).reasons.size(), 1u);
}

TEST(RuleEngine, RegexMustMatchTheWholeValue) {
  const auto p = pipeline("    - field: device_id\n      regex: 'bike-[0-9]{4}'\n");
  auto r = valid();
  r.set_device_id("bike-0042");
  EXPECT_TRUE(run(p, r).reasons.empty());
  r.set_device_id("my-bike-0042");
  const auto reasons = run(p, r).reasons;
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_EQ(reasons[0].rule(), "regex");
  EXPECT_EQ(reasons[0].value(), "my-bike-0042");
  EXPECT_EQ(reasons[0].expected(), "matches /bike-[0-9]{4}/");
}

TEST(RuleEngine, RegexOnAMegabyteValueNeitherCrashesNorStalls) {
  // std::regex recursed once per character and overflowed the stack on a
  // value of about 100 kB (ingest takes bodies up to 4 MiB): one such record
  // crashed the stage again on every restart.
  const auto p = pipeline("    - field: ride_id\n      regex: '[a-z]+'\n");
  auto r = valid();
  r.set_ride_id(std::string(1 << 20, 'a'));
  EXPECT_TRUE(run(p, r).reasons.empty());
  r.set_ride_id(std::string(1 << 20, 'a') + "!");
  const auto reasons = run(p, r).reasons;
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_EQ(reasons[0].rule(), "regex");
}

TEST(RuleEngine, TimestampTooFarInTheFutureOrTooLateIsRejected) {
  const auto p = pipeline("    - field: event_time\n      timestamp: {max_future: 5m, max_late: 1d}\n");
  auto r = valid();
  auto at = [&](int64_t ms) {
    *r.mutable_event_time() = TimeUtil::MillisecondsToTimestamp(ms);
    return run(p, r).reasons;
  };
  EXPECT_TRUE(at(kIngest).empty());
  EXPECT_TRUE(at(kIngest + 300'000).empty());     // exactly the allowed skew
  EXPECT_TRUE(at(kIngest - 86'400'000).empty());  // exactly the allowed lateness
  auto future = at(kIngest + 300'001);
  ASSERT_EQ(future.size(), 1u);
  EXPECT_EQ(future[0].rule(), "timestamp");
  EXPECT_EQ(future[0].field(), "event_time");
  EXPECT_EQ(future[0].expected(), "at most 5m after ingest time 2023-11-14T22:13:20Z");
  auto late = at(kIngest - 86'400'001);
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(late[0].expected(), "at most 1d before ingest time 2023-11-14T22:13:20Z");
}

TEST(RuleEngine, MissingTimestampIsOnlyRejectedWhenRequired) {
  auto r = valid();
  EXPECT_TRUE(run(pipeline("    - field: event_time\n      timestamp: {max_late: 1h}\n"), r).reasons.empty());
  const auto reasons =
      run(pipeline("    - field: event_time\n      required: true\n      timestamp: {max_late: 1h}\n"), r).reasons;
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_EQ(reasons[0].rule(), "required");
}

TEST(RuleEngine, ConvertsMphToKmhBeforeTheRangeCheck) {
  const auto p = pipeline("    - field: speed_kmh\n      convert: {from: mph, to: km/h}\n      range: {max: 60}\n");
  auto r = valid();
  r.set_speed_kmh(10);
  auto out = run(p, r);
  EXPECT_TRUE(out.reasons.empty());
  EXPECT_DOUBLE_EQ(r.speed_kmh(), 16.09344);
  ASSERT_EQ(out.changes.size(), 1u);
  EXPECT_EQ(change_label(out.changes[0]), "convert(mph->km/h)");
  EXPECT_EQ(to_text(out.changes[0].from), "10");
  EXPECT_EQ(to_text(out.changes[0].to), "16.09344");
  r.set_speed_kmh(40);  // 64.4 km/h: over the limit only once converted
  out = run(p, r);
  ASSERT_EQ(out.reasons.size(), 1u);
  EXPECT_EQ(out.reasons[0].value(), "64.37376");
}

TEST(RuleEngine, ConvertsFahrenheitToCelsiusWithItsOffset) {
  const auto p = pipeline("    - field: temperature_c\n      convert: {from: degF, to: degC}\n");
  auto r = valid();
  r.set_temperature_c(212);
  run(p, r);
  EXPECT_NEAR(r.temperature_c(), 100, 1e-9);
  r.set_temperature_c(-40);
  run(p, r);
  EXPECT_NEAR(r.temperature_c(), -40, 1e-9);
  EXPECT_NEAR(unit_conversion("K", "°F")->factor * 273.15 + unit_conversion("K", "°F")->offset, 32, 1e-9);
}

TEST(RuleEngine, ConvertLeavesAMissingValueMissing) {
  const auto p = pipeline("    - field: temperature_c\n      convert: {from: degF, to: degC}\n");
  auto r = valid();
  EXPECT_TRUE(run(p, r).changes.empty());
  EXPECT_FALSE(r.has_temperature_c());
}

TEST(RuleEngine, RoundsToDecimalsAndReportsOnlyRealChanges) {
  const auto p = pipeline("    - field: lat\n      round: 3\n");
  auto r = valid();
  r.set_lat(38.71234);
  auto out = run(p, r);
  EXPECT_DOUBLE_EQ(r.lat(), 38.712);
  ASSERT_EQ(out.changes.size(), 1u);
  EXPECT_EQ(change_label(out.changes[0]), "round(3)");
  out = run(p, r);  // already rounded: no change
  EXPECT_TRUE(out.changes.empty());
  r.set_lat(-0.0005);  // halfway rounds away from zero
  run(p, r);
  EXPECT_DOUBLE_EQ(r.lat(), -0.001);
}

TEST(RuleEngine, RoundingLeavesNanForTheRangeCheck) {
  const auto p = pipeline("    - field: lat\n      round: 1\n      range: {min: -90, max: 90}\n");
  auto r = valid();
  r.set_lat(std::nan(""));
  const auto out = run(p, r);
  EXPECT_TRUE(out.changes.empty());
  ASSERT_EQ(out.reasons.size(), 1u);
}

TEST(RuleEngine, DefaultFillsAMissingValueAndSatisfiesRequired) {
  const auto p = pipeline("    - field: temperature_c\n      default: 15\n      required: true\n");
  auto r = valid();
  auto out = run(p, r);
  EXPECT_TRUE(out.reasons.empty());
  EXPECT_EQ(r.temperature_c(), 15);
  ASSERT_EQ(out.changes.size(), 1u);
  EXPECT_EQ(change_label(out.changes[0]), "default");
  EXPECT_EQ(out.changes[0].to, FieldValue(15.0));  // a double field's value stays a number
  r.set_temperature_c(3);                          // a value of its own is kept
  EXPECT_TRUE(run(p, r).changes.empty());
  EXPECT_EQ(r.temperature_c(), 3);
}

TEST(RuleEngine, DefaultOfAString) {
  const auto p = pipeline("    - field: ride_id\n      default: none\n");
  auto r = valid();
  const auto out = run(p, r);
  EXPECT_EQ(r.ride_id(), "none");
  ASSERT_EQ(out.changes.size(), 1u);
  EXPECT_EQ(out.changes[0].to, FieldValue(std::string("none")));
}

const char* kFill = "    - field: temperature_c\n      fill_last_known: {max_age: 10m}\n      required: true\n";
const char* kKeys = "keys: {device_id: device_id}\n";

TEST(RuleEngine, FillsFromTheLastKnownValueWithinMaxAge) {
  const auto p = pipeline(kFill, kKeys);
  auto first = valid();
  first.set_temperature_c(21.5);
  auto out = run(p, first, {}, kIngest);
  ASSERT_EQ(out.observed.size(), 1u);
  DeviceMemory memory;
  EXPECT_TRUE(remember(memory, out.observed));

  auto later = valid();  // no temperature, 10 minutes later: exactly max_age
  out = run(p, later, memory, kIngest + 600'000);
  EXPECT_TRUE(out.reasons.empty());
  EXPECT_EQ(later.temperature_c(), 21.5);
  ASSERT_EQ(out.changes.size(), 1u);
  EXPECT_EQ(change_label(out.changes[0]), "fill_last_known");
  EXPECT_TRUE(out.observed.empty()) << "a filled value is not remembered as a new observation";

  auto too_late = valid();  // one ms past max_age: not filled, so required rejects it
  out = run(p, too_late, memory, kIngest + 600'001);
  EXPECT_FALSE(too_late.has_temperature_c());
  ASSERT_EQ(out.reasons.size(), 1u);
  EXPECT_EQ(out.reasons[0].rule(), "required");

  auto earlier = valid();  // an event older than the known value is not filled from the future
  out = run(p, earlier, memory, kIngest - 1);
  EXPECT_FALSE(earlier.has_temperature_c());
}

TEST(RuleEngine, FillThenDefaultWhenNothingIsKnown) {
  const auto p =
      pipeline("    - field: temperature_c\n      fill_last_known: {max_age: 1m}\n      default: 15\n", kKeys);
  auto r = valid();
  const auto out = run(p, r);
  EXPECT_EQ(r.temperature_c(), 15);
  ASSERT_EQ(out.changes.size(), 1u);
  EXPECT_EQ(change_label(out.changes[0]), "default");
}

TEST(RuleEngine, OlderObservationDoesNotOverwriteANewerOne) {
  DeviceMemory memory{{9, {100, "new"}}};
  EXPECT_FALSE(remember(memory, {{9, {50, "old"}}}));
  EXPECT_EQ(memory[9].value, "new");
  EXPECT_TRUE(remember(memory, {{9, {150, "newer"}}}));
  EXPECT_EQ(memory[9].value, "newer");
}

// Rules that changes point at: a plain one, a round(1), a degF->degC convert.
std::array<FieldRule, 3> described_rules() {
  std::array<FieldRule, 3> r;
  r[0].field = "a";
  r[1].field = "b";
  r[1].round = 1;
  r[2].field = "c";
  r[2].convert = ConvertRule{"degF", "degC"};
  return r;
}

TEST(RuleEngine, ChangesAreDescribedAsTextForLogs) {
  const auto [a, b, c] = described_rules();
  using K = Change::Kind;
  EXPECT_EQ(describe_changes({{&a, K::kDefaultValue, {}, std::string("1")},
                              {&b, K::kRound, 1.26, 1.3},
                              {&c, K::kConvert, 0.1f, 1e-7f}}),  // a float field's values read as floats
            "a:default(missing->1);b:round(1)(1.26->1.3);c:convert(degF->degC)(0.1->1e-07)");
}

TEST(RuleEngine, ChangesGoIntoTheEnvelopeTypedAsTheirFields) {
  const auto [a, b, c] = described_rules();
  using K = Change::Kind;
  google::protobuf::RepeatedPtrField<v1::Change> out;
  to_proto({{&b, K::kRound, 1.26, 1.3},
            {&c, K::kConvert, 0.1f, 1e-7f},
            {&a, K::kDefaultValue, std::string("x"), std::string("1")}},
           out);
  ASSERT_EQ(out.size(), 3);
  EXPECT_EQ(out[0].field(), "b");
  EXPECT_EQ(out[0].rule(), "round(1)");
  EXPECT_EQ(out[0].from_number(), 1.26);
  EXPECT_EQ(out[0].to_number(), 1.3);
  EXPECT_EQ(out[1].rule(), "convert(degF->degC)");
  ASSERT_EQ(out[1].from_case(), v1::Change::kFromFloat);  // a float field's value stays a float
  EXPECT_EQ(out[1].from_float(), 0.1f);
  EXPECT_EQ(out[1].to_float(), 1e-7f);
  EXPECT_EQ(out[2].from_text(), "x");
  // Reused for the next record: exactly its changes, nothing of the last.
  to_proto({{&a, K::kDefaultValue, {}, std::string("1")}}, out);
  ASSERT_EQ(out.size(), 1);
  EXPECT_EQ(out[0].field(), "a");
  EXPECT_EQ(out[0].rule(), "default");
  EXPECT_EQ(out[0].from_case(), v1::Change::FROM_NOT_SET);
  EXPECT_EQ(out[0].to_text(), "1");
}

TEST(RuleEngine, ChangedValuesReadAsTheFieldDoes) {
  const auto p = pipeline("    - field: lat\n      convert: {from: mph, to: km/h}\n      round: 2\n");
  auto r = valid();
  r.set_lat(1.0 / 3);
  const auto before = field_text(r, r.GetDescriptor()->FindFieldByName("lat"));
  const auto out = run(p, r);
  ASSERT_EQ(out.changes.size(), 2u);
  EXPECT_EQ(to_text(out.changes[0].from), before);
  EXPECT_EQ(to_text(out.changes[0].to), to_text(out.changes[1].from));
  EXPECT_EQ(to_text(out.changes[1].to), field_text(r, r.GetDescriptor()->FindFieldByName("lat")));
  EXPECT_EQ(to_text(out.changes[1].to), "0.54");
}

}  // namespace
}  // namespace starling::clean
