// The supervisor on the real executables: what it restarted, it stops as
// gently as what it started first.

#include "services/supervisor/stack.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "services/common/http.h"
#include "tests/support/temp_dir.h"

namespace starling::supervisor {
namespace {

using namespace std::chrono_literals;

// Until the supervisor has restarted `name` and the new process answers on
// its (pinned) port.
::testing::AssertionResult restarted_and_up(Stack& stack, const std::string& name) {
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (stack.restarts(name) == 0) {
    if (std::chrono::steady_clock::now() > deadline)
      return ::testing::AssertionFailure() << name << " was not restarted";
    std::this_thread::sleep_for(20ms);
  }
  while (true) {
    auto r = http_call("GET", stack.url(name) + "/healthz", {}, {}, 1000);
    if (r && r->status == 200) return ::testing::AssertionSuccess();
    if (std::chrono::steady_clock::now() > deadline)
      return ::testing::AssertionFailure() << name << " did not come back";
    std::this_thread::sleep_for(50ms);
  }
}

StackOptions ecowheels_stack(const testing::TempDir& dir) {
  StackOptions o;
  o.bin_dir = STARLING_BIN_DIR;
  o.data_dir = dir.path() + "/stack";
  o.pipeline_files = {testing::source_path("pipelines/ecowheels.yaml")};
  return o;
}

TEST(Supervisor, ServicesItRestartedAreDrainedAtStopAndExitZeroLikeTheOthers) {
  // Given a stack whose ingest and clean were killed and restarted by the
  // supervisor,
  testing::TempDir dir;
  Stack stack(ecowheels_stack(dir));
  auto started = stack.start();
  ASSERT_TRUE(started.has_value()) << started.error().message;
  const std::vector<std::string> killed = {"ingest", "clean.ecowheels"};
  for (const auto& name : killed) {
    ASSERT_TRUE(stack.signal(name, SIGKILL).has_value());
    ASSERT_TRUE(restarted_and_up(stack, name));
  }

  // when the stack stops,
  stack.stop();

  // then every process, restarted or not, got SIGTERM, drained and exited 0.
  for (const auto& name : stack.processes()) {
    SCOPED_TRACE(name);
    const auto exits = stack.exits(name);
    const bool was_killed = std::find(killed.begin(), killed.end(), name) != killed.end();
    ASSERT_EQ(exits.size(), was_killed ? 2u : 1u);
    if (was_killed) {
      EXPECT_TRUE(WIFSIGNALED(exits.front()) && WTERMSIG(exits.front()) == SIGKILL);
    }
    const int last = exits.back();
    ASSERT_TRUE(WIFEXITED(last)) << "stopped by signal " << WTERMSIG(last);
    EXPECT_EQ(WEXITSTATUS(last), 0);
  }
}

TEST(Supervisor, TlsVariablesExportedForAServiceRunAloneDoNotReachTheStacksServices) {
  // Given STARLING_TLS_* in the environment (a file that does not even exist:
  // a service that took it would exit 2 naming it),
  ::setenv("STARLING_TLS_CERT", "/nonexistent/cert.pem", 1);
  ::setenv("STARLING_TLS_KEY", "/nonexistent/key.pem", 1);
  testing::TempDir dir;
  Stack stack(ecowheels_stack(dir));
  auto started = stack.start();
  ::unsetenv("STARLING_TLS_CERT");
  ::unsetenv("STARLING_TLS_KEY");
  // then the stack starts, and ingest and saga answer plain HTTP.
  ASSERT_TRUE(started.has_value()) << started.error().message;
  for (const std::string name : {"ingest", "saga"}) {
    auto r = http_call("GET", stack.url(name) + "/healthz", {}, {}, 5000);
    ASSERT_TRUE(r.has_value()) << name << ": " << r.error().message;
    EXPECT_EQ(r->status, 200) << name;
    EXPECT_EQ(stack.restarts(name), 0) << name;
  }
  stack.stop();
}

}  // namespace
}  // namespace starling::supervisor
