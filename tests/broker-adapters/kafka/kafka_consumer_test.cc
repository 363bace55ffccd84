// KafkaConsumer (librdkafka) against the real starling-broker: what the
// consumer loop relies on and a fake cannot show.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
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

// Two members of group g on 4 partitions; the first restarts (closed and
// created again, as a supervisor restarts a killed stage). Returns how many
// times the second had partitions revoked during the restart, and whether the
// restarted member got the same partitions back.
struct Restart {
  int revokes_of_the_other = 0;
  bool same_partitions = false;
};
Restart restart_one_of_two(const std::string& bootstrap, const std::string& group, const std::string& first_id,
                           const std::string& second_id, const std::map<std::string, std::string>& properties = {}) {
  Restart out;
  auto options = [&](const std::string& id) {
    KafkaOptions o{bootstrap, "static-test", properties};
    o.group_instance_id = id;
    return o;
  };
  std::atomic<int> revokes{0};
  RebalanceHooks counting;
  counting.on_revoke = [&](const std::vector<TopicPartition>&) { ++revokes; };
  auto a = KafkaConsumer::create(options(first_id), group, {"t"}, {});
  auto b = KafkaConsumer::create(options(second_id), group, {"t"}, counting);
  EXPECT_TRUE(a.has_value() && b.has_value());
  if (!a || !b) return out;
  auto settle = [&](Consumer& x, Consumer& y) {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < deadline &&
           (x.assignment().empty() || y.assignment().empty() || x.assignment().size() + y.assignment().size() != 4)) {
      (void)x.poll_batch(100, 100ms);
      (void)y.poll_batch(100, 100ms);
    }
    return !x.assignment().empty() && !y.assignment().empty();
  };
  EXPECT_TRUE(settle(**a, **b));
  const auto before = (*a)->assignment();
  revokes = 0;
  (*a)->close();
  a = KafkaConsumer::create(options(first_id), group, {"t"}, {});
  EXPECT_TRUE(a.has_value());
  if (!a) return out;
  EXPECT_TRUE(settle(**a, **b));
  // A few more polls, for a rebalance that the restart would set off late.
  for (int i = 0; i < 20; ++i) {
    (void)(*a)->poll_batch(100, 100ms);
    (void)(*b)->poll_batch(100, 100ms);
  }
  out.same_partitions = (*a)->assignment() == before;
  out.revokes_of_the_other = revokes;
  (*a)->close();
  (*b)->close();
  return out;
}

TEST(KafkaConsumer, AStaticMemberThatRestartsGetsItsPartitionsBackAndTheOtherMemberKeepsWorking) {
  // What `starling up` relies on when it restarts a killed stage under its
  // --instance name: no rebalance, so the other instances never stop, and
  // the restarted one resumes its own partitions from its own state.
  broker::testing::TempDir dir;
  broker::testing::BrokerProcess broker(dir.path(), {"--partitions", "4"});
  {
    auto producer = KafkaProducer::create({broker.bootstrap(), "static-test", {}});
    ASSERT_TRUE(producer.has_value()) << producer.error().message;
    ASSERT_TRUE(produce_all(**producer, {{"t", "k", "v", {}}}, 30s).has_value());
  }
  const auto static_restart = restart_one_of_two(broker.bootstrap(), "g-static", "stage-1", "stage-2");
  EXPECT_TRUE(static_restart.same_partitions);
  EXPECT_EQ(static_restart.revokes_of_the_other, 0) << "the restart of a static member rebalanced the group";
  // Without ids the same restart is a new member: the group rebalances, and
  // the other member's partitions are revoked (what the ids avoid). An
  // empty group.instance.id property turns the ids off.
  const auto dynamic_restart = restart_one_of_two(broker.bootstrap(), "g-dynamic", "", "");
  EXPECT_GE(dynamic_restart.revokes_of_the_other, 1);
  const auto turned_off =
      restart_one_of_two(broker.bootstrap(), "g-off", "stage-1", "stage-2", {{"group.instance.id", ""}});
  EXPECT_GE(turned_off.revokes_of_the_other, 1) << "group.instance.id= did not make the members dynamic";
}

}  // namespace
}  // namespace starling::kafka
