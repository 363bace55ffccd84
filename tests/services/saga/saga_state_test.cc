#include "services/saga/saga_state.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace starling::saga {
namespace {

v1::ProgressFact fact(v1::Step step, uint32_t first, uint32_t last, uint32_t total = 0) {
  v1::ProgressFact f;
  f.set_saga_id("s");
  f.set_pipeline("p");
  f.set_step(step);
  f.set_total(total);
  auto* r = f.add_seqs();
  r->set_first(first);
  r->set_last(last);
  f.set_time_ms(1000);
  return f;
}

v1::ProgressFact rejection(uint32_t seq, const std::string& field) {
  v1::ProgressFact f = fact(v1::STEP_REJECTED, seq, seq);
  auto* rej = f.add_rejections();
  rej->set_seq(seq);
  auto* reason = rej->add_reasons();
  reason->set_rule("range");
  reason->set_field(field);
  return f;
}

TEST(SagaState, IngestedSagaIsAcceptedUntilProgress) {
  v1::SagaRecord r;
  EXPECT_TRUE(fold(r, fact(v1::STEP_INGESTED, 0, 9, 10)));
  EXPECT_EQ(r.state(), v1::SAGA_STATE_ACCEPTED);
  EXPECT_EQ(r.total(), 10u);
  fold(r, fact(v1::STEP_CLEANED, 0, 4));
  EXPECT_EQ(r.state(), v1::SAGA_STATE_IN_FLIGHT);
  EXPECT_EQ(counts(r).in_flight, 10u);
}

TEST(SagaState, CompletesWhenEverySeqIsLoadedOrRejected) {
  v1::SagaRecord r;
  fold(r, fact(v1::STEP_INGESTED, 0, 9, 10));
  fold(r, fact(v1::STEP_LOADED, 0, 7));
  fold(r, rejection(8, "speed_kmh"));
  EXPECT_EQ(r.state(), v1::SAGA_STATE_IN_FLIGHT);
  fold(r, rejection(9, "speed_kmh"));
  EXPECT_EQ(r.state(), v1::SAGA_STATE_COMPLETED);
  const auto c = counts(r);
  EXPECT_EQ(c.loaded, 8u);
  EXPECT_EQ(c.rejected, 2u);
  EXPECT_EQ(c.in_flight, 0u);
  EXPECT_EQ(r.reason_counts().at("range:speed_kmh"), 2u);
}

TEST(SagaState, DuplicatedFactsChangeNothing) {
  v1::SagaRecord r;
  fold(r, fact(v1::STEP_INGESTED, 0, 9, 10));
  fold(r, fact(v1::STEP_LOADED, 0, 4));
  fold(r, rejection(5, "lat"));
  const auto before = r.SerializeAsString();
  EXPECT_FALSE(fold(r, fact(v1::STEP_LOADED, 0, 4)));
  EXPECT_FALSE(fold(r, rejection(5, "lat")));
  EXPECT_FALSE(fold(r, fact(v1::STEP_INGESTED, 0, 9, 10)));
  EXPECT_EQ(r.SerializeAsString(), before);
  EXPECT_EQ(r.reason_counts().at("range:lat"), 1u);
}

TEST(SagaState, ProgressBeforeIngestIsKeptAndNeverCompletesEarly) {
  // The loader's fact can overtake ingest's on another partition.
  v1::SagaRecord r;
  fold(r, fact(v1::STEP_LOADED, 0, 9));
  EXPECT_NE(r.state(), v1::SAGA_STATE_COMPLETED);
  EXPECT_FALSE(r.ingested());
  fold(r, fact(v1::STEP_INGESTED, 0, 9, 10));
  EXPECT_EQ(r.state(), v1::SAGA_STATE_COMPLETED);
}

TEST(SagaState, AnyOrderAndAnyRepetitionGiveTheSameState) {
  std::vector<v1::ProgressFact> facts = {fact(v1::STEP_INGESTED, 0, 99, 100),
                                         fact(v1::STEP_CLEANED, 0, 49),
                                         fact(v1::STEP_CLEANED, 52, 99),
                                         fact(v1::STEP_LOADED, 0, 30),
                                         fact(v1::STEP_LOADED, 31, 49),
                                         fact(v1::STEP_LOADED, 52, 99),
                                         rejection(50, "lat"),
                                         rejection(51, "speed_kmh")};
  v1::SagaRecord reference;
  for (const auto& f : facts) fold(reference, f);
  ASSERT_EQ(reference.state(), v1::SAGA_STATE_COMPLETED);
  std::mt19937 rng(7);
  for (int round = 0; round < 50; ++round) {
    auto shuffled = facts;
    for (int d = 0; d < 5; ++d) shuffled.push_back(facts[rng() % facts.size()]);
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    v1::SagaRecord r;
    for (const auto& f : shuffled) fold(r, f);
    EXPECT_EQ(r.state(), reference.state());
    EXPECT_EQ(counts(r).loaded, 98u);
    EXPECT_EQ(counts(r).rejected, 2u);
    EXPECT_EQ(r.reason_counts().at("range:lat"), 1u);
  }
}

TEST(SagaState, SeqLoadedAndRejectedAtLoadCountsOnceTowardsDone) {
  v1::SagaRecord r;
  fold(r, fact(v1::STEP_INGESTED, 0, 1, 2));
  fold(r, fact(v1::STEP_LOADED, 0, 0));
  fold(r, fact(v1::STEP_REJECTED_AT_LOAD, 0, 0));
  EXPECT_EQ(counts(r).in_flight, 1u);
  EXPECT_NE(r.state(), v1::SAGA_STATE_COMPLETED);
}

TEST(SagaState, AbsurdSeqIsIgnoredNotAllocated) {
  v1::SagaRecord r;
  fold(r, fact(v1::STEP_LOADED, 0xFFFFFFF0u, 0xFFFFFFFEu));
  EXPECT_LT(r.loaded().size(), 16u);
}

TEST(Bitmap, SetTestAndCount) {
  std::string bits;
  EXPECT_TRUE(set_bit(bits, 0));
  EXPECT_TRUE(set_bit(bits, 17));
  EXPECT_FALSE(set_bit(bits, 17));
  EXPECT_TRUE(test_bit(bits, 17));
  EXPECT_FALSE(test_bit(bits, 16));
  EXPECT_FALSE(test_bit(bits, 1000));
  EXPECT_EQ(popcount(bits), 2u);
}

}  // namespace
}  // namespace starling::saga

