#include "services/load/sqlite_sink.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/services/load/sink_rows.h"
#include "tests/services/load/sqlite_query.h"
#include "tests/support/temp_dir.h"

namespace starling::load {
namespace {

Row row(const std::string& id, double speed, const std::string& saga = "s1") {
  return ride_row(id, speed, saga, "bike-1");
}

TEST(SqliteSink, UpsertByEventIdNeverDuplicatesARow) {
  testing::TempDir dir;
  const auto p = parse_pipeline(kPipeline, "t.yaml");
  SqliteSink sink(dir / "w.db", p);
  SinkBatch first;
  first.rows.push_back(row("e1", 10));
  first.rows.push_back(row("e2", 11));
  first.next_offsets = {{{"t.clean", 0}, 2}};
  ASSERT_TRUE(sink.write(first, {}).has_value());
  SinkBatch again;
  again.rows.push_back(row("e1", 12, "s2"));  // a replay or a redelivery
  again.next_offsets = {{{"t.clean", 0}, 3}};
  ASSERT_TRUE(sink.write(again, {}).has_value());
  const auto all =
      query(dir / "w.db", "SELECT event_id, saga_id, speed_kmh, status, event_time FROM rides ORDER BY event_id");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0], (std::vector<std::string>{"e1", "s2", "12.0", "RIDING", "2023-11-14T22:13:20Z"}));
  EXPECT_EQ(all[1][0], "e2");
}

TEST(SqliteSink, AReplayThatYieldsTheSameRowLeavesItAndItsSagaIdAlone) {
  testing::TempDir dir;
  const auto p = parse_pipeline(kPipeline, "t.yaml");
  SqliteSink sink(dir / "w.db", p);
  const auto results = load_then_replay(sink);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_TRUE(results[0].written) << "an unchanged row is still loaded, as far as the saga goes";
  EXPECT_TRUE(results[1].written);
  const auto all = query(dir / "w.db", "SELECT event_id, saga_id, speed_kmh FROM rides ORDER BY event_id");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0], (std::vector<std::string>{"e1", "s1", "10.0"}));
  EXPECT_EQ(all[1], (std::vector<std::string>{"e2", "replay-1", "99.0"}));
}

TEST(SqliteSink, AnEventIdLoadedForOneDeviceIsNeverRewrittenForAnother) {
  testing::TempDir dir;
  const auto p = parse_pipeline(kPipeline, "t.yaml");
  SqliteSink sink(dir / "w.db", p);
  const auto results = load_then_rewrite_from_another_device(sink);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_FALSE(results[0].written);
  EXPECT_THAT(results[0].error, ::testing::HasSubstr("event_id_conflict"));
  EXPECT_TRUE(results[1].written) << "the rest of the batch commits";
  const auto all = query(dir / "w.db", "SELECT event_id, saga_id, device_id, speed_kmh FROM rides ORDER BY event_id");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0], (std::vector<std::string>{"e1", "s1", "bike-1", "10.0"}));
  EXPECT_EQ(all[1], (std::vector<std::string>{"e3", "s9", "bike-2", "30.0"}));
}

TEST(SqliteSink, OffsetsAndOutboxCommitWithTheRows) {
  testing::TempDir dir;
  const auto p = parse_pipeline(kPipeline, "t.yaml");
  {
    SqliteSink sink(dir / "w.db", p);
    SinkBatch b;
    b.rows.push_back(row("e1", 10));
    b.next_offsets = {{{"t.clean", 1}, 42}};
    std::vector<RowResult> seen;
    ASSERT_TRUE(sink.write(b,
                           [&](const std::vector<RowResult>& r) {
                             seen = r;
                             return std::vector<kafka::OutMessage>{{"starling.saga", "s1", "fact", {}}};
                           })
                    .has_value());
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_TRUE(seen[0].written);
  }
  SqliteSink sink(dir / "w.db", p);
  auto offsets = sink.offsets();
  ASSERT_TRUE(offsets.has_value());
  EXPECT_EQ(offsets->at({"t.clean", 1}), 42);
  auto out = sink.outbox(10);
  ASSERT_TRUE(out.has_value());
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ((*out)[0].message.value, "fact");
  ASSERT_TRUE(sink.outbox_done({(*out)[0].id}).has_value());
  EXPECT_TRUE(sink.outbox(10)->empty());
}

