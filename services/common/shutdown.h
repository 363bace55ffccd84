#pragma once

#include <chrono>
#include <functional>

namespace starling {

/// Installs SIGINT/SIGTERM handlers that only set a flag; loops poll it and
/// drain, commit and exit within their bound (graceful shutdown).
void install_shutdown_handler();
bool shutdown_requested();
/// Blocks until a shutdown signal arrives.
void wait_for_shutdown();
/// Sets the flag from code (tests, fatal errors in a worker thread).
void request_shutdown();

/// Sleeps `d` in slices of at most 50 ms, asking `stop` before each; false
/// when it said stop (the sleep ended early).
bool sleep_unless(std::chrono::milliseconds d, const std::function<bool()>& stop);

}  // namespace starling
