// `starling replay` on the whole pipeline: a rule change replayed by time,
// a replay beside live ingest at full rate, a replay by saga id, and the
// controls (dry run, pause, resume, cancel, status from another process).

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "services/common/http.h"
#include "services/common/time.h"
#include "services/replay/replay.h"
#include "services/saga/saga_state.h"
#include "tests/e2e/pipeline_e2e.h"

namespace starling::e2e {
namespace {

using nlohmann::json;
using replay::read_replay_status;
using replay::ReplayOptions;
using replay::run_replay;

struct StoredRow {
  std::string saga_id;
  std::string content;  // every column but saga_id and seq, as text
};

// event id → row; `rows` counts every row (a duplicate would show there).
std::map<std::string, StoredRow> table(const std::string& db, std::size_t* rows = nullptr) {
  std::map<std::string, StoredRow> out;
  sqlite3* h = nullptr;
  sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(h, "SELECT * FROM ride_telemetry", -1, &s, nullptr);
  std::size_t n = 0;
  while (sqlite3_step(s) == SQLITE_ROW) {
    ++n;
    std::string id;
    StoredRow row;
    for (int c = 0; c < sqlite3_column_count(s); ++c) {
      const std::string name = sqlite3_column_name(s, c);
      const auto* v = sqlite3_column_text(s, c);
      const std::string value = v ? reinterpret_cast<const char*>(v) : "NULL";
      if (name == "event_id")
        id = value;
      else if (name == "saga_id")
        row.saga_id = value;
      else if (name != "seq")
        row.content += name;
      row.content += "=";
      row.content += value;
      row.content += ";";
    }
    out[id] = std::move(row);
  }
  sqlite3_finalize(s);
  sqlite3_close(h);
  if (rows) *rows = n;
  return out;
}

class ReplayE2E : public PipelineE2E {
 protected:
  void SetUp() override {
    // A copy of the ecowheels pipeline, so that a test can change a rule.
    pipeline_file_ = dir_.path() + "/ecowheels.yaml";
    write_pipeline(60);
    start_stack({});
  }

  void write_pipeline(int max_speed) {
    std::ifstream in(testing::source_path("pipelines/ecowheels.yaml"));
    std::stringstream text;
    text << in.rdbuf();
    auto yaml = text.str();
    const std::string rule = "range: {min: 0, max: 60}";
    const auto at = yaml.find(rule);
    ASSERT_NE(at, std::string::npos) << "the speed rule moved in pipelines/ecowheels.yaml";
    yaml.replace(at, rule.size(), "range: {min: 0, max: " + std::to_string(max_speed) + "}");
    const auto tmp = pipeline_file_ + ".tmp";
    std::ofstream(tmp) << yaml;
    ASSERT_EQ(std::rename(tmp.c_str(), pipeline_file_.c_str()), 0);
  }

  // The operator fixes the rule: starling-clean restarts with the new file.
  void restart_clean_with_speed_limit(int max_speed) {
    write_pipeline(max_speed);
    const int before = stack_->restarts("clean.ecowheels");
    ASSERT_TRUE(stack_->signal("clean.ecowheels", SIGTERM).has_value());
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (stack_->restarts("clean.ecowheels") == before && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(20ms);
    }
    ASSERT_GT(stack_->restarts("clean.ecowheels"), before);
  }

  ReplayOptions replay_options() {
    ReplayOptions o;
    o.kafka = stack_->bootstrap();
    o.pipeline = "ecowheels";
    o.state_dir = dir_.path() + "/replays";
    return o;
  }

  // Polls the saga API until the saga reaches `state` (the bound is a hang
  // guard, not a timing assertion).
  json wait_for_saga(const std::string& id, const std::string& state) {
    const auto deadline = std::chrono::steady_clock::now() + 240s;
    json last;
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto s = fetch_saga(stack_->saga_url(), id); s) {
        last = *s;
        if ((*s)["state"] == state) return *s;
      }
      std::this_thread::sleep_for(200ms);
    }
    ADD_FAILURE() << "saga " << id << " did not reach " << state << "; last seen: " << last.dump();
    return last;
  }

