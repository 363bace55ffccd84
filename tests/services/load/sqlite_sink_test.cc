#include "services/load/sqlite_sink.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "starling/v1/ecowheels.pb.h"
#include "tests/support/temp_dir.h"

namespace starling::load {
namespace {

const char* kPipeline = R"(pipeline: t
schema: {message: starling.v1.RideTelemetry}
load:
  table: rides
  columns:
    device_id: device_id
    speed_kmh: speed_kmh
    status: status
    event_time: event_time
)";

Row row(const std::string& id, double speed, const std::string& saga = "s1") {
  Row r;
  r.envelope.set_event_id(id);
  r.envelope.set_saga_id(saga);
  r.envelope.set_seq(1);
  auto rec = std::make_unique<v1::RideTelemetry>();
  rec->set_device_id("bike-1");
  rec->set_speed_kmh(speed);
  rec->set_status(v1::RideTelemetry::RIDING);
  rec->mutable_event_time()->set_seconds(1'700'000'000);
  r.record = std::move(rec);
  return r;
}

std::vector<std::vector<std::string>> query(const std::string& db, const std::string& sql) {
  sqlite3* h = nullptr;
  sqlite3_open(db.c_str(), &h);
  sqlite3_stmt* s = nullptr;
  std::vector<std::vector<std::string>> out;
  if (sqlite3_prepare_v2(h, sql.c_str(), -1, &s, nullptr) == SQLITE_OK) {
    while (sqlite3_step(s) == SQLITE_ROW) {
      std::vector<std::string> r;
      for (int i = 0; i < sqlite3_column_count(s); ++i) {
        const auto* t = sqlite3_column_text(s, i);
        r.push_back(t ? reinterpret_cast<const char*>(t) : "NULL");
      }
      out.push_back(r);
    }
  }
  sqlite3_finalize(s);
  sqlite3_close(h);
  return out;
}

TEST(SqliteSink, UpsertByEventIdNeverDuplicatesARow) {
  testing::TempDir dir;
  const auto p = parse_pipeline(kPipeline, "t.yaml");
  SqliteSink sink(dir / "w.db", p);
  std::vector<Row> rows;
  rows.push_back(row("e1", 10));
  rows.push_back(row("e2", 11));
  ASSERT_TRUE(sink.write(rows, {{{"t.clean", 0}, 2}}, {}).has_value());
  std::vector<Row> again;
  again.push_back(row("e1", 12, "s2"));  // a replay or a redelivery
  ASSERT_TRUE(sink.write(again, {{{"t.clean", 0}, 3}}, {}).has_value());
  const auto all = query(dir / "w.db", "SELECT event_id, saga_id, speed_kmh, status, event_time FROM rides ORDER BY event_id");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0], (std::vector<std::string>{"e1", "s2", "12.0", "RIDING", "2023-11-14T22:13:20Z"}));
  EXPECT_EQ(all[1][0], "e2");
}

TEST(SqliteSink, OffsetsAndOutboxCommitWithTheRows) {
  testing::TempDir dir;
  const auto p = parse_pipeline(kPipeline, "t.yaml");
  {
    SqliteSink sink(dir / "w.db", p);
    std::vector<Row> rows;
    rows.push_back(row("e1", 10));
    ASSERT_TRUE(sink.write(rows, {{{"t.clean", 1}, 42}}, {{"starling.saga", "s1", "fact", {}}}).has_value());
  }
  SqliteSink sink(dir / "w.db", p);
  auto offsets = sink.offsets();
  ASSERT_TRUE(offsets.has_value());
  EXPECT_EQ(offsets->at({"t.clean", 1}), 42);
  auto out = sink.outbox(10);
  ASSERT_TRUE(out.has_value());
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ((*out)[0].message.value, "fact");
  ASSERT_TRUE(sink.outbox_done((*out)[0].id).has_value());
  EXPECT_TRUE(sink.outbox(10)->empty());
}

TEST(SqliteSink, AFailedBatchLeavesNeitherRowsNorOffsets) {
  testing::TempDir dir;
  const auto p = parse_pipeline(kPipeline, "t.yaml");
  SqliteSink sink(dir / "w.db", p);
  // A trigger makes the DB refuse one row half-way through the batch.
  query(dir / "w.db", "CREATE TRIGGER refuse BEFORE INSERT ON rides WHEN NEW.event_id = 'bad' "
                      "BEGIN SELECT RAISE(ABORT, 'refused'); END");
  std::vector<Row> rows;
  rows.push_back(row("ok", 1));
  rows.push_back(row("bad", 2));
  auto st = sink.write(rows, {{{"t.clean", 0}, 7}}, {{"starling.saga", "s1", "fact", {}}});
  ASSERT_FALSE(st.has_value());
  EXPECT_THAT(st.error().message, ::testing::HasSubstr("bad"));
  EXPECT_TRUE(query(dir / "w.db", "SELECT * FROM rides").empty());
  EXPECT_TRUE(sink.offsets()->empty());
  EXPECT_TRUE(sink.outbox(10)->empty());
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
