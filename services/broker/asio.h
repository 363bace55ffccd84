#pragma once

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>,
// so <utility> comes first (clang-format would sort it after).
// clang-format off
#include <utility>
#include <optional>

#include <boost/asio.hpp>
// clang-format on

namespace starling::broker {
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

/// A one-shot result that a coroutine waits for and another party fills in.
/// Both sides hold a shared_ptr, so either may go away first.
template <class T>
struct Pending {
  explicit Pending(const asio::any_io_executor& ex) : timer(ex) {}
  asio::steady_timer timer;
  std::optional<T> result;
  bool woken = false;

  void complete(T value) {
    result = std::move(value);
    wake();
  }
  void wake() {
    woken = true;
    timer.cancel();
  }
  /// Returns when complete()/wake() is called or at `deadline`.
  asio::awaitable<void> wait_until(Clock::time_point deadline) {
    if (woken) co_return;
    timer.expires_at(deadline);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
};

}  // namespace starling::broker
