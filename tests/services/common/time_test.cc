#include "services/common/time.h"

#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace starling {
namespace {

using google::protobuf::util::TimeUtil;

constexpr int64_t kT0 = 1'795'428'000'000;  // 2026-11-23T10:00:00Z

TEST(Time, Rfc3339AlwaysWritesMilliseconds) {
  EXPECT_EQ(rfc3339(kT0 + 250), "2026-11-23T10:00:00.250Z");
  EXPECT_EQ(rfc3339(kT0), "2026-11-23T10:00:00.000Z");
  EXPECT_EQ(rfc3339(kT0 + 7), "2026-11-23T10:00:00.007Z");
  EXPECT_EQ(rfc3339(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(rfc3339(-1), "1969-12-31T23:59:59.999Z") << "before 1970: the second before plus a fraction";
  EXPECT_EQ(rfc3339(253'402'300'799'999), "9999-12-31T23:59:59.999Z");
}

TEST(Time, Rfc3339TrimmedWritesTheFractionOnlyWhenThereIsOne) {
  EXPECT_EQ(rfc3339_trimmed(kT0), "2026-11-23T10:00:00Z");
  EXPECT_EQ(rfc3339_trimmed(kT0 + 250), "2026-11-23T10:00:00.250Z");
  EXPECT_EQ(rfc3339_trimmed(kT0 + 7), "2026-11-23T10:00:00.007Z");
}

// clean's reasons and the simulated fleet wrote Protobuf's form before; they
// must not change by a byte.
TEST(Time, Rfc3339TrimmedIsByteForByteProtobufsTimestampText) {
  std::vector<int64_t> times = {0,
                                1,
                                999,
                                1000,
                                -1,
                                -999,
                                -1000,
                                -1001,
                                kT0,
                                kT0 + 1,
                                kT0 + 10,
                                kT0 + 100,
                                kT0 + 999,
                                951'782'400'000 /* 2000-02-29 */,
                                253'402'300'799'999,
                                -62'135'596'800'000 /* 0001-01-01 */};
  for (int64_t t = -86'400'000; t < 4'000'000'000'000; t += 7'777'777'777) times.push_back(t);
  for (const int64_t t : times) {
    EXPECT_EQ(rfc3339_trimmed(t), TimeUtil::ToString(TimeUtil::MillisecondsToTimestamp(t))) << t;
  }
}

TEST(Time, ParsesRfc3339AndUnixMs) {
  EXPECT_EQ(*parse_time_ms("2026-11-23T10:00:00Z"), kT0);
  EXPECT_EQ(*parse_time_ms("2026-11-23T10:00:00z"), kT0);
  EXPECT_EQ(*parse_time_ms("2026-11-23T10:00:00.5Z"), kT0 + 500);
  EXPECT_EQ(*parse_time_ms("2026-11-23T10:00:00.250Z"), kT0 + 250);
  EXPECT_EQ(*parse_time_ms("2026-11-23T10:00:00.123456789Z"), kT0 + 123) << "beyond milliseconds is cut";
  EXPECT_EQ(*parse_time_ms("2026-11-23T11:30:00+01:30"), kT0);
  EXPECT_EQ(*parse_time_ms("2026-11-23T08:00:00-02:00"), kT0);
  EXPECT_EQ(*parse_time_ms(std::to_string(kT0)), kT0);
  EXPECT_EQ(*parse_time_ms("0"), 0);
}

TEST(Time, ParseReadsBackWhatRfc3339Writes) {
  for (const int64_t t : {int64_t{0}, kT0, kT0 + 1, kT0 + 999, int64_t{253'402'300'799'999}}) {
    EXPECT_EQ(*parse_time_ms(rfc3339(t)), t);
    EXPECT_EQ(*parse_time_ms(rfc3339_trimmed(t)), t);
  }
}

TEST(Time, ParseRefusesWhatIsNotATimeAndSaysWhatItExpected) {
  for (const std::string bad : {"",
                                "now",
                                "2026-11-23",
                                "2026-11-23T10:00:00",
                                "2026-11-23 10:00:00Z",
                                "2026-13-01T10:00:00Z",
                                "2026-11-32T10:00:00Z",
                                "2026-11-23T24:00:00Z",
                                "2026-11-23T10:60:00Z",
                                "2026-11-23T10:00:61Z",
                                "2026-11-23T10:00:00.Z",
                                "2026-11-23T10:00:00+1:00",
                                "2026-11-23T10:00:00+01:60",
                                "2026-11-23T10:00:00+0100",
                                "2026-11-23T10:00:00ZZ",
                                "2026-11-23T10:00:00Z ",
                                "-5",
                                "+5",
                                "1.5",
                                "99999999999999999999999"}) {
    auto r = parse_time_ms(bad);
    ASSERT_FALSE(r.has_value()) << "'" << bad << "' parsed as " << *r;
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
    EXPECT_NE(r.error().message.find("'" + bad + "'"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("RFC 3339"), std::string::npos) << r.error().message;
  }
}

TEST(Time, DurationsAreWrittenWithAUnitAsPipelineFilesAndFlagsDo) {
  EXPECT_EQ(parse_duration_ms("250ms"), 250);
  EXPECT_EQ(parse_duration_ms(" 30s "), 30'000);
  EXPECT_EQ(parse_duration_ms("10m"), 600'000);
  EXPECT_EQ(parse_duration_ms("2h"), 7'200'000);
  EXPECT_EQ(parse_duration_ms("1d"), 86'400'000);
  for (const char* bad : {"10", "m", "-1s", "1.5s", "1y", "10 minutes", "", "9999999999999999s"}) {
    EXPECT_FALSE(parse_duration_ms(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace starling