TEST(SqliteSink, ARowTheDbRefusesIsReportedAndTheRestOfTheBatchCommits) {
  testing::TempDir dir;
  const auto p = parse_pipeline(kPipeline, "t.yaml");
  SqliteSink sink(dir / "w.db", p);
  // A trigger makes the DB refuse one row half-way through the batch.
  query(dir / "w.db",
        "CREATE TRIGGER refuse BEFORE INSERT ON rides WHEN NEW.event_id = 'bad' "
        "BEGIN SELECT RAISE(ABORT, 'speed check failed'); END");
  SinkBatch b;
  b.rows.push_back(row("ok", 1));
  b.rows.push_back(row("bad", 2));
  b.rows.push_back(row("ok2", 3));
  b.next_offsets = {{{"t.clean", 0}, 7}};
  std::vector<RowResult> seen;
  auto st = sink.write(b, [&](const std::vector<RowResult>& r) {
    seen = r;
    return std::vector<kafka::OutMessage>{{"t.dlq", "k", "dead letter", {}}};
  });
  ASSERT_TRUE(st.has_value()) << st.error().message;
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_TRUE(seen[0].written);
  EXPECT_FALSE(seen[1].written);
  EXPECT_THAT(seen[1].error, ::testing::HasSubstr("speed check failed"));
  EXPECT_TRUE(seen[2].written);
  EXPECT_EQ(query(dir / "w.db", "SELECT event_id FROM rides ORDER BY event_id"),
            (std::vector<std::vector<std::string>>{{"ok"}, {"ok2"}}));
  EXPECT_EQ(sink.offsets()->at({"t.clean", 0}), 7);
  EXPECT_EQ(sink.outbox(10)->size(), 1u);
}

TEST(SqliteSink, CompensationDeletesTheSagasRowsAndRemembersIt) {
  testing::TempDir dir;
  const auto p = parse_pipeline(kPipeline, "t.yaml");
  SqliteSink sink(dir / "w.db", p);
  SinkBatch load;
  load.rows.push_back(row("a1", 1, "sagaA"));
  load.rows.push_back(row("a2", 1, "sagaA"));
  load.rows.push_back(row("b1", 1, "sagaB"));
  ASSERT_TRUE(sink.write(load, {}).has_value());
  SinkBatch undo;
  undo.compensate = {"sagaA"};
  ASSERT_TRUE(sink.write(undo, {}).has_value());
  EXPECT_EQ(query(dir / "w.db", "SELECT event_id FROM rides"), (std::vector<std::vector<std::string>>{{"b1"}}));
  EXPECT_EQ(query(dir / "w.db", "SELECT rows_deleted FROM _starling_compensated WHERE saga_id = 'sagaA'"),
            (std::vector<std::vector<std::string>>{{"2"}}));
  auto gone = sink.compensated({"sagaA", "sagaB"});
  ASSERT_TRUE(gone.has_value());
  EXPECT_EQ(*gone, (std::set<std::string>{"sagaA"}));
}

TEST(SqliteSink, ANewMappedColumnIsAddedToTheTable) {
  testing::TempDir dir;
  { SqliteSink sink(dir / "w.db", parse_pipeline(kPipeline, "t.yaml")); }
  const auto wider = parse_pipeline(std::string(kPipeline) + "    battery_pct: battery_pct\n", "t.yaml");
  SqliteSink sink(dir / "w.db", wider);
  const auto cols = query(dir / "w.db", "SELECT name, type FROM pragma_table_info('rides') WHERE name = 'battery_pct'");
  ASSERT_EQ(cols.size(), 1u);
  EXPECT_EQ(cols[0][1], "REAL");
}

TEST(SqliteSink, AColumnWhoseTypeChangedIsRefusedWithAClearMessage) {
  testing::TempDir dir;
  { SqliteSink sink(dir / "w.db", parse_pipeline(kPipeline, "t.yaml")); }
  std::string changed = kPipeline;
  changed.replace(changed.find("speed_kmh: speed_kmh"), 20, "speed_kmh: ride_id");
  const auto p = parse_pipeline(changed, "t.yaml");
  try {
    SqliteSink sink(dir / "w.db", p);
    FAIL() << "expected a refusal";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("column rides.speed_kmh is REAL"));
  }
}

}  // namespace
}  // namespace starling::load
