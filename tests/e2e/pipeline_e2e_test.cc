// Whole-pipeline tests: starling-broker and the four services as real
// processes, driven over HTTP like a device fleet would.

#include <csignal>
#include <future>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "broker-adapters/kafka/kafka.h"
#include "services/cli/report.h"
#include "services/cli/simulate.h"
#include "services/cli/stack.h"
#include "starling/v1/envelope.pb.h"
#include "tests/support/temp_dir.h"

namespace starling::cli {
namespace {

using namespace std::chrono_literals;

std::set<std::string> loaded_ids(const std::string& db, const std::string& table) {
  std::set<std::string> ids;
  sqlite3* h = nullptr;
  sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(h, ("SELECT event_id FROM \"" + table + "\"").c_str(), -1, &s, nullptr);
  while (sqlite3_step(s) == SQLITE_ROW) ids.insert(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
  sqlite3_finalize(s);
  sqlite3_close(h);
  return ids;
}

// Reads `count` records from a topic from the beginning, or what arrived
// before the timeout.
std::vector<v1::RejectedRecord> read_rejected(const std::string& bootstrap, const std::string& topic, std::size_t count) {
  auto consumer = kafka::KafkaConsumer::create({bootstrap, "e2e-reader", {}}, "e2e-reader-" + std::to_string(::getpid()),
                                               {topic}, {});
  EXPECT_TRUE(consumer.has_value());
  std::vector<v1::RejectedRecord> out;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (out.size() < count && std::chrono::steady_clock::now() < deadline) {
    auto batch = (*consumer)->poll_batch(500, 200ms);
    if (!batch) break;
    for (const auto& m : *batch) {
      v1::RejectedRecord r;
      EXPECT_TRUE(r.ParseFromString(m.value));
      out.push_back(std::move(r));
    }
  }
  (*consumer)->close();
  return out;
}

class PipelineE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    StackOptions o;
    o.bin_dir = STARLING_BIN_DIR;
    o.data_dir = dir_.path();
    o.pipeline_files = {testing::source_path("pipelines/ecowheels.yaml")};
    stack_ = std::make_unique<Stack>(o);
    auto st = stack_->start();
    ASSERT_TRUE(st.has_value()) << st.error().message;
  }
  void TearDown() override { stack_->stop(); }

  SimOptions sim(int events) {
    SimOptions s;
    s.url = stack_->ingest_url();
    s.events = events;
    s.rate = 0;
    s.batch = 20;
    s.fault_rate = 0.05;
    return s;
  }

  // Every saga COMPLETED; the warehouse holds exactly the valid events; the
  // saga API's counts agree with both.
  void expect_exact_outcome(const SimResult& res) {
    auto totals = wait_until_settled(stack_->saga_url(), "ecowheels", res.saga_ids.size(), 180s);
    ASSERT_TRUE(totals.has_value()) << totals.error().message;
    EXPECT_EQ(totals->sagas, res.saga_ids.size());
    EXPECT_EQ(totals->accepted, res.accepted);
    EXPECT_EQ(totals->loaded, res.valid_ids.size());
    EXPECT_EQ(totals->rejected, res.faulty_ids.size());
    EXPECT_EQ(totals->in_flight, 0u);

    const auto ids = loaded_ids(stack_->db_path("ecowheels"), "ride_telemetry");
    EXPECT_EQ(ids, std::set<std::string>(res.valid_ids.begin(), res.valid_ids.end()));
    auto rows = count_rows(stack_->db_path("ecowheels"), "ride_telemetry");
    ASSERT_TRUE(rows.has_value());
    EXPECT_EQ(rows->rows, static_cast<int64_t>(res.valid_ids.size())) << "a row is duplicated";

    for (const auto& id : res.saga_ids) {
      auto s = fetch_saga(stack_->saga_url(), id);
      ASSERT_TRUE(s.has_value()) << s.error().message;
      EXPECT_EQ((*s)["state"], "COMPLETED");
      const auto& c = (*s)["counts"];
      EXPECT_EQ((*s)["total"].get<uint64_t>(), c["loaded"].get<uint64_t>() + c["rejected"].get<uint64_t>()) << id;
    }
  }

  testing::TempDir dir_;
  std::unique_ptr<Stack> stack_;
};

TEST_F(PipelineE2E, TwoThousandEventsAreLoadedOrRejectedWithReasonsExactlyOnce) {
  const auto opts = sim(2000);
  auto res = simulate(opts);
  ASSERT_TRUE(res.has_value()) << res.error().message;
  ASSERT_EQ(res->accepted, 2000u);
  ASSERT_EQ(res->saga_ids.size(), 100u);
  // About 5% faulty, as asked of the simulator.
  EXPECT_GT(res->faulty_ids.size(), 50u);
  EXPECT_LT(res->faulty_ids.size(), 160u);
  expect_exact_outcome(*res);

  // Every faulty event is on ecowheels.rejected, once, with the reason the
  // simulator built into it.
  std::map<std::string, std::string> fault_of;
  for (const auto& e : generate_events(opts)) fault_of[e.event_id] = e.fault;
  const auto rejected = read_rejected(stack_->bootstrap(), "ecowheels.rejected", res->faulty_ids.size());
  std::set<std::string> rejected_ids;
  for (const auto& r : rejected) {
    rejected_ids.insert(r.envelope().event_id());
    ASSERT_GT(r.reasons_size(), 0);
    bool named = false;
    for (const auto& reason : r.reasons()) named |= (reason.rule() + ":" + reason.field()) == fault_of[r.envelope().event_id()];
    EXPECT_TRUE(named) << r.envelope().event_id() << " should be rejected for " << fault_of[r.envelope().event_id()];
    EXPECT_EQ(r.stage(), "clean");
  }
  EXPECT_EQ(rejected_ids, std::set<std::string>(res->faulty_ids.begin(), res->faulty_ids.end()));
}

TEST_F(PipelineE2E, LoaderKilledWithSigkillMidStreamLosesAndDuplicatesNoRow) {
  // Given a fleet posting 4000 events in the background,
  auto opts = sim(4000);
  opts.rate = 2000;
  auto running = std::async(std::launch::async, [&] { return simulate(opts); });

  // when starling-load is killed with SIGKILL twice while rows are arriving
  // (the supervisor restarts it each time),
  const auto db = stack_->db_path("ecowheels");
  for (int64_t threshold : {400, 1800}) {
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto rows = count_rows(db, "ride_telemetry");
      if (rows && rows->rows >= threshold) break;
      std::this_thread::sleep_for(20ms);
    }
    ASSERT_TRUE(stack_->signal("load.ecowheels", SIGKILL).has_value());
  }
  auto res = running.get();
  ASSERT_TRUE(res.has_value()) << res.error().message;

  // then, once the sagas settle, every valid event is in the table exactly
  // once and every saga's counts are exact.
  expect_exact_outcome(*res);
  EXPECT_GE(stack_->restarts("load.ecowheels"), 2);
}

}  // namespace
}  // namespace starling::cli
