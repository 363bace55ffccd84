#include "services/common/facts.h"

#include <gtest/gtest.h>

namespace starling {
namespace {

TEST(Facts, SeqsAreSortedDedupedAndMergedIntoRanges) {
  const auto r = to_ranges({5, 1, 2, 3, 3, 9, 6});
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].first(), 1u);
  EXPECT_EQ(r[0].last(), 3u);
  EXPECT_EQ(r[1].first(), 5u);
  EXPECT_EQ(r[1].last(), 6u);
  EXPECT_EQ(r[2].first(), 9u);
  EXPECT_EQ(r[2].last(), 9u);
}

TEST(Facts, BuilderMakesOneFactPerSagaWithRejections) {
  FactBuilder b(v1::STEP_REJECTED, "clean-1");
  google::protobuf::RepeatedPtrField<v1::Reason> reasons;
  reasons.Add()->set_rule("range");
  b.add_rejection("s1", "p", 4, reasons);
  b.add("s2", "p", 0);
  b.add("s1", "p", 5);
  const auto facts = b.build(42);
  ASSERT_EQ(facts.size(), 2u);
  EXPECT_EQ(facts[0].saga_id(), "s1");
  EXPECT_EQ(facts[0].seqs_size(), 1);
  EXPECT_EQ(facts[0].seqs(0).first(), 4u);
  EXPECT_EQ(facts[0].seqs(0).last(), 5u);
  ASSERT_EQ(facts[0].rejections_size(), 1);
  EXPECT_EQ(facts[0].rejections(0).reasons(0).rule(), "range");
  EXPECT_EQ(facts[1].saga_id(), "s2");
  EXPECT_EQ(facts[1].time_ms(), 42);
}

}  // namespace
}  // namespace starling
