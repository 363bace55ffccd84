// The saga HTTP API over a real RocksSagaStore: paging, the consistency
// report's arithmetic (with sagas retention removed), and 400s that name the
// parameter.

#include "services/saga/saga_api.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "services/common/pipeline.h"
#include "tests/support/temp_dir.h"

namespace starling::saga {
namespace {

using nlohmann::json;

// 2026-11-23T10:00:00Z
constexpr int64_t kT0 = 1'795'428'000'000;

class SagaApiTest : public ::testing::Test {
 protected:
  SagaApiTest() : store_(dir_ / "db") {
    CoordinatorOptions o;
    o.pipelines["p"] = {.stall_after_ms = 60'000, .overdue_after_ms = 120'000, .retention_ms = 10 * kHourMs};
    coordinator_ = std::make_unique<Coordinator>(store_, o, [this] { return now_; });
  }

  // A saga of `total` events created at `created_ms`: `loaded` loaded,
  // `rejected` rejected, the rest in flight.
  void saga(const std::string& id, int64_t created_ms, uint32_t total, uint32_t loaded, uint32_t rejected,
            const std::string& pipeline = "p", int32_t partition = 0) {
    std::vector<kafka::InMessage> batch;
    auto add = [&](v1::Step step, uint32_t first, uint32_t count) {
      v1::ProgressFact f;
      f.set_saga_id(id);
      f.set_pipeline(pipeline);
      f.set_step(step);
      f.set_time_ms(created_ms);
      if (step == v1::STEP_INGESTED) {
        f.set_total(total);
      } else {
        if (count == 0) return;
        auto* r = f.add_seqs();
        r->set_first(first);
        r->set_last(first + count - 1);
      }
      kafka::InMessage m;
      m.topic = kSagaTopic;
      m.partition = partition;
      m.offset = offset_++;
      m.value = f.SerializeAsString();
      batch.push_back(std::move(m));
    };
    add(v1::STEP_INGESTED, 0, 0);
    add(v1::STEP_LOADED, 0, loaded);
    add(v1::STEP_REJECTED, loaded, rejected);
    ASSERT_TRUE(coordinator_->fold_batch(batch).has_value());
  }

  std::pair<int, json> get(const std::string& path, std::map<std::string, std::string> query = {},
                           const Ownership* owned = nullptr) {
    HttpRequest req;
    req.method = "GET";
    req.path = path;
    req.query = std::move(query);
    const auto resp = handle_saga_api(
        store_, req, [this] { return now_; }, owned);
    return {resp.status, json::parse(resp.body)};
  }

  testing::TempDir dir_;
  RocksSagaStore store_;
  int64_t now_ = kT0;
  int64_t offset_ = 0;
  std::unique_ptr<Coordinator> coordinator_;
};

TEST_F(SagaApiTest, PagesVisitEveryMatchingSagaOnceInAStableOrder) {
  for (int i = 0; i < 25; ++i) saga(fmt::format("s{:02}", i), kT0 + i, 2, i % 2 == 0 ? 2 : 1, 0);
  saga("other", kT0, 1, 1, 0, "q");
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  for (;; ++pages) {
    std::map<std::string, std::string> q = {{"pipeline", "p"}, {"limit", "10"}};
    if (!token.empty()) q["page_token"] = token;
    auto [status, body] = get("/v1/sagas", q);
    ASSERT_EQ(status, 200) << body.dump();
    EXPECT_EQ(body["totals"]["sagas"], pages == 0 ? 25 : 27) << "totals cover every match, whatever the page";
    for (const auto& s : body["sagas"]) seen.push_back(s["saga_id"]);
    if (!body.contains("next_page_token")) break;
    token = body["next_page_token"];
    // Sagas created between pages sort in place: one before the token is
    // not seen, one after it is, and no other saga moves between pages.
    if (pages == 0) {
      saga("s05a", kT0, 1, 0, 0);
      saga("s09a", kT0, 1, 0, 0);
    }
  }
  EXPECT_EQ(pages, 2);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), seen.size()) << "no saga twice";
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(seen.size(), 26u);
  EXPECT_EQ(std::count(seen.begin(), seen.end(), "s09a"), 1);
  EXPECT_EQ(seen.front(), "s00");
  EXPECT_EQ(seen.back(), "s24");

