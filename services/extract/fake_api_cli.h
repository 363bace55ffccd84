#pragma once
// The command line of the fake weather API, defined once: `starling-fake-api
// weather` (fake_api_main.cc) and `starling fake-api weather` (services/cli)
// add the same subcommand with the same flags and run it the same way.

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "services/common/error.h"
#include "services/extract/fake_weather_api.h"

namespace starling::extract {

struct FakeWeatherFlags {
  FakeApiOptions api;
  std::string listen = "127.0.0.1:0";
  std::string port_file;
  // 48 hours ending at the current hour: recent enough for weather.yaml's
  // clean rules (they refuse readings older than 7 days).
  std::string first_hour = "48h";
};

/// Adds the `weather` subcommand and its flags to `parent`; returns it.
CLI::App* add_fake_weather_command(CLI::App& parent, FakeWeatherFlags& flags);

/// --first-hour: RFC 3339, or a duration back from the start of the hour of
/// `now_ms` ("48h": the data ends at the current hour).
Result<int64_t> fake_first_hour_ms(const std::string& value, int64_t now_ms);

/// Binds --listen, writes --port-file, prints the address and serves until
/// SIGINT or SIGTERM (the caller installs the shutdown handler). The exit
/// code: 0 stopped, 1 could not bind or write the port file, 2 a bad value.
int run_fake_weather(const FakeWeatherFlags& flags, const std::string& program);

}  // namespace starling::extract