  // The replay saga's counts and its children's, against what was replayed.
  void expect_replay_saga(const json& saga, uint64_t total, uint64_t loaded, uint64_t rejected) {
    EXPECT_EQ(saga["state"], "COMPLETED");
    EXPECT_EQ(saga["kind"], "REPLAY");
    EXPECT_EQ(saga["total"].get<uint64_t>(), total);
    EXPECT_EQ(saga["counts"]["loaded"].get<uint64_t>(), loaded);
    EXPECT_EQ(saga["counts"]["rejected"].get<uint64_t>() + saga["counts"]["rejected_at_load"].get<uint64_t>(),
              rejected);
    EXPECT_EQ(saga["counts"]["in_flight"].get<uint64_t>(), 0u);
    uint64_t child_total = 0;
    uint64_t child_loaded = 0;
    for (const auto& c : saga["replay"]["children"]) {
      child_total += c["total"].get<uint64_t>();
      child_loaded += c["loaded"].get<uint64_t>();
      EXPECT_EQ(c["in_flight"].get<uint64_t>(), 0u) << c.dump();
    }
    EXPECT_EQ(child_total, total);
    EXPECT_EQ(child_loaded, loaded);
  }
};

TEST_F(ReplayE2E, RuleChangeReplayedByTimeLoadsNewlyValidRowsOnceAndReplayingAgainChangesNothing) {
  // Given 10k events loaded under a rule that rejects speeds over 60 km/h,
  const std::string from = rfc3339(now_ms() - 1000);
  auto opts = sim(10'000);
  opts.batch = 50;
  auto res = simulate(opts);
  ASSERT_TRUE(res.has_value()) << res.error().message;
  expect_exact_outcome(*res);
  std::set<std::string> speeding;
  for (const auto& e : generate_events(opts)) {
    if (e.fault == "range:speed_kmh") speeding.insert(e.event_id);
  }
  ASSERT_GT(speeding.size(), 50u);
  const auto before = table(stack_->db_path("ecowheels"));

  // when the rule is widened to 400 km/h and the range is replayed by time
  // (ListOffsets on starling-broker),
  restart_clean_with_speed_limit(400);
  auto ropts = replay_options();
  ropts.from = from;
  ropts.to = rfc3339(now_ms() + 1000);
  auto replay = run_replay(ropts);
  ASSERT_TRUE(replay.has_value()) << replay.error().message;
  EXPECT_EQ(replay->state, "published");
  EXPECT_EQ(replay->published(), 10'000u);
  EXPECT_EQ(replay->duplicates(), 0u);

  // then the replay saga completes with the right counts: the speeding
  // events are loaded now, the other faults are still rejected,
  const uint64_t now_valid = res->valid_ids.size() + speeding.size();
  auto saga = wait_for_saga(replay->id, "COMPLETED");
  expect_replay_saga(saga, 10'000, now_valid, res->faulty_ids.size() - speeding.size());
  EXPECT_EQ(saga["replay"]["origin_saga_count"].get<uint64_t>(), res->saga_ids.size());
  EXPECT_EQ(saga["replay"]["children"].size(), 3u);

  // the warehouse holds the newly valid rows and nothing twice; the new rows
  // carry the replay's saga id, and the rows the rule change did not touch
  // are unchanged (saga id included).
  std::size_t rows = 0;
  const auto after = table(stack_->db_path("ecowheels"), &rows);
  EXPECT_EQ(rows, now_valid);
  EXPECT_EQ(after.size(), now_valid);
  for (const auto& id : speeding) {
    auto it = after.find(id);
    ASSERT_NE(it, after.end()) << id << " should be loaded after the replay";
    EXPECT_EQ(it->second.saga_id, replay->id);
  }
  for (const auto& [id, row] : before) {
    auto it = after.find(id);
    ASSERT_NE(it, after.end()) << id;
    EXPECT_EQ(it->second.saga_id, row.saga_id) << id << " was rewritten by a replay that changed nothing in it";
    EXPECT_EQ(it->second.content, row.content) << id;
  }

  // When the same range is replayed a second time, no row changes.
  auto again = run_replay(ropts);
  ASSERT_TRUE(again.has_value()) << again.error().message;
  auto saga2 = wait_for_saga(again->id, "COMPLETED");
  expect_replay_saga(saga2, 10'000, now_valid, res->faulty_ids.size() - speeding.size());
  std::size_t rows2 = 0;
  const auto twice = table(stack_->db_path("ecowheels"), &rows2);
  EXPECT_EQ(rows2, now_valid);
  ASSERT_EQ(twice.size(), after.size());
  for (const auto& [id, row] : after) {
    EXPECT_EQ(twice.at(id).saga_id, row.saga_id) << id;
    EXPECT_EQ(twice.at(id).content, row.content) << id;
  }
}

// Item 9 of the hostile-input issue: a range whose first readings were filled
// (fill_last_known) from readings before it. Replayed with unchanged rules, it
// must change no row; without the warm-up the fills were lost (the row's
// temperature became NULL), which the second replay below shows.
TEST_F(ReplayE2E, AReplayedRangeWarmsUpSoUnchangedRulesChangeNoRowWhereTheOriginalFilledFromBeforeIt) {
  const auto post = [&](const std::string& tag, int64_t event_ms, bool with_temperature) {
    json batch = json::array();
    for (int i = 0; i < 20; ++i) {
      json r = {{"event_id", fmt::format("warm-{}-{}", tag, i)},
                {"device_id", fmt::format("bike-9{:03}", i)},
                {"battery_pct", 80},
                {"speed_kmh", 12},
                {"status", "RIDING"},
                {"event_time", rfc3339(event_ms)}};
      if (with_temperature) r["temperature_c"] = 12.5;
      batch.push_back(r);
    }
    auto resp = http_call("POST", stack_->ingest_url() + "/v1/pipelines/ecowheels/events", batch.dump());
    EXPECT_TRUE(resp.has_value() && resp->status == 202) << (resp ? resp->body : resp.error().message);
    return resp ? json::parse(resp->body)["saga_id"].get<std::string>() : std::string();
  };
  const auto t0 = now_ms() - 120'000;
  wait_for_saga(post("a", t0, true), "COMPLETED");
  std::this_thread::sleep_for(50ms);
  const auto from = now_ms();
  std::this_thread::sleep_for(50ms);
  wait_for_saga(post("b", t0 + 60'000, false), "COMPLETED");
  const auto before = table(stack_->db_path("ecowheels"));
  ASSERT_EQ(before.size(), 40u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_NE(before.at(fmt::format("warm-b-{}", i)).content.find("temperature_c=12.5;"), std::string::npos)
        << "the original run filled it from the reading before";
  }

  const auto replay_from = [&](int64_t warm_up_ms) {
    auto o = replay_options();
    o.from = std::to_string(from);
    o.warm_up_ms = warm_up_ms;
    auto r = run_replay(o);
    EXPECT_TRUE(r.has_value()) << r.error().message;
    if (!r) return json();
    EXPECT_EQ(r->published(), 20u) << "the warm-up is not part of the replay";
    uint32_t warmed = 0;
    for (const auto& p : r->partitions) warmed += p.warmed;
    EXPECT_EQ(warmed, warm_up_ms > 0 ? 20u : 0u);
    return wait_for_saga(r->id, "COMPLETED");
  };
  expect_replay_saga(replay_from(int64_t{10} * 60'000), 20, 20, 0);
  std::size_t rows = 0;
  const auto after = table(stack_->db_path("ecowheels"), &rows);
  EXPECT_EQ(rows, 40u);
  for (const auto& [id, row] : before) {
    EXPECT_EQ(after.at(id).content, row.content) << id << " was changed by a replay with unchanged rules";
    EXPECT_EQ(after.at(id).saga_id, row.saga_id) << id;
  }

  // The same replay without the warm-up loses what the original filled.
  replay_from(0);
  const auto cold = table(stack_->db_path("ecowheels"));
  int lost = 0;
  for (int i = 0; i < 20; ++i)
    lost += cold.at(fmt::format("warm-b-{}", i)).content != before.at(fmt::format("warm-b-{}", i)).content;
  EXPECT_EQ(lost, 20) << "without a warm-up the range's first readings are not filled as they were";
}

TEST_F(ReplayE2E, ReplayDuringLiveIngestAtFullRateLosesAndDuplicatesNothing) {
  const bool soak = std::getenv("STARLING_SOAK") != nullptr;
  // Given a first fleet's events, loaded,
  const std::string from = rfc3339(now_ms() - 1000);
  auto first_opts = sim(soak ? 20'000 : 4'000);
  auto first = simulate(first_opts);
  ASSERT_TRUE(first.has_value()) << first.error().message;
  expect_exact_outcome(*first);
  const std::string to = rfc3339(now_ms() + 1);
  const auto before = table(stack_->db_path("ecowheels"));

  // when a second fleet posts as fast as ingest answers while the first
  // fleet's range is replayed (no group stopped, no rate limit),
  auto live_opts = sim(soak ? 40'000 : 6'000);
  live_opts.id_prefix = "live-";
  live_opts.seed = 2;
  auto live = std::async(std::launch::async, [&] { return simulate(live_opts); });
  auto ropts = replay_options();
  ropts.from = from;
  ropts.to = to;
  auto replay = run_replay(ropts);
  auto second = live.get();
  ASSERT_TRUE(second.has_value()) << second.error().message;
  ASSERT_TRUE(replay.has_value()) << replay.error().message;
  EXPECT_EQ(replay->published(), first->accepted);

  // then every saga completes, live and replayed: each live event is loaded
  // or rejected once, the replay counts the first fleet's events again,
  const auto sagas = first->saga_ids.size() + second->saga_ids.size() + 1;
  auto totals = wait_until_settled(stack_->saga_url(), "ecowheels", sagas, 300s);
  ASSERT_TRUE(totals.has_value()) << totals.error().message;
  EXPECT_EQ(totals->accepted, first->accepted * 2 + second->accepted);
  EXPECT_EQ(totals->loaded, first->valid_ids.size() * 2 + second->valid_ids.size());
  EXPECT_EQ(totals->rejected, first->faulty_ids.size() * 2 + second->faulty_ids.size());
  EXPECT_EQ(totals->in_flight, 0u);
  expect_replay_saga(wait_for_saga(replay->id, "COMPLETED"), first->accepted, first->valid_ids.size(),
                     first->faulty_ids.size());

  // and the warehouse holds both fleets' valid events exactly once; the
  // replay (same rules) rewrote no row.
  std::size_t rows = 0;
  const auto after = table(stack_->db_path("ecowheels"), &rows);
  std::set<std::string> expected(first->valid_ids.begin(), first->valid_ids.end());
  expected.insert(second->valid_ids.begin(), second->valid_ids.end());
  EXPECT_EQ(rows, expected.size()) << "a row is duplicated or missing";
  std::set<std::string> ids;
  for (const auto& [id, row] : after) {
    ids.insert(id);
    EXPECT_NE(row.saga_id, replay->id) << id << " was rewritten although its content did not change";
  }
  EXPECT_EQ(ids, expected);
  for (const auto& [id, row] : before) EXPECT_EQ(after.at(id).content, row.content) << id;
}

TEST_F(ReplayE2E, ReplayBySagaIdReplaysExactlyThatSagaAndIsControlledFromAnotherProcess) {
  // Given 1000 events in 50 sagas, loaded,
  auto opts = sim(1'000);
  auto res = simulate(opts);
  ASSERT_TRUE(res.has_value()) << res.error().message;
  expect_exact_outcome(*res);
  const auto& target = res->saga_ids[7];
  auto original = fetch_saga(stack_->saga_url(), target);
  ASSERT_TRUE(original.has_value());

  // when one saga is replayed by its id,
  auto ropts = replay_options();
  ropts.saga = target;
  auto replay = run_replay(ropts);
  ASSERT_TRUE(replay.has_value()) << replay.error().message;

  // then exactly its 20 events are replayed, as a REPLAY saga linked to it.
  EXPECT_EQ(replay->published(), 20u);
  auto saga = wait_for_saga(replay->id, "COMPLETED");
  expect_replay_saga(saga, 20, (*original)["counts"]["loaded"].get<uint64_t>(),
                     (*original)["counts"]["rejected"].get<uint64_t>());
  EXPECT_EQ(saga["replay"]["origin_sagas"], json::array({target}));

  // The load stage's input replays the same way: the saga's clean events,
  // from <p>.clean into <p>.clean.replay, all loaded again (rows unchanged).
  auto load_opts = replay_options();
  load_opts.saga = target;
  load_opts.stage = "load";
  auto load_replay = run_replay(load_opts);
  ASSERT_TRUE(load_replay.has_value()) << load_replay.error().message;
  EXPECT_EQ(load_replay->source_topic, "ecowheels.clean");
  EXPECT_EQ(load_replay->replay_topic, "ecowheels.clean.replay");
  const auto valid_in_target = (*original)["counts"]["loaded"].get<uint64_t>();
  EXPECT_EQ(load_replay->published(), valid_in_target);
  expect_replay_saga(wait_for_saga(load_replay->id, "COMPLETED"), valid_in_target, valid_in_target, 0);

  // A dry run reads and counts but publishes nothing.
  auto dry_opts = replay_options();
  dry_opts.from = "beginning";
  dry_opts.dry_run = true;
  auto dry = run_replay(dry_opts);
  ASSERT_TRUE(dry.has_value()) << dry.error().message;
  EXPECT_EQ(dry->state, "dry-run");
  EXPECT_EQ(dry->published(), 1000u);  // what it would replay
  EXPECT_EQ(dry->partitions.size(), 3u);
  for (const auto& p : dry->partitions) EXPECT_GT(p.max_time_ms, 0);
  EXPECT_FALSE(fetch_saga(stack_->saga_url(), dry->id).has_value()) << "a dry run made a saga";

  // Pause, resume and cancel a slow replay of everything from another
  // process (the `starling` executable), and read its status there.
  auto slow = replay_options();
  slow.from = "beginning";
  slow.rate = 100;
  slow.id = std::string(saga::kReplaySagaPrefix) + "controlled";
  auto running = std::async(std::launch::async, [&] { return run_replay(slow); });
  auto cli = [&](const std::string& args) {
    const auto cmd = std::string(STARLING_BIN_DIR) + "/starling replay " + args + " " + slow.id + " --state-dir " +
                     slow.state_dir + " --saga-url " + stack_->saga_url() + " 2>&1";
    std::string out;
    FILE* p = ::popen(cmd.c_str(), "r");
    char buf[4096];
    while (p && std::fgets(buf, sizeof buf, p)) out += buf;
    const int st = p ? ::pclose(p) : -1;
    EXPECT_EQ(st, 0) << cmd << "\n" << out;
    return out;
  };
  auto status = [&] { return json::parse(cli("status --json"))["replay"]; };
  auto wait_status = [&](const std::function<bool(const json&)>& ok) {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    json s;
    for (;;) {
      auto r = read_replay_status(slow.state_dir, slow.id);
      if (r) s = to_json(*r);
      if ((r && ok(s)) || std::chrono::steady_clock::now() > deadline) return s;
      std::this_thread::sleep_for(50ms);
    }
  };
  wait_status([](const json& s) { return s["published"].get<uint64_t>() >= 50; });
  cli("pause");
  auto paused = wait_status([](const json& s) { return s["state"] == "paused"; });
  ASSERT_EQ(paused["state"], "paused");
  std::this_thread::sleep_for(500ms);  // nothing is published while paused
  EXPECT_EQ(status()["published"], paused["published"]);
  cli("resume");
  const auto resumed_from = paused["published"].get<uint64_t>();
  wait_status([&](const json& s) { return s["published"].get<uint64_t>() >= resumed_from + 50; });
  cli("cancel");
  auto done = running.get();
  ASSERT_TRUE(done.has_value()) << done.error().message;
  EXPECT_EQ(done->state, "cancelled");
  EXPECT_GT(done->published(), resumed_from);
  EXPECT_LT(done->published(), 1000u);
  // The cancelled replay's saga closes over what it published.
  auto cancelled = wait_for_saga(slow.id, "COMPLETED");
  EXPECT_EQ(cancelled["total"].get<uint64_t>(), done->published());
  EXPECT_TRUE(cancelled["replay"]["cancelled"].get<bool>());
  const auto text = cli("status");
  EXPECT_NE(text.find("command: cancelled"), std::string::npos) << text;
  EXPECT_NE(text.find("saga: COMPLETED"), std::string::npos) << text;
}

}  // namespace
}  // namespace starling::e2e
