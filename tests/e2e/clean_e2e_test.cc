// The clean stage in a whole pipeline: starling-clean killed with SIGKILL
// again and again while events stream in, and two cleaners sharing a group.
// starling-broker and every service run as real processes.

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "broker-adapters/kafka/kafka.h"
#include "services/clean/cleaner.h"
#include "services/clean/state.h"
#include "services/common/http.h"
#include "services/common/process.h"
#include "services/simulator/report.h"
#include "services/simulator/simulate.h"
#include "services/supervisor/stack.h"
#include "starling/v1/envelope.pb.h"
#include "tests/support/temp_dir.h"

namespace starling::e2e {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using simulator::count_rows;
using simulator::generate_events;
using simulator::SimOptions;
using simulator::simulate;
using simulator::wait_until_settled;
using supervisor::Stack;
using supervisor::StackOptions;

struct Posted {
  std::vector<std::string> saga_ids;
  std::set<std::string> ids;     // every accepted event id
  std::set<std::string> faulty;  // those the rules must reject
  uint64_t retries = 0;
};

// The simulated fleet, with the temperature sensor silent in one reading out
// of eight, so fill_last_known has work. Posted in batches at `rate` events/s.
Result<Posted> post_fleet(const std::string& ingest_url, const SimOptions& opts) {
  auto events = generate_events(opts);
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (i % 8 == 3) events[i].record.erase("temperature_c");
  }
  Posted out;
  const auto url = ingest_url + "/v1/pipelines/ecowheels/events";
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < events.size(); i += static_cast<std::size_t>(opts.batch)) {
    const auto end = std::min(events.size(), i + static_cast<std::size_t>(opts.batch));
    json body = json::array();
    for (std::size_t k = i; k < end; ++k) body.push_back(events[k].record);
    for (int attempt = 0;; ++attempt) {
      auto resp = http_call("POST", url, body.dump());
      if (resp && resp->status == 202) {
        out.saga_ids.push_back(json::parse(resp->body).at("saga_id"));
        break;
      }
      if (attempt >= 20) return fail(Errc::kUnavailable, resp ? resp->body : resp.error().message);
      ++out.retries;
      std::this_thread::sleep_for(100ms * (attempt + 1));
    }
    for (std::size_t k = i; k < end; ++k) {
      out.ids.insert(events[k].event_id);
      if (!events[k].fault.empty()) out.faulty.insert(events[k].event_id);
    }
    std::this_thread::sleep_until(
        t0 + std::chrono::microseconds(static_cast<int64_t>(1e6 * static_cast<double>(end) / opts.rate)));
  }
  return out;
}

