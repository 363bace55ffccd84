// PostgresSink against a real PostgreSQL server started for the test.
#include "services/load/postgres_sink.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/services/load/sink_rows.h"
#include "tests/support/postgres_server.h"
#include "tests/support/temp_dir.h"

namespace starling::load {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// kPipeline (sink_rows.h): PostgresSink loads whatever pipeline it is given.
Row row(const std::string& id, double speed, const std::string& saga = "s1") {
  // COPY escaping is exercised by the tab and the backslash.
  return ride_row(id, speed, saga, "bike\t1\\x");
}

class PostgresSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(pg_.initialised()) << "initdb failed; see " << dir_.path();
    ASSERT_TRUE(pg_.start()) << "postgres did not start; see " << dir_.path();
  }
  testing::TempDir dir_;
  testing::PostgresServer pg_{dir_.path()};
  PipelineConfig pipeline_ = parse_pipeline(kPipeline, "t.yaml");
};

TEST_F(PostgresSinkTest, UpsertByEventIdThroughCopyNeverDuplicatesARow) {
  PostgresSink sink(pg_.dsn(), pipeline_);
  SinkBatch first;
  first.rows.push_back(row("e1", 10));
  first.rows.push_back(row("e2", 11));
  first.rows.push_back(row("e1", 13));  // a duplicate inside one batch: the last wins
  ASSERT_TRUE(sink.write(first, {}).has_value());
  SinkBatch again;
  again.rows.push_back(row("e1", 12, "s2"));
  ASSERT_TRUE(sink.write(again, {}).has_value());
  EXPECT_THAT(pg_.exec("SELECT event_id || ' ' || saga_id || ' ' || speed_kmh || ' ' || status || ' ' || device_id "
                       "FROM rides ORDER BY event_id"),
              ElementsAre("e1 s2 12 RIDING bike\t1\\x", "e2 s1 11 RIDING bike\t1\\x"));
  EXPECT_THAT(pg_.exec("SELECT extract(epoch from event_time)::bigint FROM rides WHERE event_id = 'e1'"),
              ElementsAre("1700000000"));
}

TEST_F(PostgresSinkTest, AReplayThatYieldsTheSameRowLeavesItAndItsSagaIdAlone) {
  PostgresSink sink(pg_.dsn(), pipeline_);
  const auto results = load_then_replay(sink);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_TRUE(results[0].written && results[1].written);
  EXPECT_THAT(pg_.exec("SELECT event_id || ' ' || saga_id || ' ' || speed_kmh FROM rides ORDER BY event_id"),
              ElementsAre("e1 s1 10", "e2 replay-1 99"));
}

// Through COPY, the staging upsert and the row-by-row path: the trigger
// refuses the cross-device rewrite, the rest of the batch commits.
TEST_F(PostgresSinkTest, AnEventIdLoadedForOneDeviceIsNeverRewrittenForAnother) {
  PostgresSink sink(pg_.dsn(), pipeline_);
  const auto results = load_then_rewrite_from_another_device(sink);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_FALSE(results[0].written);
  EXPECT_THAT(results[0].error, HasSubstr("event_id_conflict"));
  EXPECT_TRUE(results[1].written);
  EXPECT_THAT(pg_.exec("SELECT event_id || ' ' || saga_id || ' ' || device_id || ' ' || speed_kmh FROM rides "
                       "ORDER BY event_id"),
              ElementsAre("e1 s1 bike-1 10", "e3 s9 bike-2 30"));
}

TEST_F(PostgresSinkTest, OffsetsOutboxAndCompensationCommitWithTheRows) {
  {
    PostgresSink sink(pg_.dsn(), pipeline_);
    SinkBatch b;
    b.rows.push_back(row("a1", 1, "sagaA"));
    b.rows.push_back(row("b1", 1, "sagaB"));
    b.next_offsets = {{{"t.clean", 2}, 42}};
    ASSERT_TRUE(
        sink.write(b,
                   [](const std::vector<RowResult>& r) {
                     EXPECT_EQ(r.size(), 2u);
                     return std::vector<kafka::OutMessage>{{"starling.saga", "sagaA", std::string("f\0act", 5), {}}};
                   })
            .has_value());
  }
  PostgresSink sink(pg_.dsn(), pipeline_);
  EXPECT_EQ(sink.offsets()->at({"t.clean", 2}), 42);
  auto out = sink.outbox(10);
  ASSERT_TRUE(out.has_value()) << out.error().message;
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ((*out)[0].message.value, std::string("f\0act", 5));
  ASSERT_TRUE(sink.outbox_done({(*out)[0].id}).has_value());
  EXPECT_TRUE(sink.outbox(10)->empty());

  SinkBatch undo;
  undo.compensate = {"sagaA"};
  ASSERT_TRUE(sink.write(undo, {}).has_value());
  EXPECT_THAT(pg_.exec("SELECT event_id FROM rides"), ElementsAre("b1"));
  EXPECT_EQ(*sink.compensated({"sagaA", "sagaB"}), (std::set<std::string>{"sagaA"}));
}

