#include "services/saga/saga_store.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/perf_context.h>
#include <rocksdb/perf_level.h>

#include <set>

#include "tests/support/temp_dir.h"

namespace starling::saga {
namespace {

std::vector<uint64_t> ids_of(const std::vector<kafka::OutboxEntry>& entries) {
  std::vector<uint64_t> ids;
  ids.reserve(entries.size());
  for (const auto& e : entries) ids.push_back(e.id);
  return ids;
}

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
  ASSERT_TRUE(store.outbox_done({(*out)[0].id}).has_value());
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

TEST(RocksSagaStore, TheRelayNeverWalksOverWhatItRelayed) {
  // Issue 19: every relay made a new iterator over the outbox, and each one
  // rebuilt the range tombstones outbox_done() left, so the saga service's
  // cost per event grew with the sagas it had decided (saga_bench shows that
  // cost). outbox_done() now leaves point tombstones, and the relay starts
  // at its cursor past them: none of them is ever visited again.
  testing::TempDir dir;
  RocksSagaStore store(dir / "db");
  for (int round = 0; round < 20; ++round) {
    std::vector<kafka::OutMessage> out;
    out.reserve(100);
    for (int i = 0; i < 100; ++i) out.push_back({"t", "k", fmt::format("{}-{}", round, i), {}});
    ASSERT_TRUE(store.commit({}, {}, out).has_value());
    auto pending = store.outbox(1000);
    ASSERT_TRUE(pending.has_value());
    ASSERT_EQ(pending->size(), 100u);
    EXPECT_EQ(pending->front().message.value, fmt::format("{}-0", round));
    ASSERT_TRUE(store.outbox_done(ids_of(*pending)).has_value());
  }
  ASSERT_TRUE(store.commit({}, {}, {{"t", "k", "last", {}}}).has_value());
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
  rocksdb::get_perf_context()->Reset();
  auto pending = store.outbox(10);
  const auto skipped = rocksdb::get_perf_context()->internal_delete_skipped_count +
                       rocksdb::get_perf_context()->internal_range_del_reseek_count;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  ASSERT_TRUE(pending.has_value());
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ(pending->front().message.value, "last");
  EXPECT_EQ(skipped, 0u) << "the relay walked over relayed entries";

  // An empty outbox answers without reading; an id past the end moves no
  // cursor, and a reopen starts the cursor at the oldest entry left.
  ASSERT_TRUE(store.outbox_done({pending->back().id, pending->back().id + 1'000'000}).has_value());
  EXPECT_TRUE(store.outbox(10)->empty());
  ASSERT_TRUE(store.commit({}, {}, {{"t", "k", "a", {}}, {"t", "k", "b", {}}}).has_value());
  const auto two = *store.outbox(10);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[1].id, two[0].id + 1);
  ASSERT_TRUE(store.outbox_done({two[0].id}).has_value());
}

TEST(RocksSagaStore, TheRelayCursorResumesAtTheOldestEntryLeftAfterAReopen) {
  testing::TempDir dir;
  {
    RocksSagaStore store(dir / "db");
    ASSERT_TRUE(store.commit({}, {}, {{"t", "k", "a", {}}, {"t", "k", "b", {}}, {"t", "k", "c", {}}}).has_value());
    ASSERT_TRUE(store.outbox_done({store.outbox(1)->at(0).id}).has_value());
  }
  RocksSagaStore store(dir / "db");
  auto left = store.outbox(10);
  ASSERT_TRUE(left.has_value());
  ASSERT_EQ(left->size(), 2u);
  EXPECT_EQ(left->at(0).message.value, "b");
  EXPECT_EQ(left->at(1).message.value, "c");
  ASSERT_TRUE(store.outbox_done(ids_of(*left)).has_value());
  EXPECT_TRUE(store.outbox(10)->empty());
  ASSERT_TRUE(store.commit({}, {}, {{"t", "k", "d", {}}}).has_value());
  ASSERT_EQ(store.outbox(10)->size(), 1u);
  EXPECT_EQ(store.outbox(10)->at(0).message.value, "d");
}

v1::SagaRecord record(const std::string& id, const std::string& pipeline, v1::SagaState state, int64_t created) {
  v1::SagaRecord r;
  r.set_saga_id(id);
  r.set_pipeline(pipeline);
  r.set_state(state);
  r.set_created_ms(created);
  return r;
}

std::vector<std::string> ids(const ListPage& page) {
  std::vector<std::string> out;
  out.reserve(page.sagas.size());
  for (const auto& r : page.sagas) out.push_back(r.saga_id());
  return out;
}

TEST(RocksSagaStoreListing, NewestFirstPerPipelineAndStateFollowingEveryMove) {
  testing::TempDir dir;
  RocksSagaStore store(dir / "db");
  SagaCommit c;
  for (int i = 0; i < 6; ++i) {
    c.sagas.push_back({record("s" + std::to_string(i), i < 5 ? "p" : "q", v1::SAGA_STATE_IN_FLIGHT, 1000 + i)});
  }
  ASSERT_TRUE(store.commit(c));
  auto all = store.list({.pipeline = "p"});
  ASSERT_TRUE(all) << all.error().message;
  EXPECT_EQ(ids(*all), (std::vector<std::string>{"s4", "s3", "s2", "s1", "s0"}));
  EXPECT_TRUE(all->next.empty());
  // s2 stalls: it leaves IN_FLIGHT's list and joins STALLED's, and stays in the any-state list once.
  SagaCommit move;
  move.sagas.push_back({record("s2", "p", v1::SAGA_STATE_STALLED, 1002), 0, v1::SAGA_STATE_IN_FLIGHT, 1002});
  ASSERT_TRUE(store.commit(move));
  EXPECT_EQ(ids(*store.list({.pipeline = "p", .state = v1::SAGA_STATE_STALLED})), std::vector<std::string>{"s2"});
  EXPECT_EQ(ids(*store.list({.pipeline = "p", .state = v1::SAGA_STATE_IN_FLIGHT})),
            (std::vector<std::string>{"s4", "s3", "s1", "s0"}));
  EXPECT_EQ(store.list({.pipeline = "p"})->sagas.size(), 5u);
  // since and until bound the creation time: [since, until).
  EXPECT_EQ(ids(*store.list({.pipeline = "p", .since_ms = 1001, .until_ms = 1004})),
            (std::vector<std::string>{"s3", "s2", "s1"}));
  // Retention removes a saga from every list.
  SagaCommit removal;
  removal.removed.push_back(record("s2", "p", v1::SAGA_STATE_STALLED, 1002));
  ASSERT_TRUE(store.commit(removal));
  EXPECT_TRUE(store.list({.pipeline = "p", .state = v1::SAGA_STATE_STALLED})->sagas.empty());
  EXPECT_EQ(store.list({.pipeline = "p"})->sagas.size(), 4u);
  EXPECT_EQ(ids(*store.list({.pipeline = "q"})), std::vector<std::string>{"s5"});
}

TEST(RocksSagaStoreListing, PagesVisitEverySagaOnceAndRefuseAnotherListsToken) {
  testing::TempDir dir;
  RocksSagaStore store(dir / "db");
  SagaCommit c;
  // Two sagas share each creation time: the id breaks the tie.
  for (int i = 0; i < 250; ++i)
    c.sagas.push_back({record(fmt::format("s{:03}", i), "p", v1::SAGA_STATE_COMPLETED, i / 2)});
  ASSERT_TRUE(store.commit(c));
  std::set<std::string> seen;
  ListQuery q{.pipeline = "p", .state = v1::SAGA_STATE_COMPLETED, .limit = 40};
  int pages = 0;
  int64_t last_created = INT64_MAX;
  do {
    auto page = store.list(q);
    ASSERT_TRUE(page) << page.error().message;
    for (const auto& r : page->sagas) {
      EXPECT_TRUE(seen.insert(r.saga_id()).second) << r.saga_id() << " twice";
      EXPECT_LE(r.created_ms(), last_created);
      last_created = r.created_ms();
    }
    q.after = page->next;
    ASSERT_LT(++pages, 20);
  } while (!q.after.empty());
  EXPECT_EQ(seen.size(), 250u);
  auto first = store.list({.pipeline = "p", .limit = 1});
  ASSERT_FALSE(first->next.empty());
  auto other = store.list({.pipeline = "q", .after = first->next});
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, Errc::kInvalidArgument);
}

