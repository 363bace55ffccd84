// The coordinator over a real RocksSagaStore with a fake clock: deadlines,
// outcome facts, retention and partition ownership, with no Kafka and no
// sleeping.

#include "services/saga/coordinator.h"

#include <gtest/gtest.h>

#include "services/common/pipeline.h"
#include "tests/support/temp_dir.h"

namespace starling::saga {
namespace {

class CoordinatorTest : public ::testing::Test {
 protected:
  CoordinatorTest() : store_(dir_ / "db") {
    CoordinatorOptions o;
    o.pipelines["p"] = {.stall_after_ms = 2'000, .overdue_after_ms = 5'000, .retention_ms = 60'000};
    o.pipelines["atomic"] = {
        .stall_after_ms = 2'000, .overdue_after_ms = 5'000, .retention_ms = 60'000, .atomic = true};
    coordinator_ = std::make_unique<Coordinator>(store_, o, [this] { return now_; });
  }

  kafka::InMessage msg(const v1::ProgressFact& f, int32_t partition = 0) {
    kafka::InMessage m;
    m.topic = kSagaTopic;
    m.partition = partition;
    m.offset = next_offset_[partition]++;
    m.key = f.saga_id();
    m.value = f.SerializeAsString();
    return m;
  }

  v1::ProgressFact fact(const std::string& saga, v1::Step step, uint32_t first, uint32_t last, uint32_t total = 0) {
    v1::ProgressFact f;
    f.set_saga_id(saga);
    f.set_pipeline("p");
    f.set_step(step);
    f.set_total(total);
    f.set_source("test");
    if (step != v1::STEP_INGESTED && step != v1::STEP_COMPENSATED) {
      auto* r = f.add_seqs();
      r->set_first(first);
      r->set_last(last);
    }
    f.set_time_ms(now_);
    return f;
  }

  void feed(const std::vector<v1::ProgressFact>& facts, int32_t partition = 0) {
    std::vector<kafka::InMessage> batch;
    batch.reserve(facts.size());
    for (const auto& f : facts) batch.push_back(msg(f, partition));
    auto st = coordinator_->fold_batch(batch);
    ASSERT_TRUE(st.has_value()) << st.error().message;
  }

  void tick() {
    auto st = coordinator_->tick();
    ASSERT_TRUE(st.has_value()) << st.error().message;
  }

  v1::SagaState state(const std::string& saga) {
    auto r = store_.get(saga);
    EXPECT_TRUE(r.has_value() && r->has_value()) << saga;
    return r && *r ? (*r)->state() : v1::SAGA_STATE_UNSPECIFIED;
  }

  // Outcomes in the outbox, as (saga, state), in order; drains it.
  std::vector<std::pair<std::string, v1::SagaState>> outcomes() {
    std::vector<std::pair<std::string, v1::SagaState>> out;
    auto entries = store_.outbox(1000);
    EXPECT_TRUE(entries.has_value());
    std::vector<uint64_t> ids;
    for (const auto& e : *entries) {
      ids.push_back(e.id);
      EXPECT_EQ(e.message.topic, kOutcomeTopic);
      v1::SagaOutcome o;
      EXPECT_TRUE(o.ParseFromString(e.message.value));
      EXPECT_EQ(e.message.key, o.saga_id());
      out.emplace_back(o.saga_id(), o.state());
    }
    if (!entries->empty()) {
      EXPECT_TRUE(store_.outbox_done(ids).has_value());
    }
    return out;
  }

  std::size_t index_entries() {
    std::size_t n = 0;
    EXPECT_TRUE(store_.due(INT64_MAX, [&](int64_t, const std::string&) { return ++n, true; }).has_value());
    return n;
  }

  using Outcomes = std::vector<std::pair<std::string, v1::SagaState>>;

  testing::TempDir dir_;
  RocksSagaStore store_;
  int64_t now_ = 1'000'000;
  std::map<int32_t, int64_t> next_offset_;
  std::unique_ptr<Coordinator> coordinator_;
};

TEST_F(CoordinatorTest, SagaWithoutProgressStallsRecoversAndCompletesWithAnOutcomeEach) {
  // Given a saga that was cleaned but not loaded,
  feed({fact("a", v1::STEP_INGESTED, 0, 0, 4), fact("a", v1::STEP_CLEANED, 0, 3)});
  EXPECT_TRUE(outcomes().empty());
  // when stall_after passes without progress, it is STALLED, once;
  now_ += 1'999;
  tick();
  EXPECT_EQ(state("a"), v1::SAGA_STATE_IN_FLIGHT);
  now_ += 1;
  tick();
  tick();
  EXPECT_EQ(state("a"), v1::SAGA_STATE_STALLED);
  EXPECT_EQ(outcomes(), (Outcomes{{"a", v1::SAGA_STATE_STALLED}}));
  // then progress brings it back, and completion ends it.
  now_ += 500;
  feed({fact("a", v1::STEP_LOADED, 0, 1)});
  EXPECT_EQ(state("a"), v1::SAGA_STATE_IN_FLIGHT);
  feed({fact("a", v1::STEP_LOADED, 2, 3)});
  EXPECT_EQ(state("a"), v1::SAGA_STATE_COMPLETED);
  EXPECT_EQ(outcomes(), (Outcomes{{"a", v1::SAGA_STATE_IN_FLIGHT}, {"a", v1::SAGA_STATE_COMPLETED}}));
  // Only the retention entry is left in the deadline index.
  EXPECT_EQ(index_entries(), 1u);
}

TEST_F(CoordinatorTest, SteadyProgressNeverStallsThoughItsIndexEntryLagsBehind) {
  feed({fact("a", v1::STEP_INGESTED, 0, 0, 100)});
  for (uint32_t i = 0; i < 4; ++i) {
    now_ += 500;
    feed({fact("a", v1::STEP_CLEANED, i, i)});
    tick();  // at t0 + 2 s finds the entry early, and moves it
    EXPECT_EQ(state("a"), v1::SAGA_STATE_IN_FLIGHT) << i;
  }
  EXPECT_EQ(index_entries(), 1u);
  now_ += 1'999;
  tick();
  EXPECT_EQ(state("a"), v1::SAGA_STATE_IN_FLIGHT);
  now_ += 1;  // no progress for 2 s
  tick();
  EXPECT_EQ(state("a"), v1::SAGA_STATE_STALLED);
}

// An outage longer than overdue_after: the saga is OVERDUE (an alert,
// published once) and COMPLETES when the events arrive; nothing is FAILED.
TEST_F(CoordinatorTest, SagaNotFinishedByOverdueAfterIsOverdueAndCompletesWhenItsEventsArrive) {
  feed({fact("a", v1::STEP_INGESTED, 0, 0, 4), fact("b", v1::STEP_INGESTED, 0, 0, 1)});
  now_ += 1'000;
  feed({fact("a", v1::STEP_CLEANED, 0, 3), fact("b", v1::STEP_LOADED, 0, 0)});  // b completes
  now_ += 1'500;
  feed({fact("a", v1::STEP_LOADED, 0, 0)});  // progress keeps a from stalling
  now_ += 1'500;
  feed({fact("a", v1::STEP_LOADED, 1, 1)});
  now_ += 999;  // 4999 ms after creation
  tick();
  EXPECT_EQ(state("a"), v1::SAGA_STATE_IN_FLIGHT);
  now_ += 1;
  tick();
  EXPECT_EQ(state("a"), v1::SAGA_STATE_OVERDUE);
  EXPECT_EQ(outcomes(), (Outcomes{{"b", v1::SAGA_STATE_COMPLETED}, {"a", v1::SAGA_STATE_OVERDUE}}));
  EXPECT_EQ(index_entries(), 1u) << "OVERDUE has no deadline; b keeps its retention entry";
  now_ += 60'000;
  tick();
  EXPECT_EQ(outcomes(), Outcomes{}) << "the alert is published once";
  feed({fact("a", v1::STEP_LOADED, 2, 3)});
  EXPECT_EQ(state("a"), v1::SAGA_STATE_COMPLETED);
  EXPECT_EQ(outcomes(), (Outcomes{{"a", v1::SAGA_STATE_COMPLETED}}));
  auto r = *store_.get("a");
  ASSERT_TRUE(r.has_value());
  std::vector<v1::SagaState> path;
  for (const auto& t : r->timeline()) path.push_back(t.to());
  EXPECT_EQ(path, (std::vector<v1::SagaState>{v1::SAGA_STATE_ACCEPTED, v1::SAGA_STATE_IN_FLIGHT, v1::SAGA_STATE_OVERDUE,
                                              v1::SAGA_STATE_COMPLETED}));
}

// A seq the sink refused fails the saga in every pipeline. An atomic one's
// FAILED saga waits for the loader's compensation; elsewhere FAILED is final
// and retention removes it like a completed saga.
TEST_F(CoordinatorTest, ASagaRefusedAtLoadFailsAndOnlyAnAtomicOneWaitsForCompensation) {
  auto in = [this](const std::string& pipeline, v1::ProgressFact f) {
    f.set_pipeline(pipeline);
    return f;
  };
  for (const std::string pipeline : {"atomic", "p"}) {
    const auto id = "s-" + pipeline;
    feed({in(pipeline, fact(id, v1::STEP_INGESTED, 0, 0, 3)), in(pipeline, fact(id, v1::STEP_LOADED, 0, 1)),
          in(pipeline, fact(id, v1::STEP_REJECTED_AT_LOAD, 2, 2))});
  }
  EXPECT_EQ(state("s-atomic"), v1::SAGA_STATE_FAILED);
  EXPECT_EQ(state("s-p"), v1::SAGA_STATE_FAILED);
  EXPECT_EQ(outcomes(), (Outcomes{{"s-atomic", v1::SAGA_STATE_FAILED}, {"s-p", v1::SAGA_STATE_FAILED}}));
  EXPECT_EQ(index_entries(), 1u) << "only s-p has an entry (retention); s-atomic waits for compensation";
  now_ += 60'000;
  tick();
  EXPECT_FALSE(store_.get("s-p")->has_value()) << "a final FAILED saga is removed after retention";
  EXPECT_TRUE(store_.get("s-atomic")->has_value());
  feed({in("atomic", fact("s-atomic", v1::STEP_COMPENSATED, 0, 0))});
  EXPECT_EQ(state("s-atomic"), v1::SAGA_STATE_COMPENSATED);
  EXPECT_EQ(outcomes(), (Outcomes{{"s-atomic", v1::SAGA_STATE_COMPENSATED}}));
}

TEST_F(CoordinatorTest, RetentionRemovesFinishedSagasIntoHourlyAggregatesAndKeepsOverdueOnes) {
  feed({fact("done", v1::STEP_INGESTED, 0, 0, 3), fact("done", v1::STEP_LOADED, 0, 1),
        fact("done", v1::STEP_REJECTED, 2, 2), fact("stuck", v1::STEP_INGESTED, 0, 0, 2)});
  const int64_t created = now_;
  now_ += 5'000;
  tick();
  ASSERT_EQ(state("stuck"), v1::SAGA_STATE_OVERDUE);
  now_ += 59'999 - 5'000;  // a ms before "done" expires
  tick();
  EXPECT_TRUE(store_.get("done")->has_value());
  now_ += 1;
  tick();
  EXPECT_FALSE(store_.get("done")->has_value()) << "COMPLETED is removed after retention";
  EXPECT_TRUE(store_.get("stuck")->has_value()) << "OVERDUE stays until its events arrive";
  EXPECT_EQ(index_entries(), 0u);

  const int64_t hour = created / kHourMs * kHourMs;
  auto aggs = store_.aggregates("p", hour, hour + kHourMs);
  ASSERT_TRUE(aggs.has_value());
  ASSERT_EQ(aggs->size(), 1u);
  const auto& a = aggs->at(hour);
  EXPECT_EQ(a.sagas(), 1u);
  EXPECT_EQ(a.accepted(), 3u);
  EXPECT_EQ(a.loaded(), 2u);
  EXPECT_EQ(a.rejected(), 1u);
  EXPECT_EQ(a.in_flight(), 0u);
  EXPECT_EQ(a.by_state().at("COMPLETED"), 1u);

  // A duplicate fact of the removed saga, arriving after retention, does
  // not bring back a half saga that would stay OVERDUE for good.
  auto late = fact("done", v1::STEP_LOADED, 0, 1);
  late.set_time_ms(created - 1);
  feed({late});
  EXPECT_FALSE(store_.get("done")->has_value());
  EXPECT_EQ(coordinator_->late_skipped(), 1u);
}

// The sagas-by-state gauge is kept per fact, O(1), never by a scan: after
// every step the running counts equal a fresh count of the store.
TEST_F(CoordinatorTest, StateCountsFollowEveryTransitionAndRemovalAsAFullScanWould) {
  ASSERT_TRUE(coordinator_->count_states().has_value());
  auto expect_counts = [&](const std::map<v1::SagaState, int64_t>& want, const char* when) {
    std::map<v1::SagaState, int64_t> running;
    for (const auto& [key, n] : coordinator_->state_counts()) {
      if (n != 0) running[key.second] = n;
    }
    EXPECT_EQ(running, want) << when;
    Coordinator fresh(store_, {}, [this] { return now_; });
    ASSERT_TRUE(fresh.count_states().has_value());
    std::map<v1::SagaState, int64_t> scanned;
    for (const auto& [key, n] : fresh.state_counts()) scanned[key.second] = n;
    EXPECT_EQ(running, scanned) << when;
  };
  feed({fact("a", v1::STEP_INGESTED, 0, 0, 2), fact("b", v1::STEP_INGESTED, 0, 0, 1),
        fact("c", v1::STEP_INGESTED, 0, 0, 1)});
  expect_counts({{v1::SAGA_STATE_ACCEPTED, 3}}, "created");
  feed({fact("b", v1::STEP_LOADED, 0, 0), fact("a", v1::STEP_CLEANED, 0, 0)});
  expect_counts({{v1::SAGA_STATE_ACCEPTED, 1}, {v1::SAGA_STATE_IN_FLIGHT, 1}, {v1::SAGA_STATE_COMPLETED, 1}},
                "progress");
  now_ += 2'000;
  tick();
  expect_counts({{v1::SAGA_STATE_STALLED, 2}, {v1::SAGA_STATE_COMPLETED, 1}}, "stalled");
  feed({fact("c", v1::STEP_LOADED, 0, 0)});
  expect_counts({{v1::SAGA_STATE_STALLED, 1}, {v1::SAGA_STATE_COMPLETED, 2}}, "recovered");
  now_ += 60'000;
  tick();
  tick();
  expect_counts({{v1::SAGA_STATE_OVERDUE, 1}}, "retention removed the completed");
}

TEST_F(CoordinatorTest, DeadlinesFireOnlyForOwnedPartitions) {
  feed({fact("mine", v1::STEP_INGESTED, 0, 0, 1)}, 0);
  feed({fact("theirs", v1::STEP_INGESTED, 0, 0, 1)}, 1);
  coordinator_->set_owned(std::set<int32_t>{0});
  now_ += 10'000;
  tick();
  EXPECT_EQ(state("mine"), v1::SAGA_STATE_OVERDUE);
  EXPECT_EQ(state("theirs"), v1::SAGA_STATE_ACCEPTED) << "another instance owns partition 1 now";
  coordinator_->set_owned(std::set<int32_t>{0, 1});
  tick();
  EXPECT_EQ(state("theirs"), v1::SAGA_STATE_OVERDUE);
}

TEST_F(CoordinatorTest, OffsetsCommitWithTheRecordsAndARefoldAfterACrashChangesNothing) {
  std::vector<v1::ProgressFact> facts = {fact("a", v1::STEP_INGESTED, 0, 0, 3), fact("a", v1::STEP_CLEANED, 0, 2),
                                         fact("a", v1::STEP_LOADED, 0, 2)};
  feed(facts, 2);
  EXPECT_EQ(store_.offsets()->at({kSagaTopic, 2}), 3);
  const auto before = (*store_.get("a"))->SerializeAsString();
  (void)outcomes();
  // The same messages again (a restart before the offsets were stored would
  // replay them): nothing changes and no outcome repeats.
  next_offset_[2] = 0;
  feed(facts, 2);
  EXPECT_EQ((*store_.get("a"))->SerializeAsString(), before);
  EXPECT_TRUE(outcomes().empty());
}

TEST(ParseDuration, UnitsAndErrors) {
  EXPECT_EQ(*parse_duration_ms("250"), 250);
  EXPECT_EQ(*parse_duration_ms("90s"), 90'000);
  EXPECT_EQ(*parse_duration_ms("7d"), 7 * 86'400'000LL);
  EXPECT_FALSE(parse_duration_ms("7 days").has_value());
  EXPECT_FALSE(parse_duration_ms("-1s").has_value());
  EXPECT_FALSE(parse_duration_ms("").has_value());
}

}  // namespace
}  // namespace starling::saga
