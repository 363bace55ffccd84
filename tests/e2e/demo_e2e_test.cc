// The ways users meet Starling through `starling demo` (the main job's code
// path: `starling up`'s Stack, the fleet, the consistency report), run as the
// real command: devices over MQTT to a mosquitto the stack starts, every
// stage scaled out to two instances, and the PostgreSQL sink. Each ends
// CONSISTENT with the exact counts, or the test fails with the output.

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "services/common/process.h"
#include "tests/support/postgres_server.h"
#include "tests/support/temp_dir.h"

namespace starling {
namespace {

using namespace std::chrono_literals;

struct Run {
  int exit_code = -1;
  std::string output;
};

// `starling demo ARGS` on ecowheels in a folder of the test's, bounded.
Run demo(const testing::TempDir& dir, std::vector<std::string> args, const std::string& name) {
  std::vector<std::string> argv = {
      std::string(STARLING_BIN_DIR) + "/starling",      "demo",       "--pipeline",
      testing::source_path("pipelines/ecowheels.yaml"), "--data-dir", dir.path() + "/" + name};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto log = dir.path() + "/" + name + ".out";
  auto p = ChildProcess::spawn(argv, log);
  Run r;
  if (!p) {
    r.output = p.error().message;
    return r;
  }
  const auto st = p->wait(400s);
  if (st && WIFEXITED(*st)) r.exit_code = WEXITSTATUS(*st);
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  r.output = text.str();
  return r;
}

// The figure on the report's line `label`.
int64_t figure(const std::string& out, const std::string& label) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex("\n  " + label + " +([0-9]+)"))) return -1;
  return std::stoll(m[1]);
}

void expect_consistent(const Run& r, int64_t events) {
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\nCONSISTENT: accepted = loaded + rejected + in flight; warehouse holds the valid events "
                          "exactly once"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(figure(r.output, "events sent by the fleet"), events) << r.output;
  const auto loaded = figure(r.output, "loaded, per the sagas");
  const auto rejected = figure(r.output, "rejected with reasons");
  EXPECT_GT(loaded, 0) << r.output;
  EXPECT_GT(rejected, 0) << r.output;
  EXPECT_EQ(loaded + rejected, events) << r.output;
  EXPECT_EQ(figure(r.output, "rows in ride_telemetry"), loaded) << r.output;
  EXPECT_EQ(figure(r.output, "in flight"), 0) << r.output;
}

TEST(Demo, AFleetPublishingOverMqttToTheMosquittoTheStackStartsEndsConsistent) {
  testing::TempDir dir;
  const auto r = demo(dir, {"--mqtt", "--events", "600", "--rate", "0"}, "mqtt");
  ASSERT_NO_FATAL_FAILURE(expect_consistent(r, 600));
  EXPECT_NE(r.output.find("over MQTT to 127.0.0.1:"), std::string::npos) << r.output;
  // One saga per message: each reading is a message of its own.
  EXPECT_EQ(figure(r.output, "sagas"), 600) << r.output;
}

TEST(Demo, EveryStageTwiceWithHttpAndMqttEndsConsistent) {
  // Two ingests share the HTTP fleet's connections; both read mosquitto (each
  // its own session: every message twice, one saga), two cleaners, loaders
  // (one SQLite file) and coordinators (their totals added up).
  testing::TempDir dir;
  const auto http = demo(
      dir, {"--instances", "ingest=2,clean=2,load=2,saga=2", "--events", "2000", "--rate", "0", "--connections", "4"},
      "http");
  ASSERT_NO_FATAL_FAILURE(expect_consistent(http, 2000));
  EXPECT_EQ(figure(http.output, "sagas"), 100) << http.output;
  const auto mqtt =
      demo(dir, {"--instances", "ingest=2,clean=2,load=2,saga=2", "--mqtt", "--events", "400", "--rate", "0"}, "mq");
  ASSERT_NO_FATAL_FAILURE(expect_consistent(mqtt, 400));
  EXPECT_EQ(figure(mqtt.output, "sagas"), 400) << "a message ingested by both instances is one saga\n" << mqtt.output;
}

TEST(Demo, ThePostgresSinkEndsConsistentAndCountsTheRowsInPostgres) {
  testing::TempDir dir;
  testing::PostgresServer pg(dir.path());
  ASSERT_TRUE(pg.initialised() && pg.start()) << "postgres did not start; see " << dir.path();
  const auto r = demo(dir, {"--sink", "postgres", "--postgres", pg.dsn(), "--events", "1000", "--rate", "0"}, "pg");
  ASSERT_NO_FATAL_FAILURE(expect_consistent(r, 1000));
  const auto rows = pg.exec("SELECT count(*) FROM ride_telemetry");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(std::stoll(rows[0]), figure(r.output, "loaded, per the sagas"));
}

TEST(Demo, RefusesStackFlagsItCannotHonourWithExitTwoNamingTheFlag) {
  testing::TempDir dir;
  auto r = demo(dir, {"--instances", "extract=2"}, "bad1");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--instances: 'extract=2': expected a stage of ingest, saga, clean, load"), std::string::npos)
      << r.output;
  r = demo(dir, {"--instances", "clean=0"}, "bad2");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("'clean=0': expected clean=N with N from 1 to 16"), std::string::npos) << r.output;
  r = demo(dir, {"--sink", "postgres"}, "bad3");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--sink postgres needs --postgres"), std::string::npos) << r.output;
  r = demo(dir, {"--sink", "oracle"}, "bad4");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--sink"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace starling
