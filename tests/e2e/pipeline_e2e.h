#pragma once
// The whole-pipeline fixture: starling-broker and the four services as real
// processes (Stack), a simulated fleet, and the exact-outcome checks.
// pipeline_e2e_test.cc and replay_e2e_test.cc share it.

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "broker-adapters/kafka/kafka.h"
#include "services/simulator/report.h"
#include "services/simulator/simulate.h"
#include "services/supervisor/stack.h"
#include "starling/v1/envelope.pb.h"
#include "tests/support/temp_dir.h"

namespace starling::e2e {

using namespace std::chrono_literals;  // NOLINT: test-only header
using simulator::count_rows;
using simulator::fetch_saga;
using simulator::generate_events;
using simulator::SimOptions;
using simulator::SimResult;
using simulator::simulate;
using simulator::wait_until_settled;
using supervisor::Stack;
using supervisor::StackOptions;

inline std::vector<std::string> loaded_ids(const std::string& db, const std::string& table) {
  std::vector<std::string> ids;
  sqlite3* h = nullptr;
  sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(h, ("SELECT event_id FROM \"" + table + "\"").c_str(), -1, &s, nullptr);
  while (sqlite3_step(s) == SQLITE_ROW) ids.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
  sqlite3_finalize(s);
  sqlite3_close(h);
  return ids;
}

// Reads `count` records from a topic from the beginning, or what arrived
// before the timeout.
inline std::vector<v1::RejectedRecord> read_rejected(const std::string& bootstrap, const std::string& topic,
                                                     std::size_t count) {
  auto consumer = kafka::KafkaConsumer::create({bootstrap, "e2e-reader", {}},
                                               "e2e-reader-" + std::to_string(::getpid()), {topic}, {});
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
  void SetUp() override { start_stack({}); }
  void TearDown() override {
    if (stack_) stack_->stop();
  }
  void start_stack(std::vector<std::string> load_args, bool by_env = false) {
    StackOptions o;
    o.config_by_env = by_env;
    o.bin_dir = STARLING_BIN_DIR;
    o.data_dir = dir_.path() + "/stack";
    o.pipeline_files = {pipeline_file_.empty() ? testing::source_path("pipelines/ecowheels.yaml") : pipeline_file_};
    o.load_args = std::move(load_args);
    stack_ = std::make_unique<Stack>(o);
    auto st = stack_->start();
    ASSERT_TRUE(st.has_value()) << st.error().message;
  }

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
  // saga API's counts agree with both. `warehouse_ids` lists every row's event
  // id (duplicates included).
  void expect_exact_outcome(const SimResult& res, const std::function<std::vector<std::string>()>& warehouse_ids = {}) {
    auto totals = wait_until_settled(stack_->saga_url(), "ecowheels", res.saga_ids.size(), 180s);
    ASSERT_TRUE(totals.has_value()) << totals.error().message;
    EXPECT_EQ(totals->sagas, res.saga_ids.size());
    EXPECT_EQ(totals->accepted, res.accepted);
    EXPECT_EQ(totals->loaded, res.valid_ids.size());
    EXPECT_EQ(totals->rejected, res.faulty_ids.size());
    EXPECT_EQ(totals->in_flight, 0u);

    const auto all = warehouse_ids ? warehouse_ids() : loaded_ids(stack_->db_path("ecowheels"), "ride_telemetry");
    const std::set<std::string> ids(all.begin(), all.end());
    EXPECT_EQ(all.size(), ids.size()) << "a row is duplicated";
    EXPECT_EQ(ids, std::set<std::string>(res.valid_ids.begin(), res.valid_ids.end()));

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
  std::string pipeline_file_;  // empty: pipelines/ecowheels.yaml
};

}  // namespace starling::e2e