// Several loaders of one pipeline share one PostgreSQL database and so one
// outbox. An id comes from the sequence when the row is inserted, but the
// row shows when its transaction commits: a relay that read ids up to N and
// then removed everything up to N removed another loader's entry that
// committed in between, unsent (a saga then waited for ever on a LOADED fact
// that was never published). A relay removes exactly what it sent.
TEST_F(PostgresSinkTest, AnEntryAnotherLoaderCommitsBehindTheRelayIsNotRemovedUnsent) {
  PostgresSink sink(pg_.dsn(), pipeline_);
  // Given another loader's transaction that took an outbox id and has not committed,
  std::unique_ptr<PGconn, decltype(&PQfinish)> other(PQconnectdb(pg_.dsn().c_str()), PQfinish);
  ASSERT_EQ(PQstatus(other.get()), CONNECTION_OK);
  auto run = [&](const char* sql) {
    std::unique_ptr<PGresult, decltype(&PQclear)> r(PQexec(other.get(), sql), PQclear);
    return PQresultStatus(r.get()) == PGRES_COMMAND_OK;
  };
  ASSERT_TRUE(run("BEGIN"));
  ASSERT_TRUE(run("INSERT INTO _starling_outbox (topic, key, value) VALUES ('starling.saga', 'late', 'late')"));
  // and an entry of this loader's, with a higher id, committed,
  SinkBatch b;
  b.rows.push_back(row("a1", 1, "sagaA"));
  ASSERT_TRUE(sink.write(b,
                         [](const std::vector<RowResult>&) {
                           return std::vector<kafka::OutMessage>{{"starling.saga", "sagaA", "mine", {}}};
                         })
                  .has_value());
  // when the relay reads the outbox, the other transaction commits, and the
  // relay says it sent what it read,
  auto read = sink.outbox(10);
  ASSERT_TRUE(read.has_value()) << read.error().message;
  ASSERT_EQ(read->size(), 1u);
  EXPECT_EQ((*read)[0].message.value, "mine");
  ASSERT_TRUE(run("COMMIT"));
  ASSERT_TRUE(sink.outbox_done({(*read)[0].id}).has_value());
  // then the other loader's entry is still there for the next relay.
  auto left = sink.outbox(10);
  ASSERT_TRUE(left.has_value()) << left.error().message;
  ASSERT_EQ(left->size(), 1u) << "the late entry was removed without being sent";
  EXPECT_EQ((*left)[0].message.value, "late");
  EXPECT_LT((*left)[0].id, (*read)[0].id);
}

TEST_F(PostgresSinkTest, ARowTheDbRefusesIsDeadLetteredAndTheRestCommits) {
  { PostgresSink sink(pg_.dsn(), pipeline_); }
  pg_.exec("ALTER TABLE rides ADD CONSTRAINT plausible_speed CHECK (speed_kmh < 500)");
  PostgresSink sink(pg_.dsn(), pipeline_);
  SinkBatch b;
  b.rows.push_back(row("ok", 1));
  b.rows.push_back(row("bad", 900));
  b.rows.push_back(row("ok2", 3));
  b.next_offsets = {{{"t.clean", 0}, 3}};
  std::vector<RowResult> seen;
  auto st = sink.write(b, [&](const std::vector<RowResult>& r) {
    seen = r;
    return std::vector<kafka::OutMessage>{};
  });
  ASSERT_TRUE(st.has_value()) << st.error().message;
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_TRUE(seen[0].written);
  EXPECT_FALSE(seen[1].written);
  EXPECT_THAT(seen[1].error, HasSubstr("plausible_speed"));
  EXPECT_TRUE(seen[2].written);
  EXPECT_THAT(pg_.exec("SELECT event_id FROM rides ORDER BY event_id"), ElementsAre("ok", "ok2"));
  EXPECT_EQ(sink.offsets()->at({"t.clean", 0}), 3);
}

TEST_F(PostgresSinkTest, AnOutageFailsTheWholeBatchAndAReconnectCommitsIt) {
  PostgresSink sink(pg_.dsn(), pipeline_);
  SinkBatch b;
  b.rows.push_back(row("e1", 1));
  b.next_offsets = {{{"t.clean", 0}, 1}};
  EXPECT_TRUE(sink.ping().has_value());
  pg_.stop();
  auto down = sink.write(b, {});
  ASSERT_FALSE(down.has_value());
  EXPECT_EQ(down.error().code, Errc::kUnavailable);
  EXPECT_FALSE(sink.ping().has_value());
  ASSERT_TRUE(pg_.start());
  EXPECT_TRUE(sink.ping().has_value());
  auto up = sink.write(b, {});
  ASSERT_TRUE(up.has_value()) << up.error().message;
  EXPECT_THAT(pg_.exec("SELECT event_id FROM rides"), ElementsAre("e1"));
  EXPECT_EQ(sink.offsets()->at({"t.clean", 0}), 1);
}

TEST_F(PostgresSinkTest, AColumnWhoseTypeChangedIsRefusedAndANewOneIsAdded) {
  { PostgresSink sink(pg_.dsn(), pipeline_); }
  const auto wider = parse_pipeline(std::string(kPipeline) + "    battery_pct: battery_pct\n", "t.yaml");
  { PostgresSink sink(pg_.dsn(), wider); }
  EXPECT_THAT(pg_.exec("SELECT data_type FROM information_schema.columns WHERE table_name = 'rides' AND column_name = "
                       "'battery_pct'"),
              ElementsAre("double precision"));
  std::string changed = kPipeline;
  changed.replace(changed.find("speed_kmh: speed_kmh"), 20, "speed_kmh: ride_id");
  const auto p = parse_pipeline(changed, "t.yaml");
  try {
    PostgresSink sink(pg_.dsn(), p);
    FAIL() << "expected a refusal";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("column rides.speed_kmh is double precision"));
  }
}

}  // namespace
}  // namespace starling::load
