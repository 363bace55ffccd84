// Lag is visible: every stage also commits the offsets it stored to its
// Kafka consumer group, so `starling groups`, kafka-consumer-groups, Burrow
// or KafkaJS admin see how far each stage is behind. A stopped loader's lag
// and the age of its oldest unprocessed event show; once it runs again, the
// lag goes back to 0. And the user's librdkafka properties reach the clients,
// with secrets never printed.

#include <gmock/gmock.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "tests/e2e/pipeline_e2e.h"
#include "tests/services/broker/npm_client.h"

namespace starling::e2e {
namespace {

using broker::testing::install_npm_client;
using broker::testing::run_command;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

class LagE2E : public PipelineE2E {
 protected:
  /// `starling groups --json` for ecowheels: the stages by name.
  std::map<std::string, json> groups() {
    auto r = run_command(std::string(STARLING_BIN_DIR) + "/starling groups --kafka " + stack_->bootstrap() +
                             " --pipeline ecowheels --json",
                         60);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::map<std::string, json> out;
    if (r.exit_code != 0) return out;
    // stdout's JSON (a log line on stderr, were there one, comes before it).
    const auto start = r.output.find("{\n");
    EXPECT_NE(start, std::string::npos) << r.output;
    if (start == std::string::npos) return out;
    const json page = json::parse(r.output.substr(start));
    for (const auto& g : page["groups"]) out[g["stage"].get<std::string>()] = g;
    return out;
  }
  /// Polls `starling groups` until `done` holds for it (or 30 s).
  std::map<std::string, json> groups_until(const std::function<bool(std::map<std::string, json>&)>& done) {
    const auto until = std::chrono::steady_clock::now() + 30s;
    auto g = groups();
    while (!done(g) && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(500ms);
      g = groups();
    }
    return g;
  }
  static bool caught_up(const json& stage) {
    if (stage["lag"] != 0) return false;
    for (const auto& p : stage["partitions"]) {
      if (p["log_end"] > p["log_start"] && p["committed"] != p["log_end"]) return false;
    }
    return true;
  }
};

TEST_F(LagE2E, EveryStageCommitsWhatItStoredSoAnyLagToolSeesItCaughtUp) {
  auto res = simulate(sim(400));
  ASSERT_TRUE(res.has_value()) << res.error().message;
  expect_exact_outcome(*res);

  auto g = groups_until(
      [](auto& g) { return g.size() == 3 && caught_up(g["clean"]) && caught_up(g["load"]) && caught_up(g["saga"]); });
  ASSERT_EQ(g.size(), 3u);
  for (const char* stage : {"clean", "load", "saga"}) {
    EXPECT_TRUE(caught_up(g[stage])) << stage << ": " << g[stage].dump(1);
    EXPECT_TRUE(g[stage]["oldest_unprocessed_ms"].is_null()) << stage;
  }
  EXPECT_EQ(g["clean"]["group"], "starling-clean.ecowheels");
  EXPECT_EQ(g["load"]["group"], "starling-load.ecowheels");
  EXPECT_EQ(g["saga"]["group"], "starling-saga");

  // Another client's view of the same committed offsets: KafkaJS admin.
  const std::filesystem::path work = KAFKAJS_WORK_DIR;
  install_npm_client(KAFKAJS_SOURCE_DIR, work, {"offsets.js"}, "node_modules/kafkajs/package.json");
  if (HasFatalFailure()) return;
  for (const auto& [stage, topic] : {std::pair{"clean", "ecowheels.raw"}, std::pair{"load", "ecowheels.clean"},
                                     std::pair{"saga", "starling.saga"}}) {
    auto r = run_command("cd " + work.string() + " && node offsets.js " + stack_->bootstrap() + " " +
                             g[stage]["group"].get<std::string>() + " " + topic,
                         60);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::map<int, int64_t> kafkajs;
    const json offsets = json::parse(r.output);
    for (const auto& p : offsets) kafkajs[p["partition"].get<int>()] = p["offset"].get<int64_t>();
    int with_data = 0;
    for (const auto& p : g[stage]["partitions"]) {
      if (p["topic"] != topic || p["log_end"] == p["log_start"]) continue;
      ++with_data;
      EXPECT_EQ(kafkajs[p["partition"].get<int>()], p["log_end"].get<int64_t>())
          << stage << " " << topic << "/" << p["partition"];
    }
    EXPECT_GT(with_data, 0) << topic;
  }
}

TEST_F(LagE2E, AStoppedLoadersLagAndItsOldestUnprocessedEventShowThenDrain) {
  ASSERT_TRUE(stack_->signal("load.ecowheels", SIGSTOP).has_value());
  auto res = simulate(sim(200));
  ASSERT_TRUE(res.has_value()) << res.error().message;
  const auto valid = static_cast<int64_t>(res->valid_ids.size());

  // clean goes on; the loader's lag is every valid event.
  auto g = groups_until([&](auto& g) { return g.size() == 3 && caught_up(g["clean"]) && g["load"]["lag"] == valid; });
  EXPECT_TRUE(caught_up(g["clean"])) << g["clean"].dump(1);
  EXPECT_EQ(g["load"]["lag"].get<int64_t>(), valid) << g["load"].dump(1);
  std::this_thread::sleep_for(1500ms);
  g = groups();
  ASSERT_FALSE(g["load"]["oldest_unprocessed_age_ms"].is_null()) << g["load"].dump(1);
  EXPECT_GE(g["load"]["oldest_unprocessed_age_ms"].get<int64_t>(), 1500);

  // The table says the same, for a person.
  auto table = run_command(
      std::string(STARLING_BIN_DIR) + "/starling groups --kafka " + stack_->bootstrap() + " --pipeline ecowheels", 60);
  ASSERT_EQ(table.exit_code, 0) << table.output;
  std::cout << table.output;
  EXPECT_THAT(table.output, HasSubstr("starling-load.ecowheels"));
  EXPECT_THAT(table.output, HasSubstr(" ago"));

  ASSERT_TRUE(stack_->signal("load.ecowheels", SIGCONT).has_value());
  expect_exact_outcome(*res);
  g = groups_until([](auto& g) { return g.size() == 3 && caught_up(g["load"]); });
  EXPECT_TRUE(caught_up(g["load"])) << g["load"].dump(1);
}

TEST_F(LagE2E, KafkaPropertiesReachTheClientsAndSecretsAreNeverPrinted) {
  // A property librdkafka does not know stops the service, naming where it
  // came from; the secret beside it is shown redacted, never in clear.
  auto r =
      run_command("STARLING_KAFKA_SASL_PASSWORD=hunter2 " + std::string(STARLING_BIN_DIR) + "/starling-clean --kafka " +
                      stack_->bootstrap() + " --pipeline " + testing::source_path("pipelines/ecowheels.yaml") +
                      " --data-dir " + dir_.path() + "/props --listen \"\" --kafka-property no.such.property=1",
                  30);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("no.such.property=1 (from --kafka-property)"));
  EXPECT_THAT(r.output, HasSubstr("sasl.password=<redacted> (from STARLING_KAFKA_SASL_PASSWORD)"));
  EXPECT_THAT(r.output, Not(HasSubstr("hunter2")));

  // Every binary says its version, and its help says what its exit codes mean.
  for (const char* bin : {"starling", "starling-clean", "starling-load", "starling-saga", "starling-ingest"}) {
    auto v = run_command(std::string(STARLING_BIN_DIR) + "/" + bin + " --version", 10);
    EXPECT_EQ(v.exit_code, 0) << bin << ": " << v.output;
    EXPECT_THAT(v.output, HasSubstr(std::string(bin) + " 0.")) << bin;
    auto h = run_command(std::string(STARLING_BIN_DIR) + "/" + bin + " --help", 10);
    EXPECT_THAT(h.output, HasSubstr("Exit codes: 0")) << bin;
  }

  // One the guarantees depend on is refused before anything starts.
  auto acks = run_command(std::string(STARLING_BIN_DIR) + "/starling groups --kafka " + stack_->bootstrap() +
                              " --pipeline ecowheels --kafka-property acks=1",
                          30);
  EXPECT_EQ(acks.exit_code, 2) << acks.output;
  EXPECT_THAT(acks.output, HasSubstr("acks is set by Starling itself"));
}

}  // namespace
}  // namespace starling::e2e
