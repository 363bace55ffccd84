// The one consumer loop, through the fake consumer and producer: ordering of
// outputs and stores, rebalances, retries of transient failures, no retry of
// permanent ones, and pausing while a batch is stuck.

#include "broker-adapters/kafka/consumer_loop.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/fake_kafka.h"

namespace starling::kafka {
namespace {

using starling::testing::FakeConsumer;
using starling::testing::FakeProducer;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const TopicPartition kP0{"in", 0};
const TopicPartition kP1{"in", 1};

/// A stage whose effect is the list of values it stored and whose offsets
/// live beside them; every step it sees goes into a log.
class RecordingStage final : public Stage {
 public:
  /// Decides each store attempt (1, 2, ...); default: success.
  std::function<Status(int attempt)> store_result;
  /// The dead letter of an oversize output; default: Stage's (none).
  std::function<std::vector<OutMessage>(const OutMessage&)> dead_letter;

  Result<std::vector<OutMessage>> too_large(const OutMessage& output, std::size_t size, std::size_t limit) override {
    note("too_large " + output.value.substr(0, 8) + " " + std::to_string(size) + ">" + std::to_string(limit));
    if (!dead_letter) return Stage::too_large(output, size, limit);
    return dead_letter(output);
  }

  Result<std::map<TopicPartition, int64_t>> assigned(const std::vector<TopicPartition>& parts) override {
    std::lock_guard lock(mu_);
    log_.push_back("assigned");
    std::map<TopicPartition, int64_t> starts;
    for (const auto& tp : parts) {
      if (auto it = offsets_.find(tp); it != offsets_.end()) starts[tp] = it->second;
    }
    return starts;
  }
  /// Runs at the start of each store attempt, before the stage's lock.
  std::function<void()> before_store;
  /// Runs in revoked(), after the note.
  std::function<void()> on_revoked;
  void revoked(const std::vector<TopicPartition>&) override {
    note("revoked");
    if (on_revoked) on_revoked();
  }
  Result<Work> apply(std::vector<InMessage> batch) override {
    std::vector<std::string> values;
    std::map<TopicPartition, int64_t> next;
    Work w;
    for (const auto& m : batch) {
      values.push_back(m.value);
      next[{m.topic, m.partition}] = m.offset + 1;
      w.outputs.push_back({"out", "", "out:" + m.value, {}});
    }
    std::string names;
    for (const auto& v : values) names += (names.empty() ? "" : ",") + v;
    note("apply " + names);
    w.persisted = [this] { note("persisted"); };
    w.store = [this, values, next]() -> Status {
      if (before_store) before_store();
      std::lock_guard lock(mu_);
      const int attempt = ++store_attempts_;
      log_.push_back("store");
      if (store_result) {
        if (auto st = store_result(attempt); !st) return st;
      }
      stored_.insert(stored_.end(), values.begin(), values.end());
      for (const auto& [tp, off] : next) offsets_[tp] = off;
      return {};
    };
    w.stored = [this] { note("stored"); };
    return w;
  }
  void abandon() override { note("abandon"); }
  Status caught_up(bool idle) override {
    if (idle) ++idle_;
    return {};
  }

