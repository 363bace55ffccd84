#pragma once

namespace starling {

/// Installs SIGINT/SIGTERM handlers that only set a flag; loops poll it and
/// drain, commit and exit within their bound (graceful shutdown).
void install_shutdown_handler();
bool shutdown_requested();
/// Blocks until a shutdown signal arrives.
void wait_for_shutdown();
/// Sets the flag from code (tests, fatal errors in a worker thread).
void request_shutdown();

}  // namespace starling
