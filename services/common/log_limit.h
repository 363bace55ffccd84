#pragma once
// Lets one log line through per interval and counts the ones it held back, so
// a failure repeating in a loop (accept at EMFILE, a flood of refused
// connections) cannot flood the log. Not thread-safe: one owner.

#include <chrono>
#include <cstddef>
#include <utility>

namespace starling {

class LogLimit {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LogLimit(Clock::duration interval) : interval_(interval) {}
  bool allow(Clock::time_point now = Clock::now()) {
    if (now < next_) {
      ++suppressed_;
      return false;
    }
    next_ = now + interval_;
    return true;
  }
  /// How many were held back since the last call.
  std::size_t take_suppressed() { return std::exchange(suppressed_, 0); }

 private:
  Clock::duration interval_;
  Clock::time_point next_{};
  std::size_t suppressed_ = 0;
};

}  // namespace starling