  std::vector<std::string> log() const {
    std::lock_guard lock(mu_);
    return log_;
  }
  std::vector<std::string> stored() const {
    std::lock_guard lock(mu_);
    return stored_;
  }
  std::map<TopicPartition, int64_t> offsets() const {
    std::lock_guard lock(mu_);
    return offsets_;
  }
  int store_attempts() const {
    std::lock_guard lock(mu_);
    return store_attempts_;
  }
  int idle() const { return idle_; }
  void note(std::string s) {
    std::lock_guard lock(mu_);
    log_.push_back(std::move(s));
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> log_;
  std::vector<std::string> stored_;
  std::map<TopicPartition, int64_t> offsets_;
  int store_attempts_ = 0;
  std::atomic<int> idle_{0};
};

class ConsumerLoopTest : public ::testing::Test {
 protected:
  /// Runs the loop until `done` holds (or 20 s pass: a test that hangs fails).
  int run_until(std::function<bool()> done, LoopOptions options = {}) {
    const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    options.stop = [&, done] { return done() || std::chrono::steady_clock::now() > limit; };
    ConsumerLoop loop(loop_name, stage, producer, options);
    const int rc = loop.run(consumer.factory());
    timed_out = std::chrono::steady_clock::now() > limit;
    return rc;
  }
  void fill(const TopicPartition& tp, std::initializer_list<const char*> values) {
    for (const char* v : values) consumer.append(tp.topic, tp.partition, v);
  }
  std::size_t produced(const std::string& value) const {
    const auto all = producer.produced();
    return static_cast<std::size_t>(
        std::count_if(all.begin(), all.end(), [&](const OutMessage& m) { return m.value == value; }));
  }

  /// p0 and p1 assigned; in the second poll, after two messages were taken,
  /// the group takes p1 away and gives p0 back. Runs until p0 is stored.
  int rebalance_mid_batch(bool pipelined) {
    fill(kP0, {"a0", "a1", "a2", "a3"});
    fill(kP1, {"b0", "b1"});
    consumer.schedule({.assign = {kP0, kP1}});
    consumer.schedule({.revoke_all = true, .assign = {kP0}, .after = 2, .when = [&] { return consumer.polls() >= 2; }});
    return run_until([&] { return stage.stored().size() == 4; },
                     {.batch_max = 3, .batch_wait = std::chrono::milliseconds(10), .pipelined = pipelined});
  }