// Every message of `topics` from the beginning, read until `done`, shown
// each message once as it comes, says so, or until the timeout. (It was shown
// every message read so far after each poll: under CI's load the messages
// came in small polls, the predicate parsed thousands of records each time,
// and 120 s went by with everything read but not yet counted.)
std::vector<kafka::InMessage> read_all(const std::string& bootstrap, const std::vector<std::string>& topics,
                                       const std::function<bool(const kafka::InMessage&)>& done,
                                       std::chrono::seconds timeout) {
  static int n = 0;
  auto consumer = kafka::KafkaConsumer::create(
      {bootstrap, "clean-e2e", {}}, "clean-e2e-" + std::to_string(::getpid()) + "-" + std::to_string(++n), topics, {});
  EXPECT_TRUE(consumer.has_value());
  std::vector<kafka::InMessage> out;
  const auto start = std::chrono::steady_clock::now();
  bool finished = false;
  while (!finished && std::chrono::steady_clock::now() < start + timeout) {
    auto batch = (*consumer)->poll_batch(2000, 200ms);
    if (!batch) break;
    for (auto& m : *batch) {
      finished = done(m) || finished;
      out.push_back(std::move(m));
    }
  }
  std::fprintf(stderr, "read %zu records of %zu topics in %.1f s%s\n", out.size(), topics.size(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
               finished ? "" : " (timed out)");
  if (!finished) {
    // Where each partition's reading stopped, against the end the consumer
    // last heard of: a stalled partition shows here.
    std::map<kafka::TopicPartition, std::pair<std::size_t, int64_t>> seen;
    for (const auto& m : out) {
      auto& [count, last] = seen[{m.topic, m.partition}];
      ++count;
      last = std::max(last, m.offset);
    }
    for (const auto& tp : (*consumer)->assignment()) {
      const auto end = (*consumer)->log_end(tp);
      std::fprintf(stderr, "  %s/%d: %zu records read, the last at offset %lld; log end %lld\n", tp.topic.c_str(),
                   tp.partition, seen[tp].first, static_cast<long long>(seen[tp].second),
                   static_cast<long long>(end.value_or(-1)));
    }
  }
  (*consumer)->close();
  return out;
}

std::string event_id_of(const kafka::InMessage& m) {
  if (m.topic.ends_with(".rejected")) {
    v1::RejectedRecord r;
    EXPECT_TRUE(r.ParseFromString(m.value));
    return r.envelope().event_id();
  }
  v1::Envelope e;
  EXPECT_TRUE(e.ParseFromString(m.value));
  return e.event_id();
}

class CleanE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    StackOptions o;
    o.bin_dir = STARLING_BIN_DIR;
    o.data_dir = dir_ / "stack";
    o.pipeline_files = {testing::source_path("pipelines/ecowheels.yaml")};
    stack_ = std::make_unique<Stack>(o);
    auto st = stack_->start();
    ASSERT_TRUE(st.has_value()) << st.error().message;
  }
  void TearDown() override {
    if (stack_) stack_->stop();
  }
  SimOptions fleet(int events, double rate, int batch) {
    SimOptions s;
    s.events = events;
    s.rate = rate;
    s.batch = batch;
    s.fault_rate = 0.05;
    return s;
  }
  int64_t loaded() {
    auto r = count_rows(stack_->db_path("ecowheels"), "ride_telemetry");
    return r ? r->rows : 0;
  }
  // Every accepted event is in exactly one of ecowheels.clean and
  // ecowheels.rejected (counted by event id; a replay may repeat one inside
  // a topic), the rejected ones are exactly the faulty ones, and every saga
  // is COMPLETED. Returns the outputs read.
  std::vector<kafka::InMessage> expect_every_event_once(const Posted& posted) {
    auto totals = wait_until_settled(stack_->saga_url(), "ecowheels", posted.saga_ids.size(), 300s);
    EXPECT_TRUE(totals.has_value()) << (totals ? "" : totals.error().message);
    if (totals) {
      EXPECT_EQ(totals->accepted, posted.ids.size());
      EXPECT_EQ(totals->rejected, posted.faulty.size());
      EXPECT_EQ(totals->in_flight, 0u);
    }
    std::set<std::string> clean_ids;
    std::set<std::string> rejected_ids;
    auto outputs = read_all(
        stack_->bootstrap(), {"ecowheels.clean", "ecowheels.rejected"},
        [&](const kafka::InMessage& m) {
          (m.topic == "ecowheels.clean" ? clean_ids : rejected_ids).insert(event_id_of(m));
          return clean_ids.size() + rejected_ids.size() >= posted.ids.size();
        },
        120s);
    std::vector<std::string> both;
    std::set_intersection(clean_ids.begin(), clean_ids.end(), rejected_ids.begin(), rejected_ids.end(),
                          std::back_inserter(both));
    EXPECT_TRUE(both.empty()) << both.size() << " events are both clean and rejected, e.g. " << both.front();
    std::set<std::string> all = clean_ids;
    all.insert(rejected_ids.begin(), rejected_ids.end());
    std::vector<std::string> missing;
    std::set_difference(posted.ids.begin(), posted.ids.end(), all.begin(), all.end(), std::back_inserter(missing));
    EXPECT_EQ(all, posted.ids) << missing.size() << " accepted events are in neither topic"
                               << (missing.empty() ? "" : ", e.g. " + missing.front());
    EXPECT_EQ(rejected_ids, posted.faulty);
    return outputs;
  }

  struct Reference {
    std::map<std::string, std::string> clean;  // event id → clean payload
    std::map<std::string, std::string> state;  // the RocksDB content after all input
    std::map<int32_t, int64_t> ends;           // end offset of each raw partition
    uint64_t filled = 0;
  };
  // Polls starling-clean's starling_clean_committed_offset gauges until each
  // raw partition's reaches its end, or the limit (the comparison then fails).
  void wait_until_committed(const std::map<int32_t, int64_t>& ends, std::chrono::seconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      auto page = http_call("GET", stack_->url("clean.ecowheels") + "/metrics");
      bool all = page.has_value();
      for (const auto& [partition, end] : ends) {
        if (!all) break;
        const auto series =
            // Labels render sorted by name (prometheus-cpp's text format).
            fmt::format(R"(starling_clean_committed_offset{{partition="{}",topic="ecowheels.raw"}} )", partition);
        const auto at = page->body.find(series);
        all = at != std::string::npos && std::stoll(page->body.substr(at + series.size())) >= end;
      }
      if (all) return;
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "starling-clean did not commit through the end of ecowheels.raw within " << limit.count() << " s";
  }
  // Cleans everything on ecowheels.raw in this process, partition by
  // partition in offset order, in batches of 777, with no crash.
  Reference reference_run(const Posted& posted) {
    Reference ref;
    std::size_t read = 0;
    const auto raw = read_all(
        stack_->bootstrap(), {"ecowheels.raw"}, [&](const auto&) { return ++read >= posted.ids.size(); }, 60s);
    EXPECT_EQ(raw.size(), posted.ids.size()) << "ingest retries: " << posted.retries;
    std::map<int32_t, std::vector<kafka::InMessage>> by_partition;
    for (const auto& m : raw) by_partition[m.partition].push_back(m);
    clean::Cleaner cleaner(pipeline_, "reference");
    clean::RocksCleanStore store(dir_ / "reference", pipeline_.dedupe_window_ms);
    for (auto& [partition, msgs] : by_partition) {
      std::sort(msgs.begin(), msgs.end(), [](const auto& a, const auto& b) { return a.offset < b.offset; });
      ref.ends[partition] = msgs.back().offset + 1;
      constexpr std::ptrdiff_t kChunk = 777;
      for (auto first = msgs.begin(); first != msgs.end();) {
        auto last = first + std::min(kChunk, std::distance(first, msgs.end()));
        std::vector<kafka::InMessage> batch(first, last);
        first = last;
        auto done = cleaner.clean_batch(batch, store, 0);
        for (const auto& m : done.out) {
          if (m.topic != "ecowheels.clean") continue;
          v1::Envelope e;
          EXPECT_TRUE(e.ParseFromString(m.value));
          ref.clean[e.event_id()] = e.payload();
          for (const auto& c : e.changes()) ref.filled += c.rule() == "fill_last_known";
        }
        EXPECT_TRUE(store.commit(done.next_offsets).has_value());
      }
    }
    ref.state = store.dump();
    return ref;
  }
  // Every copy of every clean record equals the reference's. Returns copies compared.
  std::size_t expect_clean_records_equal(const std::vector<kafka::InMessage>& outputs, const Reference& ref) {
    std::size_t compared = 0;
    for (const auto& m : outputs) {
      if (m.topic != "ecowheels.clean") continue;
      v1::Envelope e;
      EXPECT_TRUE(e.ParseFromString(m.value));
      auto it = ref.clean.find(e.event_id());
      EXPECT_TRUE(it != ref.clean.end()) << e.event_id();
      if (it != ref.clean.end()) {
        EXPECT_EQ(e.payload(), it->second) << "clean record of " << e.event_id() << " differs";
      }
      ++compared;
    }
    EXPECT_GE(compared, ref.clean.size());
    return compared;
  }

  testing::TempDir dir_;
  std::unique_ptr<Stack> stack_;
  PipelineConfig pipeline_ = load_pipeline(testing::source_path("pipelines/ecowheels.yaml"));
};

