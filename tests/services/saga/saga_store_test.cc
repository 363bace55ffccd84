#include "services/saga/saga_store.h"

#include <gtest/gtest.h>

#include "tests/support/temp_dir.h"

namespace starling::saga {
namespace {

TEST(RocksSagaStore, RecordsOffsetsAndOutboxSurviveReopen) {
  testing::TempDir dir;
  {
    RocksSagaStore store(dir / "db");
    v1::SagaRecord r;
    r.set_saga_id("s1");
    r.set_total(3);
    ASSERT_TRUE(
        store.commit({r}, {{{"starling.saga", 2}, 17}}, {{"starling.saga.outcomes", "s1", "v1", {}}}).has_value());
  }
  RocksSagaStore store(dir / "db");
  auto got = store.get("s1");
  ASSERT_TRUE(got.has_value());
  const std::optional<v1::SagaRecord>& record = *got;
  if (!record) GTEST_FAIL() << "s1 did not survive the reopen";
  EXPECT_EQ(record->total(), 3u);
  auto offsets = store.offsets();
  ASSERT_TRUE(offsets.has_value());
  EXPECT_EQ(offsets->at({"starling.saga", 2}), 17);
  auto out = store.outbox(10);
  ASSERT_TRUE(out.has_value());
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ((*out)[0].message.topic, "starling.saga.outcomes");
  EXPECT_EQ((*out)[0].message.key, "s1");
  EXPECT_EQ((*out)[0].message.value, "v1");
  ASSERT_TRUE(store.outbox_done((*out)[0].id).has_value());
  EXPECT_TRUE(store.outbox(10)->empty());
  auto missing = store.get("nope");
  ASSERT_TRUE(missing.has_value());
  EXPECT_FALSE(missing->has_value());
}

TEST(RocksSagaStore, AWriteThatCarriesOutcomesIsSyncedAndOtherWritesAreNot) {
  // Issue 17, item 12: the outbox relay publishes outcomes the services act
  // on, so the write holding them must reach the disk first (it did not).
  testing::TempDir dir;
  RocksSagaStore store(dir / "db");
  v1::SagaRecord r;
  r.set_saga_id("s1");
  const auto before = store.wal_syncs();
  ASSERT_TRUE(store.commit({r}, {{{"starling.saga", 0}, 1}}, {}).has_value());
  EXPECT_EQ(store.wal_syncs(), before);
  ASSERT_TRUE(store.commit({r}, {{{"starling.saga", 0}, 2}}, {{"starling.saga.outcomes", "s1", "v1", {}}}).has_value());
  EXPECT_GT(store.wal_syncs(), before);
}

TEST(RocksSagaStore, OutboxIdsKeepIncreasingAcrossReopen) {
  testing::TempDir dir;
  uint64_t first = 0;
  {
    RocksSagaStore store(dir / "db");
    ASSERT_TRUE(store.commit({}, {}, {{"t", "k", "a", {}}}).has_value());
    first = store.outbox(1)->at(0).id;
  }
  RocksSagaStore store(dir / "db");
  ASSERT_TRUE(store.commit({}, {}, {{"t", "k", "b", {}}}).has_value());
  const auto all = *store.outbox(10);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].message.value, "a");
  EXPECT_EQ(all[1].message.value, "b");
  EXPECT_GT(all[1].id, first);
}

}  // namespace
}  // namespace starling::saga