  FakeConsumer consumer;
  FakeProducer producer;
  RecordingStage stage;
  bool timed_out = false;
  std::string loop_name = "test";
};

// The value of one series on this process's metrics page; nullopt when absent.
std::optional<double> sample(const std::string& series) {
  const auto page = metrics().render();
  const auto at = page.find("\n" + series + " ");
  if (at == std::string::npos) return std::nullopt;
  return std::stod(page.substr(at + series.size() + 2));
}

TEST_F(ConsumerLoopTest, PipelinedStoresEachBatchAfterItsOutputsArePersistedInInputOrder) {
  fill(kP0, {"a", "b", "c", "d", "e", "f"});
  producer.decide([&](const OutMessage& m) {
    stage.note("sent " + m.value);
    return FakeProducer::persisted();
  });
  consumer.schedule({.assign = {kP0}});
  const int rc = run_until([&] { return stage.stored().size() == 6; },
                           {.batch_max = 2, .batch_wait = std::chrono::milliseconds(10), .pipelined = true});
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(rc, 0);
  EXPECT_THAT(stage.stored(), ElementsAre("a", "b", "c", "d", "e", "f"));
  EXPECT_EQ(stage.offsets().at(kP0), 6);
  // Batch n+1 is applied while n's outputs fly; n's effect is stored only
  // after its outputs are persisted, and n+1's outputs are sent only after
  // that. ("store" itself runs on the store thread, so it is left out.)
  std::vector<std::string> steps;
  for (const auto& step : stage.log()) {
    if (step != "store") steps.push_back(step);
  }
  EXPECT_THAT(steps, ElementsAre("assigned", "apply a,b", "sent out:a", "sent out:b", "apply c,d", "persisted",
                                 "sent out:c", "sent out:d", "apply e,f", "stored", "persisted", "sent out:e",
                                 "sent out:f", "stored", "persisted", "stored", "abandon", "revoked"));
  for (const char* v : {"a", "b", "c", "d", "e", "f"}) EXPECT_EQ(produced(std::string("out:") + v), 1u) << v;
}

TEST_F(ConsumerLoopTest, RebalanceMidBatchDropsWhatWasTakenAndResumesFromTheStoredOffsets) {
  const int rc = rebalance_mid_batch(false);
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(rc, 0);
  // Every message of p0 stored exactly once; nothing of p1, which went
  // away mid-batch (b0 was taken before the rebalance).
  EXPECT_THAT(stage.stored(), ElementsAre("a0", "a1", "a2", "a3"));
  EXPECT_EQ(stage.offsets().count(kP1), 0u);
  // The batch before the rebalance was stored before the partitions went.
  const auto log = stage.log();
  const auto revoked = std::find(log.begin(), log.end(), "revoked");
  ASSERT_NE(revoked, log.end());
  EXPECT_NE(std::find(log.begin(), revoked, "stored"), revoked);
}

TEST_F(ConsumerLoopTest, PipelinedRebalanceMidBatchSettlesTheBatchInFlightFirst) {
  const int rc = rebalance_mid_batch(true);
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(rc, 0);
  EXPECT_THAT(stage.stored(), ElementsAre("a0", "a1", "a2", "a3"));
  EXPECT_EQ(produced("out:b0"), 0u);
}

TEST_F(ConsumerLoopTest, TransientProduceErrorIsRetriedWithTheSameOutputsBeforeTheEffectIsStored) {
  fill(kP0, {"x"});
  consumer.schedule({.assign = {kP0}});
  std::atomic<int> sends{0};
  producer.decide([&](const OutMessage&) {
    return ++sends <= 2 ? FakeProducer::failed("Local: Broker transport failure", false) : FakeProducer::persisted();
  });
  const int rc = run_until([&] { return stage.stored().size() == 1; });
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(produced("out:x"), 3u);  // two failures, then persisted
  EXPECT_EQ(stage.store_attempts(), 1);
  // Stored only after the third send was persisted.
  const auto log = stage.log();
  EXPECT_EQ(std::count(log.begin(), log.end(), "persisted"), 1);
}

TEST_F(ConsumerLoopTest, PermanentProduceErrorIsNotRetriedAndStopsTheLoopWithNothingStored) {
  fill(kP0, {"ok", "big"});
  consumer.schedule({.assign = {kP0}});
  producer.decide([](const OutMessage& m) {
    return m.value == "out:big" ? FakeProducer::failed("Broker: Message size too large", true)
                                : FakeProducer::persisted();
  });
  const int rc = run_until([] { return false; });
  ASSERT_FALSE(timed_out) << "the loop retried a permanent error until the test's limit";
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(produced("out:big"), 1u);
  EXPECT_EQ(stage.store_attempts(), 0);
  EXPECT_TRUE(stage.offsets().empty());
  EXPECT_THAT(stage.log(), Contains("abandon"));
}

// An output no retry could persist (over message.max.bytes) is never sent:
// the stage's dead letter goes instead, and the batch is stored as usual.
TEST_F(ConsumerLoopTest, AnOutputOverTheLimitIsSentAsTheStagesDeadLetterAndTheBatchIsStored) {
  fill(kP0, {"ok", "0123456789abcdef", "after"});
  consumer.schedule({.assign = {kP0}});
  stage.dead_letter = [](const OutMessage& m) {
    return std::vector<OutMessage>{{"dlq", m.key, "too_large", {}}, {"facts", m.key, "rejected", {}}};
  };
  const int rc = run_until([&] { return stage.stored().size() == 3; }, {.batch_max = 1, .max_output_bytes = 16});
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(produced("out:0123456789abcdef"), 0u) << "an oversize output reached the producer";
  EXPECT_EQ(produced("too_large"), 1u);
  EXPECT_EQ(produced("rejected"), 1u);
  EXPECT_EQ(produced("out:ok"), 1u);
  EXPECT_EQ(produced("out:after"), 1u) << "the partition went on";
  EXPECT_THAT(stage.log(), Contains("too_large out:0123 20>16"));
  EXPECT_EQ(stage.offsets().at(kP0), 3);
}

TEST_F(ConsumerLoopTest, AnOutputOverTheLimitStopsALoopWhoseStageHasNoDeadLetter) {
  fill(kP0, {"0123456789abcdef"});
  consumer.schedule({.assign = {kP0}});
  const int rc = run_until([] { return false; }, {.max_output_bytes = 16});
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(rc, 1);
  EXPECT_TRUE(producer.produced().empty());
  EXPECT_TRUE(stage.offsets().empty());
}

TEST_F(ConsumerLoopTest, TransientStoreFailureIsRetriedWhileThePartitionsArePausedThenResumed) {
  fill(kP0, {"a", "b"});
  consumer.schedule({.assign = {kP0}});
  stage.store_result = [](int attempt) -> Status {
    if (attempt <= 3) return fail(Errc::kUnavailable, "database is locked");
    return {};
  };
  const int polls_before = consumer.polls();
  const int rc = run_until(
      [&] { return stage.stored().size() == 2; },
      {.batch_max = 1, .batch_wait = std::chrono::milliseconds(10), .pause_after = std::chrono::milliseconds(0)});
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(rc, 0);
  EXPECT_THAT(stage.stored(), ElementsAre("a", "b"));
  EXPECT_EQ(stage.store_attempts(), 5);  // a: 3 failures and a success; b: one
  EXPECT_EQ(produced("out:a"), 1u);      // outputs are not sent again for a store retry
  // Paused while the store failed, polled meanwhile (the group keeps this
  // member), resumed after, and b was taken only then.
  const auto calls = consumer.calls();
  const auto pause = std::find(calls.begin(), calls.end(), "pause 0");
  const auto resume = std::find(calls.begin(), calls.end(), "resume 0");
  ASSERT_NE(pause, calls.end());
  ASSERT_NE(resume, calls.end());
  EXPECT_LT(pause, resume);
  EXPECT_GE(std::count(pause, resume, "poll"), 3);
  EXPECT_GT(consumer.polls(), polls_before);
  EXPECT_TRUE(consumer.paused().empty());
}

TEST_F(ConsumerLoopTest, PermanentStoreFailureStopsTheLoopWithoutRetrying) {
  fill(kP0, {"a"});
  consumer.schedule({.assign = {kP0}});
  stage.store_result = [](int) -> Status { return fail(Errc::kInternal, "stored aggregate is corrupt"); };
  const int rc = run_until([] { return false; });
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(stage.store_attempts(), 1);
  EXPECT_TRUE(stage.stored().empty());
  EXPECT_THAT(stage.log(), Contains("abandon"));
}

TEST_F(ConsumerLoopTest, RevokedWhileAStoreKeepsFailingAbandonsTheBatchAndRedoesItFromTheStoredOffsets) {
  fill(kP0, {"a", "b"});
  consumer.schedule({.assign = {kP0}});
  // The group moves while the first store keeps failing (an outage longer
  // than the session): the work is given up, not stored, and redone.
  consumer.schedule({.revoke_all = true, .assign = {kP0}, .when = [&] { return stage.store_attempts() >= 2; }});
  std::atomic<bool> outage{true};
  stage.store_result = [&](int) -> Status {
    if (outage) return fail(Errc::kUnavailable, "connection refused");
    return {};
  };
  const int rc = run_until(
      [&] {
        if (std::ranges::count(consumer.calls(), "assign 0") == 2) outage = false;
        return stage.stored().size() == 2;
      },
      {.batch_max = 10, .batch_wait = std::chrono::milliseconds(10), .pause_after = std::chrono::milliseconds(0)});
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(rc, 0);
  EXPECT_THAT(stage.stored(), ElementsAre("a", "b"));  // once each
  const auto log = stage.log();
  const auto abandon = std::find(log.begin(), log.end(), "abandon");
  ASSERT_NE(abandon, log.end());
  EXPECT_NE(std::find(log.begin(), abandon, "revoked"), abandon);
  // Redone after the abandon: applied a second time, stored once.
  EXPECT_EQ(std::count(abandon, log.end(), "apply a,b"), 1);
}

TEST_F(ConsumerLoopTest, IdlePollsReachTheStageOnlyWhenNothingIsInFlight) {
  consumer.schedule({.assign = {kP0}});
  const int rc = run_until([&] { return stage.idle() >= 3; }, {.batch_wait = std::chrono::milliseconds(5)});
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(rc, 0);
  EXPECT_THAT(consumer.calls(), Contains("close"));
}

TEST_F(ConsumerLoopTest, StopStoresTheBatchInFlightWhenItsOutputsArePersisted) {
  fill(kP0, {"a", "b", "c"});
  consumer.schedule({.assign = {kP0}});
  // Stop as soon as the last batch has been applied: it is still in flight.
  const int rc = run_until(
      [&] {
        auto log = stage.log();
        return std::find(log.begin(), log.end(), "apply c") != log.end();
      },
      {.batch_max = 1, .batch_wait = std::chrono::milliseconds(10), .pipelined = true});
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(rc, 0);
  EXPECT_THAT(stage.stored(), ElementsAre("a", "b", "c"));
  EXPECT_THAT(consumer.calls(), Contains("close"));
}

// Lag tools read the group's committed offsets: the loop commits what it
// stored, after the store, never before.
TEST_F(ConsumerLoopTest, EachStoredBatchsOffsetsReachTheGroupOnlyAfterTheStore) {
  fill(kP0, {"a", "b", "c"});
  fill(kP1, {"x", "y"});
  consumer.schedule({.assign = {kP0, kP1}});
  std::vector<std::string> ahead;
  stage.before_store = [&] {
    // The store under way has not happened yet: the group must not be past
    // what was stored before it.
    const auto stored = stage.offsets();
    for (const auto& [tp, off] : consumer.committed()) {
      auto it = stored.find(tp);
      if (it == stored.end() || off > it->second) ahead.push_back(tp.topic + std::to_string(tp.partition));
    }
  };
  const int rc = run_until([&] { return stage.stored().size() == 5 && consumer.committed().size() == 2; },
                           {.batch_max = 1,
                            .batch_wait = std::chrono::milliseconds(5),
                            .group_commit_interval = std::chrono::milliseconds(0)});
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(rc, 0);
  EXPECT_TRUE(ahead.empty()) << ahead.front();
  EXPECT_EQ(consumer.committed(), stage.offsets());
  EXPECT_EQ(consumer.committed().at(kP0), 3);
  EXPECT_EQ(consumer.committed().at(kP1), 2);
  EXPECT_GE(consumer.commits(), 5);  // interval 0: one per stored batch
}

TEST_F(ConsumerLoopTest, GroupCommitsAreSpacedByTheIntervalAndTheLastGoesOutAtTheStop) {
  fill(kP0, {"a", "b", "c", "d", "e", "f"});
  consumer.schedule({.assign = {kP0}});
  const int rc = run_until(
      [&] { return stage.stored().size() == 6; },
      {.batch_max = 1, .batch_wait = std::chrono::milliseconds(5), .group_commit_interval = std::chrono::hours(1)});
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(rc, 0);
  // The first store commits (nothing was committed for an hour), the five
  // after it wait for the interval, and the stop commits the last.
  EXPECT_EQ(consumer.commits(), 2);
  EXPECT_EQ(consumer.committed().at(kP0), 6);
}

TEST_F(ConsumerLoopTest, AnIdleStageStillCommitsWhatItStoredOnceTheIntervalHasPassed) {
  fill(kP0, {"a", "b", "c"});
  consumer.schedule({.assign = {kP0}});
  // Three stores within the interval: the first commits, the rest wait; no
  // batch comes after them, yet the group must hear of them.
  const int rc = run_until([&] { return consumer.committed()[kP0] == 3; },
                           {.batch_max = 1,
                            .batch_wait = std::chrono::milliseconds(5),
                            .group_commit_interval = std::chrono::milliseconds(200)});
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(consumer.commits(), 2);
}

TEST_F(ConsumerLoopTest, BeforePartitionsAreRevokedTheGroupHearsWhereThisMemberGotTo) {
  fill(kP0, {"a", "b", "c"});
  consumer.schedule({.assign = {kP0}});
  consumer.schedule({.revoke_all = true, .assign = {kP0}, .when = [&] { return stage.stored().size() == 3; }});
  std::optional<int64_t> at_revoke;  // at the first revoke (the group's, not the stop's)
  stage.on_revoked = [&] {
    auto c = consumer.committed();
    if (!at_revoke) at_revoke = c.contains(kP0) ? c.at(kP0) : -1;
  };
  const int rc = run_until(
      [&] { return std::ranges::count(consumer.calls(), "assign 0") == 2; },
      {.batch_max = 1, .batch_wait = std::chrono::milliseconds(5), .group_commit_interval = std::chrono::hours(1)});
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(rc, 0);
  ASSERT_TRUE(at_revoke.has_value());
  EXPECT_EQ(*at_revoke, 3);
}

TEST_F(ConsumerLoopTest, APartitionTheStageNeverStoredStartsAtTheBeginningNotAtTheGroupsCommittedOffset) {
  // Another member committed p0 up to 2 (its progress, on its own state);
  // this stage holds nothing of p0, so it must read p0 from the start.
  fill(kP0, {"a", "b", "c"});
  consumer.commit_async({{kP0, 2}});
  consumer.schedule({.assign = {kP0}});
  const int rc = run_until([&] { return stage.stored().size() >= 3; }, {.batch_wait = std::chrono::milliseconds(5)});
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(rc, 0);
  EXPECT_THAT(stage.stored(), ElementsAre("a", "b", "c"));
}

TEST_F(ConsumerLoopTest, RecordsInAndOutAreCountedByStageAndTopicAndLagFallsToZeroThenGoesWithThePartition) {
  loop_name = "metered pipeline-x";
  fill(kP0, {"a", "b", "c"});
  fill(kP1, {"d"});
  consumer.schedule({.assign = {kP0, kP1}});
  const std::string lag0 = R"(starling_stage_lag_records{partition="0",stage="metered",topic=")" + kP0.topic + R"("})";
  std::vector<double> lags;  // p0's lag as the loop went
  const int rc = run_until(
      [&] {
        if (auto v = sample(lag0); v && (lags.empty() || lags.back() != *v)) lags.push_back(*v);
        return stage.stored().size() == 4 && !lags.empty() && lags.back() == 0;
      },
      {.batch_max = 1,
       .batch_wait = std::chrono::milliseconds(5),
       .group_commit_interval = std::chrono::milliseconds(0)});
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(rc, 0);
  // One at a time: p0 was 2 behind after its first store, then 1, then none.
  EXPECT_THAT(lags, Contains(2.0));
  EXPECT_EQ(lags.back(), 0);
  EXPECT_EQ(sample(R"(starling_stage_records_in_total{stage="metered",topic=")" + kP0.topic + R"("})"), 4);
  EXPECT_EQ(sample(R"(starling_stage_records_out_total{stage="metered",topic="out"})"), 4);
  // The stop revoked the partitions: their lag series are gone, not frozen.
  EXPECT_EQ(sample(lag0), std::nullopt);
}

TEST(DeliveriesTest, APermanentFailureIsReportedOverTransientOnes) {
  FakeProducer producer;
  producer.decide([](const OutMessage& m) {
    return m.value == "big" ? FakeProducer::failed("Broker: Message size too large", true)
                            : FakeProducer::failed("Local: Message timed out", false);
  });
  auto st = Deliveries::send(producer, {{"t", "", "small", {}}, {"t", "", "big", {}}})->wait(std::chrono::seconds(1));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(st.error().message, HasSubstr("too large"));
}

}  // namespace
}  // namespace starling::kafka