namespace starling::saga {
namespace {

v1::ProgressFact at(v1::ProgressFact f, int64_t time_ms, const std::string& source = "test") {
  f.set_time_ms(time_ms);
  f.set_source(source);
  return f;
}

v1::ProgressFact compensated() {
  v1::ProgressFact f;
  f.set_saga_id("s");
  f.set_pipeline("p");
  f.set_step(v1::STEP_COMPENSATED);
  return f;
}

const SagaPolicy kDeadlines{.stall_after_ms = 2'000, .overdue_after_ms = 5'000, .retention_ms = 60'000};

TEST(SagaStateMachine, StalledSagaThatProgressesGoesBackInFlightThenCompletes) {
  v1::SagaRecord r;
  fold(r, at(fact(v1::STEP_INGESTED, 0, 9, 10), 1'000));
  fold(r, at(fact(v1::STEP_CLEANED, 0, 9), 1'100));
  EXPECT_FALSE(apply_deadlines(r, kDeadlines, 3'099).has_value());
  EXPECT_EQ(apply_deadlines(r, kDeadlines, 3'100), v1::SAGA_STATE_STALLED);
  EXPECT_FALSE(apply_deadlines(r, kDeadlines, 3'500).has_value()) << "STALLED is reported once";
  // A duplicate is not progress.
  EXPECT_FALSE(fold(r, at(fact(v1::STEP_CLEANED, 0, 9), 3'600)));
  EXPECT_EQ(r.state(), v1::SAGA_STATE_STALLED);
  fold(r, at(fact(v1::STEP_LOADED, 0, 4), 3'700));
  EXPECT_EQ(r.state(), v1::SAGA_STATE_IN_FLIGHT);
  fold(r, at(fact(v1::STEP_LOADED, 5, 9), 3'800, "load.p"));
  EXPECT_EQ(r.state(), v1::SAGA_STATE_COMPLETED);
  EXPECT_EQ(r.finished_ms(), 3'800);
  ASSERT_EQ(r.timeline_size(), 5);  // ACCEPTED, IN_FLIGHT, STALLED, IN_FLIGHT, COMPLETED
  EXPECT_EQ(r.timeline(2).to(), v1::SAGA_STATE_STALLED);
  EXPECT_EQ(r.timeline(2).time_ms(), 3'100);
  EXPECT_EQ(r.timeline(4).from(), v1::SAGA_STATE_IN_FLIGHT);
  EXPECT_NE(r.timeline(4).cause().find("load.p"), std::string::npos);
  EXPECT_FALSE(apply_deadlines(r, kDeadlines, 100'000).has_value()) << "COMPLETED is terminal";
}

// The loader was down longer than overdue_after: the saga is OVERDUE, an
// alert, and COMPLETES when its events arrive. Nothing fails on a clock.
TEST(SagaStateMachine, OverdueIsAnAlertAndTheSagaCompletesWhenItsEventsArrive) {
  v1::SagaRecord r;
  fold(r, at(fact(v1::STEP_INGESTED, 0, 9, 10), 1'000));
  EXPECT_EQ(apply_deadlines(r, kDeadlines, 3'000), v1::SAGA_STATE_STALLED);
  EXPECT_EQ(next_deadline(r, kDeadlines), 6'000);
  EXPECT_EQ(apply_deadlines(r, kDeadlines, 6'000), v1::SAGA_STATE_OVERDUE);
  EXPECT_NE(r.timeline(r.timeline_size() - 1).cause().find("10 of 10 events in flight"), std::string::npos);
  EXPECT_EQ(next_deadline(r, kDeadlines), 0) << "OVERDUE waits for its events, not for a clock";
  EXPECT_FALSE(apply_deadlines(r, kDeadlines, 1'000'000).has_value()) << "OVERDUE is reported once";
  fold(r, at(fact(v1::STEP_LOADED, 0, 4), 7'000));
  EXPECT_EQ(r.state(), v1::SAGA_STATE_OVERDUE) << "progress does not clear OVERDUE; completion does";
  fold(r, at(fact(v1::STEP_LOADED, 5, 9), 7'100));
  EXPECT_EQ(r.state(), v1::SAGA_STATE_COMPLETED);
  EXPECT_EQ(counts(r).loaded, 10u);
  EXPECT_EQ(next_deadline(r, kDeadlines), 7'100 + 60'000) << "then retention";
  EXPECT_NE(explain(r).find("OVERDUE at"), std::string::npos);
}

v1::ProgressFact refused_at_load(uint32_t seq) {
  v1::ProgressFact f = fact(v1::STEP_REJECTED_AT_LOAD, seq, seq);
  auto* rej = f.add_rejections();
  rej->set_seq(seq);
  auto* reason = rej->add_reasons();
  reason->set_rule("sink");
  reason->set_field("speed_kmh");
  return f;
}

// A seq the sink refused is a definite failure: FAILED at once, even when
// every other seq loaded. In an atomic pipeline it waits for the loader's
// compensation; otherwise FAILED is final and retention applies.
TEST(SagaStateMachine, ASeqRefusedAtLoadFailsTheSagaAndOnlyCompensationLeavesFailed) {
  SagaPolicy atomic = kDeadlines;
  atomic.atomic = true;
  v1::SagaRecord r;
  fold(r, at(fact(v1::STEP_INGESTED, 0, 9, 10), 1'000));
  fold(r, at(fact(v1::STEP_LOADED, 0, 7), 1'100));
  fold(r, at(refused_at_load(9), 1'200, "load.p"));
  EXPECT_EQ(r.state(), v1::SAGA_STATE_FAILED);
  EXPECT_NE(r.timeline(r.timeline_size() - 1).cause().find("1 of 10 seqs refused by the sink"), std::string::npos);
  EXPECT_EQ(r.reason_counts().at("sink:speed_kmh"), 1u);
  EXPECT_FALSE(is_finished(r, atomic));
  EXPECT_EQ(next_deadline(r, atomic), 0) << "an atomic FAILED saga waits for compensation, not for a clock";
  EXPECT_TRUE(is_finished(r, kDeadlines));
  EXPECT_EQ(next_deadline(r, kDeadlines), 1'200 + 60'000) << "otherwise FAILED is final: retention";
  EXPECT_FALSE(apply_deadlines(r, atomic, 1'000'000).has_value());
  // A late load still counts (the report stays exact), but does not revive it.
  fold(r, at(fact(v1::STEP_LOADED, 8, 8), 1'300));
  EXPECT_EQ(r.state(), v1::SAGA_STATE_FAILED);
  EXPECT_EQ(counts(r).loaded, 9u);
  EXPECT_EQ(counts(r).in_flight, 0u);
  fold(r, at(compensated(), 8'000, "load.p"));
  EXPECT_EQ(r.state(), v1::SAGA_STATE_COMPENSATED);
  EXPECT_EQ(next_deadline(r, atomic), 8'000 + 60'000) << "then retention";
  EXPECT_FALSE(fold(r, at(compensated(), 9'000)));
  EXPECT_NE(explain(r).find("FAILED at"), std::string::npos);
}

// A replay's rows replaced the originals in place and are never
// compensated: a refusal at load is a rejection with a reason.
TEST(SagaStateMachine, ReplaySagaWithASeqRefusedAtLoadCompletes) {
  v1::SagaRecord r;
  auto ingested = fact(v1::STEP_INGESTED, 0, 0, 2);
  ingested.set_kind(v1::SAGA_KIND_REPLAY);
  fold(r, at(ingested, 1'000));
  fold(r, at(refused_at_load(1), 1'100));
  fold(r, at(fact(v1::STEP_LOADED, 0, 0), 1'200));
  EXPECT_EQ(r.state(), v1::SAGA_STATE_COMPLETED);
}

TEST(SagaStateMachine, CompensationBeforeFailureIsKeptAndAppliedWhenItFails) {
  v1::SagaRecord r;
  fold(r, at(fact(v1::STEP_INGESTED, 0, 9, 10), 1'000));
  fold(r, at(compensated(), 1'500));
  EXPECT_EQ(r.state(), v1::SAGA_STATE_ACCEPTED);
  fold(r, at(refused_at_load(3), 1'600));
  EXPECT_EQ(r.state(), v1::SAGA_STATE_FAILED);
  // The loader answers FAILED with another STEP_COMPENSATED: that one moves it.
  EXPECT_TRUE(fold(r, at(compensated(), 6'100)));
  EXPECT_EQ(r.state(), v1::SAGA_STATE_COMPENSATED);
}

TEST(SagaStateMachine, CompensationNeverUndoesACompletedSaga) {
  v1::SagaRecord r;
  fold(r, at(fact(v1::STEP_INGESTED, 0, 1, 2), 1'000));
  fold(r, at(fact(v1::STEP_LOADED, 0, 1), 1'100));
  ASSERT_EQ(r.state(), v1::SAGA_STATE_COMPLETED);
  fold(r, at(compensated(), 1'200));
  EXPECT_EQ(r.state(), v1::SAGA_STATE_COMPLETED);
}

TEST(SagaStateMachine, ReorderedDuplicatedAndLateFactsGiveTheSameFinalStateAndCounts) {
  std::vector<v1::ProgressFact> facts = {at(fact(v1::STEP_INGESTED, 0, 99, 100), 1'000),
                                         at(fact(v1::STEP_CLEANED, 0, 49), 1'010),
                                         at(fact(v1::STEP_CLEANED, 52, 99), 1'020),
                                         at(fact(v1::STEP_LOADED, 0, 30), 1'030),
                                         at(fact(v1::STEP_LOADED, 31, 49), 1'040),
                                         at(fact(v1::STEP_LOADED, 52, 99), 1'050),
                                         at(rejection(50, "lat"), 1'060),
                                         at(rejection(51, "speed_kmh"), 1'070)};
  std::mt19937 rng(11);
  for (int round = 0; round < 100; ++round) {
    auto shuffled = facts;
    for (int d = 0; d < 8; ++d) shuffled.push_back(facts[rng() % facts.size()]);
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    v1::SagaRecord r;
    for (const auto& f : shuffled) {
      fold(r, f);
      // A deadline check between facts never fires: the deadlines are far.
      EXPECT_FALSE(apply_deadlines(r, kDeadlines, 1'100).has_value());
    }
    EXPECT_EQ(r.state(), v1::SAGA_STATE_COMPLETED);
    EXPECT_EQ(r.created_ms(), 1'000) << "creation is ingest's time whatever came first";
    EXPECT_EQ(r.finished_ms() >= 1'000 && r.finished_ms() <= 1'070, true);
    EXPECT_EQ(counts(r).loaded, 98u);
    EXPECT_EQ(counts(r).rejected, 2u);
    EXPECT_EQ(counts(r).in_flight, 0u);
    EXPECT_EQ(r.timeline(r.timeline_size() - 1).to(), v1::SAGA_STATE_COMPLETED);
  }
}

TEST(SagaStateMachine, TimelineKeepsCreationAndTheLatestTransitions) {
  v1::SagaRecord r;
  fold(r, at(fact(v1::STEP_INGESTED, 0, 999, 1000), 1'000));
  int64_t t = 1'000;
  for (uint32_t i = 0; i < 40; ++i) {
    t += 3'000;
    ASSERT_EQ(apply_deadlines(r, {.stall_after_ms = 2'000, .overdue_after_ms = 1'000'000}, t), v1::SAGA_STATE_STALLED);
    fold(r, at(fact(v1::STEP_CLEANED, i, i), t + 1));
  }
  EXPECT_EQ(r.timeline_size(), kTimelineMax);
  EXPECT_EQ(r.timeline(0).to(), v1::SAGA_STATE_ACCEPTED);
  EXPECT_EQ(r.timeline(kTimelineMax - 1).time_ms(), t + 1);
}

// A replay saga: facts of its events arrive while `starling replay` still
// publishes; its INGESTED fact (the total, the children) comes last.
TEST(SagaState, ReplaySagaHasNoDeadlinesUntilItsTotalIsKnownAndReportsChildProgress) {
  const SagaPolicy d{.stall_after_ms = 1'000, .overdue_after_ms = 5'000};
  v1::SagaRecord r;
  auto loaded = fact(v1::STEP_LOADED, 0, 5);
  loaded.set_saga_id("replay-1");
  fold(r, loaded);
  EXPECT_EQ(next_deadline(r, d), 0) << "a paused replay is not a stalled saga";
  EXPECT_FALSE(apply_deadlines(r, d, 1'000'000).has_value());

  auto ingested = fact(v1::STEP_INGESTED, 0, 0, 10);
  ingested.set_saga_id("replay-1");
  ingested.set_kind(v1::SAGA_KIND_REPLAY);
  ingested.set_time_ms(50'000);
  for (const auto& [first, last] : {std::pair{0u, 5u}, std::pair{6u, 9u}}) {
    auto* c = ingested.mutable_replay()->add_children();
    c->set_first(first);
    c->set_last(last);
  }
  fold(r, ingested);
  EXPECT_EQ(r.kind(), v1::SAGA_KIND_REPLAY);
  EXPECT_EQ(r.created_ms(), 50'000) << "deadlines start when the total is known";
  EXPECT_EQ(next_deadline(r, d), 51'000);
  const auto first = child_counts(r, r.replay().children(0));
  EXPECT_EQ(first.total, 6u);
  EXPECT_EQ(first.loaded, 6u);
  const auto second = child_counts(r, r.replay().children(1));
  EXPECT_EQ(second.total, 4u);
  EXPECT_EQ(second.loaded, 0u);
  auto rest = fact(v1::STEP_LOADED, 6, 9);
  rest.set_saga_id("replay-1");
  fold(r, rest);
  EXPECT_EQ(r.state(), v1::SAGA_STATE_COMPLETED);
}

}  // namespace
}  // namespace starling::saga
