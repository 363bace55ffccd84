// The one JSON→record converter (records.h record_from_json), which ingest's
// bodies and `starling test`'s fixtures share.
#include "services/common/records.h"

#include <google/protobuf/wrappers.pb.h>
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "starling/v1/ecowheels.pb.h"

namespace starling {
namespace {

using nlohmann::json;

PipelineConfig of(const google::protobuf::Descriptor* d) {
  PipelineConfig p;
  p.message_type = d->full_name();
  p.descriptor = d;
  return p;
}

TEST(RecordFromJson, IntegersAreRangeCheckedPerType) {
  auto p = of(google::protobuf::Int32Value::descriptor());
  EXPECT_TRUE(record_from_json(p, json{{"value", 2147483647}}));
  EXPECT_TRUE(record_from_json(p, json{{"value", "-12"}}));
  EXPECT_TRUE(record_from_json(p, json{{"value", 5.0}}));
  auto over = record_from_json(p, json{{"value", 2147483648LL}}, 7);
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().index, 7u);
  EXPECT_EQ(over.error().field, "value");
  EXPECT_FALSE(record_from_json(p, json{{"value", 1.5}}));
  EXPECT_FALSE(record_from_json(p, json{{"value", "12abc"}}));
  p = of(google::protobuf::UInt64Value::descriptor());
  EXPECT_TRUE(record_from_json(p, json{{"value", "18446744073709551615"}}));
  EXPECT_FALSE(record_from_json(p, json{{"value", -1}}));
  EXPECT_FALSE(record_from_json(p, json{{"value", 1e30}}));
  p = of(google::protobuf::BytesValue::descriptor());
  auto bytes = record_from_json(p, json{{"value", "aGk="}});
  ASSERT_TRUE(bytes);
  EXPECT_EQ(static_cast<google::protobuf::BytesValue&>(**bytes).value(), "hi");
  EXPECT_FALSE(record_from_json(p, json{{"value", "***"}}));
}

// Proto JSON takes a double as a number, a decimal string or one of three
// names; anything else is refused with what was expected.
TEST(RecordFromJson, DoublesTakeNumbersDecimalStringsAndTheSpecialNames) {
  const auto p = of(google::protobuf::DoubleValue::descriptor());
  auto value = [&](const json& v) {
    auto r = record_from_json(p, json{{"value", v}});
    EXPECT_TRUE(r) << v.dump() << ": " << (r ? "" : r.error().reason);
    return r ? static_cast<google::protobuf::DoubleValue&>(**r).value() : 0.0;
  };
  EXPECT_EQ(value(18.26), 18.26);
  EXPECT_EQ(value("18.26"), 18.26);
  EXPECT_EQ(value("-1e3"), -1000.0);
  EXPECT_TRUE(std::isnan(value("NaN")));
  EXPECT_EQ(value("-Infinity"), -INFINITY);
  for (const auto* bad : {"", "18.26x", "0x10", " 1", "1e999", "nan"}) {
    auto r = record_from_json(p, json{{"value", bad}});
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().field, "value");
    EXPECT_NE(r.error().reason.find("expected a number"), std::string::npos) << r.error().reason;
  }
}

// Errors name the field's path, including the JSON (lowerCamel) spelling and
// wrong types at any depth.
TEST(RecordFromJson, ErrorsNameTheFieldAndWhatWasExpected) {
  const auto p = of(v1::RideTelemetry::descriptor());
  auto ok = record_from_json(p, json{{"deviceId", "bike-1"}, {"event_time", "2024-05-01T10:00:00Z"}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(static_cast<v1::RideTelemetry&>(**ok).device_id(), "bike-1");

  auto number_for_string = record_from_json(p, json{{"device_id", 42}});
  ASSERT_FALSE(number_for_string);
  EXPECT_EQ(number_for_string.error().field, "device_id");
  EXPECT_EQ(number_for_string.error().reason, "expected a string, got 42");

  auto unknown = record_from_json(p, json{{"speeed", 1}});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().field, "speeed");
  EXPECT_NE(unknown.error().reason.find("unknown field of starling.v1.RideTelemetry"), std::string::npos);

  auto bad_time = record_from_json(p, json{{"event_time", "yesterday"}});
  ASSERT_FALSE(bad_time);
  EXPECT_NE(bad_time.error().reason.find("RFC 3339"), std::string::npos);

  auto not_object = record_from_json(p, json::array({1}));
  ASSERT_FALSE(not_object);
  EXPECT_EQ(not_object.error().field, "");
}

}  // namespace
}  // namespace starling
