#include "services/saga/saga_state.h"

#include <algorithm>
#include <random>

#include <gtest/gtest.h>

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
  std::vector<v1::ProgressFact> facts = {fact(v1::STEP_INGESTED, 0, 99, 100), fact(v1::STEP_CLEANED, 0, 49),
                                         fact(v1::STEP_CLEANED, 52, 99),     fact(v1::STEP_LOADED, 0, 30),
                                         fact(v1::STEP_LOADED, 31, 49),      fact(v1::STEP_LOADED, 52, 99),
                                         rejection(50, "lat"),               rejection(51, "speed_kmh")};
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
