// Per-device token buckets: found in O(1), dropped once refilled (idle
// devices cost nothing), bounded in number whatever a client sends.

#include "services/ingest/limits.h"

#include <gtest/gtest.h>

#include <string>

namespace starling::ingest {
namespace {

using namespace std::chrono_literals;

const Rate kTenPerSecond{.per_s = 10, .burst = 10};

double admit_one(RateLimiter& limiter, const std::string& device, double events, Clock::time_point now) {
  std::string who;
  return limiter.admit(nullptr, "p", {{device, events}}, who, now);
}

TEST(RateLimiter, ADeviceOverItsRateWaitsAndOthersDoNot) {
  RateLimiter limiter(kTenPerSecond);
  const auto t0 = Clock::now();
  EXPECT_EQ(admit_one(limiter, "bike-1", 10, t0), 0);
  EXPECT_NEAR(admit_one(limiter, "bike-1", 5, t0), 0.5, 1e-9) << "5 tokens at 10/s";
  EXPECT_EQ(admit_one(limiter, "bike-2", 10, t0), 0);
  EXPECT_EQ(admit_one(limiter, "bike-1", 5, t0 + 500ms), 0);
}

// Idle devices are forgotten once their bucket is full again (a new one
// would start full), so a million devices passing through leave nothing.
TEST(RateLimiter, DevicesWhoseBucketsRefilledAreForgotten) {
  RateLimiter limiter(kTenPerSecond);
  const auto t0 = Clock::now();
  for (int i = 0; i < 1'000; ++i) EXPECT_EQ(admit_one(limiter, "d" + std::to_string(i), 5, t0), 0);
  EXPECT_EQ(limiter.tracked_devices(), 1'000u);
  // 0.5 s later every bucket is full again: the next request drops them all.
  EXPECT_EQ(admit_one(limiter, "late", 5, t0 + 500ms), 0);
  EXPECT_EQ(limiter.tracked_devices(), 1u);
  EXPECT_EQ(limiter.evicted_devices(), 0u);
}

// A device in debt is remembered while idle devices come and go, so waiting
// for others does not reset its debt.
TEST(RateLimiter, ADeviceInDebtStaysLimitedWhileOthersComeAndGo) {
  RateLimiter limiter(kTenPerSecond, 100);
  const auto t0 = Clock::now();
  EXPECT_EQ(admit_one(limiter, "greedy", 50, t0), 0) << "a batch larger than the burst passes, in debt";
  for (int i = 0; i < 10'000; ++i) {
    const auto t = t0 + std::chrono::microseconds(100 * i);
    EXPECT_EQ(admit_one(limiter, "d" + std::to_string(i), 0.0001, t), 0);
  }
  EXPECT_GT(admit_one(limiter, "greedy", 1, t0 + 1s), 0) << "its debt was forgotten";
  EXPECT_LE(limiter.tracked_devices(), 100u);
}

// Many devices all in debt at once (an attacker minting device ids): the
// table never grows past its capacity; the coldest bucket goes.
TEST(RateLimiter, DevicesInDebtNeverGrowTheTablePastItsCapacity) {
  RateLimiter limiter(kTenPerSecond, 100);
  const auto t0 = Clock::now();
  for (int i = 0; i < 10'000; ++i) EXPECT_EQ(admit_one(limiter, "d" + std::to_string(i), 10, t0), 0);
  EXPECT_EQ(limiter.tracked_devices(), 100u);
  EXPECT_EQ(limiter.evicted_devices(), 9'900u);
  // The most recent ones are still remembered, and limited.
  EXPECT_GT(admit_one(limiter, "d9999", 10, t0), 0);
}

// A request naming several devices is granted all or nothing, and with the
// table at capacity its own buckets are not dropped while it is decided.
TEST(RateLimiter, ARequestOfSeveralDevicesAtCapacityIsDecidedOnItsOwnBuckets) {
  RateLimiter limiter(kTenPerSecond, 3);
  const auto t0 = Clock::now();
  std::string who;
  EXPECT_EQ(limiter.admit(nullptr, "p", {{"a", 10}, {"b", 10}, {"c", 10}}, who, t0), 0);
  EXPECT_GT(limiter.admit(nullptr, "p", {{"a", 1}, {"x", 1}, {"y", 1}}, who, t0), 0);
  EXPECT_EQ(who, "device 'a'");
  EXPECT_LE(limiter.tracked_devices(), 3u);
}

}  // namespace
}  // namespace starling::ingest
