#pragma once
// The one retry rule of the data path: a transient error (a dependency that is
// down or slow) is retried with the same input, never skipped; a permanent one
// (the input itself is wrong) is returned at once, because no retry can fix
// it and looping on it would wedge the stage.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <string_view>
#include <thread>

#include "services/common/error.h"
#include "services/common/shutdown.h"

namespace starling {

/// unavailable, timeout and io pass with time; invalid_argument, not_found and
/// internal do not.
inline bool is_transient(const Error& e) {
  return e.code == Errc::kUnavailable || e.code == Errc::kTimeout || e.code == Errc::kIo;
}

/// Linear back-off after `attempt` failures, capped: 100 ms, 200 ms, ... 5 s.
inline std::chrono::milliseconds retry_backoff(int attempt) {
  return std::chrono::milliseconds(std::min(5000, 100 * attempt));
}

/// Calls `op` (returning a Result/Status) until it succeeds, fails with a
/// permanent error, or `give_up()` is true, logging each transient failure and
/// backing off (retry_backoff). `give_up` is asked every 50 ms of a back-off,
/// so a stop is taken within that. Returns the last result.
template <class Op, class GiveUp>
auto retry_transient(std::string_view what, Op&& op, GiveUp&& give_up) {
  auto result = op();
  for (int attempt = 1; !result && is_transient(result.error()) && !give_up(); ++attempt) {
    spdlog::warn("{} failed (attempt {}): {}", what, attempt, result.error().message);
    const auto until = std::chrono::steady_clock::now() + retry_backoff(attempt);
    while (std::chrono::steady_clock::now() < until && !give_up()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (give_up()) break;
    result = op();
  }
  return result;
}

/// retry_transient until shutdown is requested.
template <class Op>
auto retry_transient(std::string_view what, Op&& op) {
  return retry_transient(what, std::forward<Op>(op), [] { return shutdown_requested(); });
}

}  // namespace starling