  auto [status, body] = get("/v1/sagas", {{"state", "IN_FLIGHT"}, {"since", std::to_string(kT0 + 20)}});
  ASSERT_EQ(status, 200);
  std::vector<std::string> in_flight;
  for (const auto& s : body["sagas"]) in_flight.push_back(s["saga_id"]);
  EXPECT_EQ(in_flight, (std::vector<std::string>{"s21", "s23"}));
}

TEST_F(SagaApiTest, BadParametersAnswer400NamingTheParameter) {
  const std::vector<std::pair<std::string, std::map<std::string, std::string>>> cases = {
      {"/v1/sagas", {{"state", "DONE"}}},
      {"/v1/sagas", {{"limit", "-1"}}},
      {"/v1/sagas", {{"limit", "1000000"}}},
      {"/v1/sagas", {{"since", "yesterday"}}},
      {"/v1/sagas", {{"page_token", "zz"}}},
      {"/v1/pipelines/p/consistency", {{"from", "2026-13-01T00:00:00Z"}}},
      {"/v1/pipelines/p/consistency", {{"to", "12:00"}}},
      {"/v1/pipelines/p/consistency", {{"from", std::to_string(kT0)}, {"to", std::to_string(kT0 - 1)}}},
      {"/v1/pipelines/p/consistency", {{"window", "90m"}}},
  };
  for (const auto& [path, query] : cases) {
    auto [status, body] = get(path, query);
    EXPECT_EQ(status, 400) << path << " " << query.begin()->first;
    EXPECT_EQ(body["error"]["field"], query.begin()->first) << body.dump();
  }
  EXPECT_EQ(get("/v1/sagas/nope").first, 404);
}

