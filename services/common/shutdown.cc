#include "services/common/shutdown.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <thread>

namespace starling {
namespace {
std::atomic<bool> g_shutdown{false};
// The first signal asks for a drain; a second one (an impatient Ctrl-C)
// exits at once, which is safe: every path that accepts data is crash-safe.
extern "C" void on_signal(int) {
  if (g_shutdown.exchange(true)) ::_exit(130);
}
}  // namespace

void install_shutdown_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

bool shutdown_requested() { return g_shutdown.load(); }
void request_shutdown() { g_shutdown.store(true); }

void wait_for_shutdown() {
  while (!g_shutdown.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

bool sleep_unless(std::chrono::milliseconds d, const std::function<bool()>& stop) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (true) {
    if (stop && stop()) return false;
    const auto left = until - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return true;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(std::chrono::milliseconds(50), left));
  }
}

}  // namespace starling
