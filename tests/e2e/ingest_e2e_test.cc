// The front door's durability promise on a real broker: a 202 is only ever
// given for events that are in <p>.raw. The broker is killed (SIGKILL) while
// requests are in flight and kept down longer than ingest's produce timeout,
// twice; clients retry every 503 or broken connection with the same
// Idempotency-Key until they get their 202. A retry re-produces envelopes
// that may already be in Kafka (possibly persisted); downstream must fold
// those copies: every saga COMPLETED with exact counts, every acknowledged
// event loaded exactly once.
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/http.h"
#include "services/simulator/report.h"
#include "services/supervisor/stack.h"
#include "starling/v1/envelope.pb.h"
#include "tests/e2e/pipeline_e2e.h"
#include "tests/support/temp_dir.h"

namespace starling::e2e {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// Every event id in `topic` from the beginning, read until all of `want` are
// there or nothing new arrived for a while.
std::multiset<std::string> event_ids_in(const std::string& bootstrap, const std::string& topic,
                                        const std::set<std::string>& want) {
  auto consumer = kafka::KafkaConsumer::create({bootstrap, "ingest-e2e-reader", {}}, "ingest-e2e-reader", {topic}, {});
  EXPECT_TRUE(consumer.has_value());
  std::multiset<std::string> seen;
  std::size_t wanted_seen = 0;
  auto quiet_since = std::chrono::steady_clock::now();
  const auto deadline = quiet_since + 120s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto batch = (*consumer)->poll_batch(1000, 200ms);
    if (!batch) break;
    for (const auto& m : *batch) {
      v1::Envelope env;
      EXPECT_TRUE(env.ParseFromString(m.value));
      if (want.contains(env.event_id()) && !seen.contains(env.event_id())) ++wanted_seen;
      seen.insert(env.event_id());
    }
    if (!batch->empty()) quiet_since = std::chrono::steady_clock::now();
    if (wanted_seen == want.size() && std::chrono::steady_clock::now() - quiet_since > 3s) break;
  }
  (*consumer)->close();
  return seen;
}

TEST(IngestE2E, BrokerKilledMidRequestNeverGets202ForLostEvents) {
  testing::TempDir dir;
  // Kafka has 2 s to confirm a request's events; the broker stays down for 4.
  ::setenv("STARLING_PRODUCE_TIMEOUT_MS", "2000", 1);
  StackOptions o;
  o.bin_dir = STARLING_BIN_DIR;
  o.data_dir = dir.path() + "/stack";
  o.pipeline_files = {testing::source_path("pipelines/ecowheels.yaml")};
  o.restart_crashed = false;  // the test brings the broker back itself
  Stack stack(o);
  auto st = stack.start();
  ::unsetenv("STARLING_PRODUCE_TIMEOUT_MS");
  ASSERT_TRUE(st.has_value()) << st.error().message;
  const auto url = stack.ingest_url() + "/v1/pipelines/ecowheels/events";

  constexpr int kRequests = 160;
  constexpr int kPerRequest = 25;
  std::atomic<int> next{0};
  std::atomic<int> acknowledged{0};
  std::atomic<int> refused{0};  // 503s and broken connections, each retried
  std::mutex mu;
  std::set<std::string> acked_ids;
  std::set<std::string> saga_ids;
  std::atomic<bool> failed{false};
  const auto now = fmt::format("{:%FT%TZ}", std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()));
  auto client = [&] {
    for (int r = next++; r < kRequests; r = next++) {
      json body = json::array();
      for (int i = 0; i < kPerRequest; ++i) {
        body.push_back({{"event_id", fmt::format("r{}-{}", r, i)},
                        {"device_id", fmt::format("bike-{:04}", (r * kPerRequest + i) % 40)},
                        {"battery_pct", 50},
                        {"status", "RIDING"},
                        {"event_time", now}});
      }
      const auto deadline = std::chrono::steady_clock::now() + 90s;
      for (;;) {
        auto resp = http_call("POST", url, body.dump(), {{"Idempotency-Key", fmt::format("req-{}", r)}}, 10'000);
        if (resp && resp->status == 202) {
          const auto receipt = json::parse(resp->body);
          EXPECT_EQ(receipt["accepted"], kPerRequest);
          std::lock_guard lock(mu);
          saga_ids.insert(receipt["saga_id"].get<std::string>());
          for (int i = 0; i < kPerRequest; ++i) acked_ids.insert(fmt::format("r{}-{}", r, i));
          ++acknowledged;
          break;
        }
        if (resp && resp->status != 503 && resp->status != 409) {
          ADD_FAILURE() << "request " << r << ": " << resp->status << " " << resp->body;
          failed = true;
          return;
        }
        ++refused;
        if (std::chrono::steady_clock::now() > deadline) {
          ADD_FAILURE() << "request " << r << " never got its 202";
          failed = true;
          return;
        }
        std::this_thread::sleep_for(200ms);
      }
    }
  };
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) clients.emplace_back(client);
  // Two outages, each while requests are in flight.
  for (const int at : {30, 90}) {
    while (acknowledged < at && !failed) std::this_thread::sleep_for(10ms);
    ASSERT_TRUE(stack.signal("broker", SIGKILL).has_value());
    std::this_thread::sleep_for(4s);
    auto again = stack.restart("broker");
    ASSERT_TRUE(again.has_value()) << again.error().message;
  }
  for (auto& t : clients) t.join();
  ASSERT_FALSE(failed);
  ASSERT_EQ(acknowledged, kRequests);
  // The outages were seen: some requests got a 503 (or lost their connection) first.
  EXPECT_GT(refused, 0);

  const auto seen = event_ids_in(stack.bootstrap(), "ecowheels.raw", acked_ids);
  std::size_t missing = 0;
  for (const auto& id : acked_ids) {
    if (!seen.contains(id)) {
      if (++missing <= 10) ADD_FAILURE() << "acknowledged with 202 but not in ecowheels.raw: " << id;
    }
  }
  EXPECT_EQ(missing, 0u) << "of " << acked_ids.size() << " acknowledged events";
  std::printf("%d requests, %d refused attempts retried, %zu events acknowledged, %zu envelopes in raw\n", kRequests,
              refused.load(), acked_ids.size(), seen.size());

  // Downstream folded the re-produced copies: one saga per request, each
  // COMPLETED with every event loaded once.
  ASSERT_EQ(saga_ids.size(), static_cast<std::size_t>(kRequests));
  auto totals = wait_until_settled(stack.saga_url(), "ecowheels", kRequests, 180s);
  ASSERT_TRUE(totals.has_value()) << totals.error().message;
  EXPECT_EQ(totals->sagas, static_cast<uint64_t>(kRequests));
  EXPECT_EQ(totals->accepted, acked_ids.size());
  EXPECT_EQ(totals->loaded, acked_ids.size());
  EXPECT_EQ(totals->rejected, 0u);
  const auto rows = loaded_ids(stack.db_path("ecowheels"), "ride_telemetry");
  EXPECT_EQ(rows.size(), acked_ids.size()) << "a row is duplicated or missing";
  EXPECT_EQ(std::set<std::string>(rows.begin(), rows.end()), acked_ids);
  stack.stop();
}

}  // namespace
}  // namespace starling::e2e
