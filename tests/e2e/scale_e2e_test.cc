// Scale-out: every stage run twice (`starling up --instances`), the
// instances of a stage sharing its consumer group, and instances killed with
// SIGKILL mid-stream so that their partitions move. The books stay exact: each
// valid event in the warehouse once, every saga COMPLETED with exact counts,
// added up over the coordinators (each answers for the partitions it owns).
// STARLING_SOAK=1 runs 100k events with a kill every few seconds.

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <future>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "services/common/http.h"
#include "services/common/process.h"
#include "tests/e2e/pipeline_e2e.h"
#include "tests/support/postgres_server.h"
#include "tests/support/prometheus_sample.h"

namespace starling::e2e {
namespace {

using nlohmann::json;
using supervisor::instance_name;

// The stack with two instances of every stage, on SQLite or PostgreSQL.
class ScaleE2E : public PipelineE2E, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {}
  void start(std::map<std::string, int> instances) {
    StackOptions o;
    o.bin_dir = STARLING_BIN_DIR;
    o.data_dir = dir_.path() + "/stack";
    o.pipeline_files = {testing::source_path("pipelines/ecowheels.yaml")};
    o.instances = std::move(instances);
    if (GetParam() == "postgres") {
      pg_ = std::make_unique<testing::PostgresServer>(dir_.path());
      ASSERT_TRUE(pg_->initialised() && pg_->start()) << "postgres did not start; see " << dir_.path();
      o.load_args = {"--sink", "postgres", "--postgres", pg_->dsn()};
    }
    stack_ = std::make_unique<Stack>(o);
    auto st = stack_->start();
    ASSERT_TRUE(st.has_value()) << st.error().message;
  }
  std::vector<std::string> ids() {
    return pg_ ? pg_->exec("SELECT event_id FROM ride_telemetry")
               : loaded_ids(stack_->db_path("ecowheels"), "ride_telemetry");
  }
  // A counter of one process's /metrics (0 while it does not answer).
  double metric(const std::string& process, const std::string& series) {
    auto r = http_call("GET", stack_->url(process) + "/metrics", {}, {}, 2000);
    if (!r || r->status != 200) return 0;
    return testing::prometheus_sample(r->body, series).value_or(0);
  }
  // Until every process in `names` has counted some of `series`: each owns
  // partitions and works on them.
  ::testing::AssertionResult each_works(const std::vector<std::string>& names, const std::string& series) {
    const auto deadline = std::chrono::steady_clock::now() + 90s;
    for (const auto& n : names) {
      while (metric(n, series) <= 0) {
        if (std::chrono::steady_clock::now() > deadline)
          return ::testing::AssertionFailure() << n << " never counted " << series << ": it got no partition";
        std::this_thread::sleep_for(100ms);
      }
    }
    return ::testing::AssertionSuccess();
  }
  std::unique_ptr<testing::PostgresServer> pg_;
};

TEST_P(ScaleE2E, EveryStageTwiceSplitsThePartitionsAndSigkilledInstancesLoseAndDuplicateNothing) {
  const bool soak = std::getenv("STARLING_SOAK") != nullptr;
  // Given two instances of ingest, saga, clean and load, and a fleet posting
  // to both ingests in the background,
  ASSERT_NO_FATAL_FAILURE(start({{"ingest", 2}, {"saga", 2}, {"clean", 2}, {"load", 2}}));
  ASSERT_EQ(stack_->ingest_urls().size(), 2u);
  ASSERT_EQ(stack_->saga_urls().size(), 2u);
  auto opts = sim(soak ? 100'000 : 6'000);
  opts.url = fmt::format("{},{}", stack_->ingest_urls()[0], stack_->ingest_urls()[1]);
  opts.connections = 4;
  opts.rate = soak ? 4'000 : 600;  // 10 s: the kills below all fall inside the stream
  auto running = std::async(std::launch::async, [&] { return simulate(opts); });

  // where both instances of each stage work (each owns partitions),
  const std::vector<std::string> loaders = {"load.ecowheels", instance_name("load.ecowheels", 2)};
  const std::vector<std::string> cleaners = {"clean.ecowheels", instance_name("clean.ecowheels", 2)};
  ASSERT_TRUE(each_works(loaders, R"(starling_load_rows_total{pipeline="ecowheels"})"));
  ASSERT_TRUE(each_works(cleaners, R"(starling_clean_records_total{outcome="clean",pipeline="ecowheels"})"));
  ASSERT_TRUE(each_works({"ingest", instance_name("ingest", 2)},
                         R"(starling_ingest_events_accepted_total{pipeline="ecowheels"})"));

  // when instances are killed with SIGKILL mid-stream, in turn (the
  // supervisor restarts each; its partitions move to the other and back),
  const std::vector<std::string> victims = {loaders[1], cleaners[1], instance_name("saga", 2),
                                            loaders[0], cleaners[0], "saga"};
  const int kills = soak ? 30 : static_cast<int>(victims.size());
  const auto every = soak ? 3s : 1s;
  for (int k = 0; k < kills && running.wait_for(every) != std::future_status::ready; ++k) {
    const auto& victim = victims[static_cast<std::size_t>(k) % victims.size()];
    ASSERT_TRUE(stack_->signal(victim, SIGKILL).has_value()) << victim;
  }
  auto res = running.get();
  ASSERT_TRUE(res.has_value()) << res.error().message;

  // then every saga completes, counted once over the two coordinators, and
  // the warehouse holds each valid event exactly once.
  auto totals = wait_until_settled(stack_->saga_urls(), "ecowheels", res->saga_ids.size(), 240s);
  ASSERT_TRUE(totals.has_value()) << totals.error().message;
  EXPECT_EQ(totals->sagas, res->saga_ids.size()) << "a saga is counted by both coordinators, or by neither";
  EXPECT_EQ(totals->accepted, res->accepted);
  EXPECT_EQ(totals->loaded, res->valid_ids.size());
  EXPECT_EQ(totals->rejected, res->faulty_ids.size());
  EXPECT_EQ(totals->in_flight, 0u);
  const auto all = ids();
  const std::set<std::string> unique(all.begin(), all.end());
  EXPECT_EQ(all.size(), unique.size()) << "a row is duplicated";
  EXPECT_EQ(unique, std::set<std::string>(res->valid_ids.begin(), res->valid_ids.end()));
  for (const auto& id : res->saga_ids) {
    auto s = fetch_saga(stack_->saga_urls(), id);
    ASSERT_TRUE(s.has_value()) << s.error().message;
    EXPECT_EQ((*s)["state"], "COMPLETED") << id;
    EXPECT_TRUE((*s)["owned"].get<bool>()) << id << ": no coordinator owns its partition";
    const auto& c = (*s)["counts"];
    EXPECT_EQ((*s)["total"].get<uint64_t>(), c["loaded"].get<uint64_t>() + c["rejected"].get<uint64_t>()) << id;
  }
  for (const auto& v : victims) EXPECT_GE(stack_->restarts(v), 1) << v << " was not killed";

  // And `starling sagas report` over both coordinators adds them up: every
  // saga once, CONSISTENT (exit 0).
  const auto out = dir_.path() + "/report.txt";
  auto report =
      ChildProcess::spawn({std::string(STARLING_BIN_DIR) + "/starling", "sagas", "report", "--pipeline", "ecowheels",
                           "--url", fmt::format("{},{}", stack_->saga_urls()[0], stack_->saga_urls()[1])},
                          out);
  ASSERT_TRUE(report.has_value());
  const auto st = report->wait(60s);
  std::ifstream in(out);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_TRUE(st.has_value() && WIFEXITED(*st)) << text;
  EXPECT_EQ(WEXITSTATUS(*st), 0) << text;
  EXPECT_NE(text.find("\nCONSISTENT:"), std::string::npos) << text;
  // The total row: every saga once, not once per coordinator.
  EXPECT_TRUE(std::regex_search(text, std::regex(fmt::format("\ntotal +{} ", res->saga_ids.size())))) << text;
}

TEST_P(ScaleE2E, ARetryToTheOtherIngestWithTheSameIdempotencyKeyIsOneSagaAndNoDuplicateRow) {
  // Given two ingest instances (their idempotency caches are per process),
  ASSERT_NO_FATAL_FAILURE(start({{"ingest", 2}}));
  const auto now = fmt::format("{:%FT%TZ}", std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()));
  // and a body without event ids: ingest derives them from the saga id,
  json body = json::array();
  for (int i = 0; i < 5; ++i) {
    body.push_back({{"device_id", "bike-0001"}, {"battery_pct", 40 + i}, {"status", "RIDING"}, {"event_time", now}});
  }
  // when a device sends it to one instance and its retry, with the same
  // Idempotency-Key, to the other (a load balancer moved it),
  std::vector<std::string> sagas;
  for (const auto& url : stack_->ingest_urls()) {
    auto resp = http_call("POST", url + "/v1/pipelines/ecowheels/events", body.dump(),
                          {{"Idempotency-Key", "ride-42-upload-1"}}, 10'000);
    ASSERT_TRUE(resp.has_value()) << resp.error().message;
    ASSERT_EQ(resp->status, 202) << resp->body;
    const auto receipt = json::parse(resp->body);
    EXPECT_EQ(receipt["accepted"], 5);
    sagas.push_back(receipt["saga_id"].get<std::string>());
  }

  // then both receipts name one saga, which completes with 5 events loaded
  // once, and the warehouse holds 5 rows.
  ASSERT_EQ(sagas[0], sagas[1]) << "the two instances derived different sagas";
  auto totals = wait_until_settled(stack_->saga_urls(), "ecowheels", 1, 120s);
  ASSERT_TRUE(totals.has_value()) << totals.error().message;
  EXPECT_EQ(totals->sagas, 1u);
  EXPECT_EQ(totals->accepted, 5u);
  EXPECT_EQ(totals->loaded, 5u);
  const auto all = ids();
  EXPECT_EQ(all.size(), 5u);
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()).size(), 5u);
}

INSTANTIATE_TEST_SUITE_P(Sinks, ScaleE2E, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace starling::e2e