TEST_F(CleanE2E, CleanerKilledWithSigkillRepeatedlyOutputsEveryEventOnceAndEndsInTheStateOfARunWithoutCrashes) {
  const bool soak = std::getenv("STARLING_SOAK") != nullptr;
  constexpr int kKills = 10;
  // Given a fleet posting 6k events (50k with STARLING_SOAK=1), some with the
  // temperature missing so it is filled from the bike's last known value,
  const auto opts = fleet(soak ? 50'000 : 6'000, soak ? 4'000 : 1'500, soak ? 50 : 20);
  auto running = std::async(std::launch::async, [&] { return post_fleet(stack_->ingest_url(), opts); });

  // when starling-clean is killed with SIGKILL ten times while records flow
  // (the supervisor restarts it; it resumes from the offsets in its RocksDB),
  const int64_t step = static_cast<int64_t>(opts.events * 0.9) / (kKills + 1);
  for (int k = 1; k <= kKills; ++k) {
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    while (loaded() < k * step && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    ASSERT_TRUE(stack_->signal("clean.ecowheels", SIGKILL).has_value());
    std::this_thread::sleep_for(300ms);  // let the supervisor notice before the next kill
  }
  auto posted = running.get();
  ASSERT_TRUE(posted.has_value()) << posted.error().message;
  ASSERT_EQ(posted->ids.size(), static_cast<std::size_t>(opts.events));

  // then every event is clean or rejected, exactly one of the two,
  const auto outputs = expect_every_event_once(*posted);
  EXPECT_GE(stack_->restarts("clean.ecowheels"), kKills);

  // and a run of the same cleaner over the same input without any crash
  // (in this process, in other batch sizes) produces the same clean records,
  // fills included, and exactly the same RocksDB content: state and offsets.
  const auto ref = reference_run(*posted);
  EXPECT_GT(ref.filled, static_cast<uint64_t>(opts.events / 20)) << "the test must exercise fill_last_known";
  const auto compared = expect_clean_records_equal(outputs, ref);
  // The last restarted cleaner may still be rejoining the group: its outputs
  // were all written by an earlier instance, but its RocksDB commit of the
  // last batches comes once it has redone them. Wait until its committed
  // offsets reach the end of every partition (its /metrics), then stop.
  wait_until_committed(ref.ends, 120s);
  stack_->stop();  // starling-clean closes its RocksDB
  clean::RocksCleanStore crashed(dir_ / "stack/clean.ecowheels/state", pipeline_.dedupe_window_ms);
  const auto got = crashed.dump();
  EXPECT_EQ(got.size(), ref.state.size());
  EXPECT_TRUE(got == ref.state) << "the crashed cleaner's RocksDB differs from a run without crashes";
  std::fprintf(stderr,
               "%d SIGKILLs; %zu events: %zu clean (%llu filled from last known), %zu rejected; %zu clean records "
               "compared; %zu RocksDB keys equal to the reference\n",
               kKills, posted->ids.size(), ref.clean.size(), static_cast<unsigned long long>(ref.filled),
               posted->faulty.size(), compared, got.size());
}

TEST_F(CleanE2E, TwoCleanersShareThePartitionsAndASigkilledOnesPartitionsMoveBackWithExactResults) {
  // Given a second starling-clean in the same group, with its own RocksDB,
  const auto file = testing::source_path("pipelines/ecowheels.yaml");
  auto second = ChildProcess::spawn(
      {std::string(STARLING_BIN_DIR) + "/starling-clean", "--kafka", stack_->bootstrap(), "--pipeline", file,
       "--data-dir", dir_ / "clean2", "--instance", "clean2", "--log-level", "info"},
      dir_ / "clean2.log");
  ASSERT_TRUE(second.has_value()) << second.error().message;
  std::this_thread::sleep_for(3s);  // the group rebalances onto two members

  // when a fleet posts and the second cleaner is killed with SIGKILL midway
  // (its partitions move back to the first, which resumes from its own
  // stored offsets and rebuilds the state by replay),
  const auto opts = fleet(3'000, 600, 20);
  auto running = std::async(std::launch::async, [&] { return post_fleet(stack_->ingest_url(), opts); });
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (loaded() < 1'200 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  second->signal(SIGKILL);
  (void)second->wait(10s);
  auto posted = running.get();
  ASSERT_TRUE(posted.has_value()) << posted.error().message;

  // then the second one had cleaned a share of the partitions,
  {
    clean::RocksCleanStore store(dir_ / "clean2/state", pipeline_.dedupe_window_ms);
    EXPECT_FALSE(store.offsets().empty()) << "the second cleaner was never assigned a partition";
  }
  // every event is clean or rejected, exactly one of the two, with the same
  // clean records as a run by one cleaner without crashes,
  const auto outputs = expect_every_event_once(*posted);
  const auto ref = reference_run(*posted);
  expect_clean_records_equal(outputs, ref);
  // and the first cleaner, owning every partition again, ends with that state.
  stack_->stop();
  clean::RocksCleanStore first(dir_ / "stack/clean.ecowheels/state", pipeline_.dedupe_window_ms);
  EXPECT_TRUE(first.dump() == ref.state) << "the surviving cleaner's RocksDB differs from a single run without crashes";
}

}  // namespace
}  // namespace starling::e2e
