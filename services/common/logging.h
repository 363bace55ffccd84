#pragma once
#include <spdlog/formatter.h>

#include <memory>
#include <string>

namespace starling {

/// Sets up spdlog for a service: one line per lifecycle event on stderr,
/// prefixed with the service name. `level` is trace|debug|info|warn|error|off;
/// `format` is text (for people) or json (one object per line for log
/// shippers: {"ts","level","service","msg"}). A bad value throws
/// std::invalid_argument naming the flag (startup only).
/// The formatter behind --log-format json (exposed for tests).
std::unique_ptr<spdlog::formatter> make_json_formatter();

void setup_logging(const std::string& service, const std::string& level, const std::string& format = "text");

}  // namespace starling
