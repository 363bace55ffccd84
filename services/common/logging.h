#pragma once
#include <string>

namespace starling {

/// Sets up spdlog for a service: one line per lifecycle event on stderr,
/// prefixed with the service name. `level` is trace|debug|info|warn|error|off;
/// an unknown level throws std::invalid_argument (startup only).
void setup_logging(const std::string& service, const std::string& level);

}  // namespace starling
