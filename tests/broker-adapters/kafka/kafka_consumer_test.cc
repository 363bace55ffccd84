// KafkaConsumer (librdkafka) against the real starling-broker: what the
// consumer loop relies on and a fake cannot show.

#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <thread>

#include "broker-adapters/kafka/kafka.h"
#include "tests/services/broker/broker_process.h"

namespace starling::kafka {
namespace {

using namespace std::chrono_literals;

// Polls until `member` holds an assignment (serving the rebalance).
bool await_assignment(Consumer& member, std::set<std::pair<int32_t, int64_t>>* seen = nullptr) {
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto got = member.poll_batch(100, 200ms);
    if (!got) return false;
    if (seen != nullptr) {
      for (const auto& m : *got) seen->insert({m.partition, m.offset});
    }
    if (!member.assignment().empty()) return true;
  }
  return false;
}

TEST(KafkaConsumer, APartitionPausedBeforeARebalanceIsConsumedAgainOnceReassigned) {
  // librdkafka keeps a partition's pause flag across revoke and assign. The
  // consumer loop pauses its partitions while a send waits out a broker
  // outage, and a rebalance then (the outage ends the session) once left the
  // stage paused for good: the pipeline stalled with events in flight.
  broker::testing::TempDir dir;
  broker::testing::BrokerProcess broker(dir.path(), {"--partitions", "2"});
  const KafkaOptions opts{broker.bootstrap(), "pause-test", {}};
  {
    auto producer = KafkaProducer::create(opts);
    ASSERT_TRUE(producer.has_value()) << producer.error().message;
    std::vector<OutMessage> msgs;
    msgs.reserve(20);
    for (int i = 0; i < 20; ++i) msgs.push_back({"t", "key-" + std::to_string(i), "v" + std::to_string(i), {}});
    ASSERT_TRUE(produce_all(**producer, msgs, 30s).has_value());
  }
  auto a = KafkaConsumer::create(opts, "g", {"t"}, {});
  ASSERT_TRUE(a.has_value()) << a.error().message;
  ASSERT_TRUE(await_assignment(**a));
  ASSERT_TRUE((*a)->pause((*a)->assignment()).has_value());
  {
    // A second member joins (every partition of the first is revoked and
    // some assigned again) and leaves (all come back to the first).
    auto b = KafkaConsumer::create(opts, "g", {"t"}, {});
    ASSERT_TRUE(b.has_value()) << b.error().message;
    std::set<std::pair<int32_t, int64_t>> ignored;
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline && (*b)->assignment().empty()) {
      (void)(*a)->poll_batch(100, 100ms);
      (void)(*b)->poll_batch(100, 100ms);
    }
    ASSERT_FALSE((*b)->assignment().empty());
    (*b)->close();
  }
  // Nothing was committed: the first member reads both partitions from the
  // beginning once they are its own again, paused or not before.
  std::set<std::pair<int32_t, int64_t>> seen;
  const auto deadline = std::chrono::steady_clock::now() + 45s;
  while (std::chrono::steady_clock::now() < deadline && seen.size() < 20) {
    auto got = (*a)->poll_batch(100, 200ms);
    ASSERT_TRUE(got.has_value()) << got.error().message;
    for (const auto& m : *got) seen.insert({m.partition, m.offset});
  }
  EXPECT_EQ(seen.size(), 20u) << "messages of a partition paused before the rebalance never came";
  (*a)->close();
}

}  // namespace
}  // namespace starling::kafka