TEST_F(SagaApiTest, ConsistencyReportAddsUpPerHourIncludingSagasRemovedByRetention) {
  // Hour 0: two completed sagas and one in flight. Hour 1: one completed.
  saga("a", kT0 + 1'000, 10, 8, 2);
  saga("b", kT0 + 2'000, 5, 5, 0);
  saga("c", kT0 + 3'000, 4, 1, 1);
  saga("d", kT0 + kHourMs + 5, 3, 2, 1);
  // Retention (10 h) removes a, b and d; c is not finished and stays.
  now_ = kT0 + 12 * kHourMs;
  ASSERT_TRUE(coordinator_->tick().has_value());
  EXPECT_FALSE(store_.get("a")->has_value());
  ASSERT_TRUE(store_.get("c")->has_value());
  EXPECT_EQ((*store_.get("c"))->state(), v1::SAGA_STATE_OVERDUE);

  auto [status, body] =
      get("/v1/pipelines/p/consistency", {{"from", "2026-11-23T10:00:00Z"}, {"to", "2026-11-23T12:00:00Z"}});
  ASSERT_EQ(status, 200) << body.dump();
  ASSERT_EQ(body["windows"].size(), 2u) << body.dump(2);
  const auto& h0 = body["windows"][0];
  EXPECT_EQ(h0["start"], "2026-11-23T10:00:00.000Z");
  EXPECT_EQ(h0["sagas"], 3);
  EXPECT_EQ(h0["removed_by_retention"], 2);
  EXPECT_EQ(h0["accepted"], 19);
  EXPECT_EQ(h0["loaded"], 14);
  EXPECT_EQ(h0["rejected"], 3);
  EXPECT_EQ(h0["in_flight"], 2);
  EXPECT_EQ(h0["balanced"], true);
  EXPECT_EQ(h0["by_state"]["COMPLETED"], 2);
  EXPECT_EQ(h0["by_state"]["OVERDUE"], 1);
  ASSERT_EQ(h0["sagas_to_check"].size(), 1u);
  EXPECT_EQ(h0["sagas_to_check"][0]["saga_id"], "c");
  EXPECT_NE(h0["sagas_to_check"][0]["explanation"].get<std::string>().find("OVERDUE at"), std::string::npos);
  const auto& h1 = body["windows"][1];
  EXPECT_EQ(h1["sagas"], 1);
  EXPECT_EQ(h1["accepted"], 3);
  EXPECT_EQ(h1["sagas_to_check"].size(), 0u);
  EXPECT_EQ(body["totals"]["accepted"], 22);
  EXPECT_EQ(body["totals"]["balanced"], true);
  EXPECT_EQ(body["consistent"], false) << "c OVERDUE";

  // A window of 2 hours holds both; another pipeline holds nothing.
  auto [s2, two] = get("/v1/pipelines/p/consistency",
                       {{"from", std::to_string(kT0)}, {"to", std::to_string(kT0 + 2 * kHourMs)}, {"window", "2h"}});
  ASSERT_EQ(s2, 200);
  ASSERT_EQ(two["windows"].size(), 1u);
  EXPECT_EQ(two["windows"][0]["sagas"], 4);
  auto [s3, none] = get("/v1/pipelines/q/consistency", {{"from", std::to_string(kT0)}});
  ASSERT_EQ(s3, 200);
  EXPECT_EQ(none["windows"].size(), 0u);
  EXPECT_EQ(none["consistent"], true);
}

TEST_F(SagaApiTest, OneSagaShowsCountsTimelineAndReasons) {
  saga("a", kT0, 4, 3, 1);
  auto [status, body] = get("/v1/sagas/a");
  ASSERT_EQ(status, 200);
  EXPECT_EQ(body["state"], "COMPLETED");
  EXPECT_EQ(body["counts"]["loaded"], 3);
  EXPECT_EQ(body["counts"]["rejected"], 1);
  ASSERT_GE(body["timeline"].size(), 2u);
  EXPECT_EQ(body["timeline"][0]["to"], "ACCEPTED");
  EXPECT_EQ(body["timeline"].back()["to"], "COMPLETED");
  EXPECT_EQ(body["created"], "2026-11-23T10:00:00.000Z");
  EXPECT_TRUE(body.contains("reasons"));
}

TEST_F(SagaApiTest, EachInstanceCountsTheSagasOfThePartitionsItOwnsSoThatTwoInstancesAddUpOnce) {
  // Given one store holding sagas of partitions 0, 1 and 2 (partition 2's a
  // stale copy: another instance owns it now),
  saga("a0", kT0, 4, 4, 0, "p", 0);
  saga("b0", kT0, 2, 1, 1, "p", 0);
  saga("c1", kT0, 3, 3, 0, "p", 1);
  saga("d2", kT0, 5, 2, 0, "p", 2);
  // when this instance owns partitions 0 and 1, and another owns 2,
  Ownership mine;
  mine.set({0, 1});
  Ownership theirs;
  theirs.set({2});

  // then its list and totals count partitions 0 and 1 only,
  auto [status, body] = get("/v1/sagas", {{"pipeline", "p"}}, &mine);
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["totals"]["sagas"], 3);
  EXPECT_EQ(body["totals"]["accepted"], 9);
  EXPECT_EQ(body["sagas"].size(), 3u);
  for (const auto& s : body["sagas"]) EXPECT_NE(s["saga_id"], "d2");
  auto [st2, newest] = get("/v1/sagas", {{"pipeline", "p"}, {"order", "newest"}}, &mine);
  ASSERT_EQ(st2, 200) << newest.dump();
  EXPECT_EQ(newest["sagas"].size(), 3u);
  // its consistency report too, and the other instance's report adds the
  // rest: together every saga once,
  const std::map<std::string, std::string> hours = {{"from", "2026-11-23T10:00:00Z"}, {"to", "2026-11-23T12:00:00Z"}};
  auto [st3, ours] = get("/v1/pipelines/p/consistency", hours, &mine);
  auto [st4, other] = get("/v1/pipelines/p/consistency", hours, &theirs);
  ASSERT_EQ(st3, 200) << ours.dump();
  ASSERT_EQ(st4, 200) << other.dump();
  EXPECT_EQ(ours["totals"]["sagas"], 3);
  EXPECT_EQ(other["totals"]["sagas"], 1);
  EXPECT_EQ(ours["totals"]["accepted"].get<int>() + other["totals"]["accepted"].get<int>(), 14);
  EXPECT_EQ(other["totals"]["in_flight"], 3);
  // a saga it does not own is still answered by id, marked not owned,
  auto [st5, d2] = get("/v1/sagas/d2", {}, &mine);
  ASSERT_EQ(st5, 200);
  EXPECT_EQ(d2["owned"], false);
  EXPECT_EQ(d2["partition"], 2);
  EXPECT_EQ(get("/v1/sagas/a0", {}, &mine).second["owned"], true);
  // and an instance that owns nothing yet (before its first assignment)
  // counts nothing, while a read without a group counts everything.
  Ownership none;
  none.set({});
  EXPECT_EQ(get("/v1/sagas", {{"pipeline", "p"}}, &none).second["totals"]["sagas"], 0);
  EXPECT_EQ(get("/v1/sagas", {{"pipeline", "p"}}).second["totals"]["sagas"], 4);
}

}  // namespace
}  // namespace starling::saga
