#pragma once
// The one retry loop of the data path: a batch whose effect could not be
// stored is retried as it is (never skipped) until it succeeds or the service
// is asked to stop.

#include <algorithm>
#include <chrono>
#include <string_view>
#include <thread>

#include <spdlog/spdlog.h>

#include "services/common/shutdown.h"

namespace starling {

/// Calls `op` (returning a Result/Status) until it succeeds or shutdown is
/// requested, logging each failure and backing off linearly up to 5 s.
/// Returns the last result: an error only when shutting down.
template <class Op>
auto retry_until_done(std::string_view what, Op&& op) {
  auto result = op();
  for (int attempt = 1; !result && !shutdown_requested(); ++attempt) {
    spdlog::warn("{} failed (attempt {}): {}", what, attempt, result.error().message);
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(5000, 100 * attempt)));
    result = op();
  }
  return result;
}

}  // namespace starling
