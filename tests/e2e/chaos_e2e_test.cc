// Chaos: a fleet with tricky inputs (text beyond ASCII, readings hours late
// or out of order, resends of earlier requests' events, faulty readings)
// posts steadily while a random process of the stack, starling-broker
// included, is killed with SIGKILL every 2-10 s; the supervisor restarts it.
// At the end the books are exact: every saga COMPLETED, every valid reading
// in the warehouse once, every faulty reading and resend rejected, the totals
// adding up. The default run is short (40 s of kills) so that the suite keeps
// it; STARLING_SOAK=1 runs 10 minutes. Each round kills every process once,
// in a shuffled order.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <thread>

#include "tests/e2e/pipeline_e2e.h"

namespace starling::e2e {
namespace {

bool soak() { return std::getenv("STARLING_SOAK") != nullptr; }

class ChaosE2E : public PipelineE2E {};

TEST_F(ChaosE2E, RandomKillsOfEveryProcessBrokerIncludedUnderATrickyFleetLeaveTheBooksExact) {
  const int seconds = soak() ? 600 : 40;
  constexpr int kRate = 300;  // events per second
  auto o = sim(seconds * kRate);
  o.rate = kRate;
  o.tricky = 0.1;
  o.max_retries = 100;  // a request waits out the restart of whatever was killed
  const auto planned = generate_events(o);
  std::size_t resends = 0;
  for (const auto& e : planned) resends += e.fault == "dedupe:event_id";
  ASSERT_GT(resends, 10u) << "the fleet must resend events of earlier requests";

  std::atomic<bool> posting{true};
  std::map<std::string, int> kills;
  std::thread chaos([&] {
    std::mt19937 rng(7);
    // Rounds over every process in a shuffled order, so that even the short
    // run kills each of them (the broker included) once.
    auto processes = stack_->processes();
    std::size_t turn = 0;
    auto next = std::chrono::steady_clock::now() + std::chrono::seconds(2 + rng() % 9);
    while (posting) {
      if (std::chrono::steady_clock::now() < next) {
        std::this_thread::sleep_for(50ms);
        continue;
      }
      if (turn % processes.size() == 0) std::shuffle(processes.begin(), processes.end(), rng);
      const auto victim = processes[turn++ % processes.size()];
      if (stack_->signal(victim, SIGKILL)) {
        ++kills[victim];
        std::fprintf(stderr, "chaos: kill -9 %s\n", victim.c_str());
      }
      next = std::chrono::steady_clock::now() + std::chrono::seconds(2 + rng() % 9);
    }
  });
  auto res = simulate(o);
  posting = false;
  chaos.join();
  ASSERT_TRUE(res.has_value()) << res.error().message;
  int total_kills = 0;
  for (const auto& [name, n] : kills) total_kills += n;
  EXPECT_GE(total_kills, seconds / 10) << "the chaos must have happened";
  EXPECT_GE(kills["broker"], 1) << "starling-broker must be among the killed";
  std::fprintf(stderr, "chaos: %d kills over %d s; %llu events accepted, %llu retries\n", total_kills, seconds,
               static_cast<unsigned long long>(res->accepted), static_cast<unsigned long long>(res->retries));
  EXPECT_EQ(res->accepted, planned.size());

  // Every process is back (the supervisor restarted each killed one).
  for (const auto& p : stack_->processes()) {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (!stack_->running(p) && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(100ms);
    EXPECT_TRUE(stack_->running(p)) << p << "; see " << stack_->log_path(p);
  }
  // A backlog built up during the kills drains first.
  auto settled = wait_until_settled(stack_->saga_url(), "ecowheels", res->saga_ids.size(), soak() ? 1200s : 300s);
  ASSERT_TRUE(settled.has_value()) << settled.error().message;
  expect_exact_outcome(*res);
}

}  // namespace
}  // namespace starling::e2e