TEST(RocksSagaStoreListing, AStaleEntryIsSkippedAndAStoreWrittenBeforeTheIndexGetsOne) {
  testing::TempDir dir;
  {
    // A store as an older starling-saga left it: no listing column family.
    rocksdb::DBOptions o;
    o.create_if_missing = true;
    o.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const auto* name : {"default", "sagas", "offsets", "outbox", "deadlines", "aggregates"}) {
      cfs.emplace_back(name, rocksdb::ColumnFamilyOptions{});
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir / "db", cfs, &handles, &raw).ok());
    ASSERT_TRUE(
        raw->Put({}, handles[1], "old", record("old", "p", v1::SAGA_STATE_COMPLETED, 5).SerializeAsString()).ok());
    for (auto* h : handles) raw->DestroyColumnFamilyHandle(h);
    delete raw;
  }
  RocksSagaStore store(dir / "db");
  EXPECT_EQ(ids(*store.list({.pipeline = "p", .state = v1::SAGA_STATE_COMPLETED})), std::vector<std::string>{"old"});
  // A write that did not say the saga's old state leaves its old entry; a
  // read checks every entry against the record and skips it.
  ASSERT_TRUE(store.commit({record("old", "p", v1::SAGA_STATE_FAILED, 5)}, {}, {}));
  EXPECT_TRUE(store.list({.pipeline = "p", .state = v1::SAGA_STATE_COMPLETED})->sagas.empty());
  EXPECT_EQ(ids(*store.list({.pipeline = "p", .state = v1::SAGA_STATE_FAILED})), std::vector<std::string>{"old"});
  EXPECT_EQ(store.list({.pipeline = "p"})->sagas.size(), 1u);
}

}  // namespace
}  // namespace starling::saga
