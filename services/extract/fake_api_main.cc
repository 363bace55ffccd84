// starling-fake-api: simulated external APIs for tests and the offline demo.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <thread>

#include "services/common/files.h"
#include "services/common/shutdown.h"
#include "services/common/time.h"
#include "services/extract/fake_weather_api.h"

int main(int argc, char** argv) try {
  using namespace starling;
  CLI::App app{"starling-fake-api: simulated external APIs (generated data, nothing downloaded)"};
  app.require_subcommand(1);
  auto* weather = app.add_subcommand(
      "weather",
      "Hourly observations of N stations in US units: GET /geojson/observations (paginated "
      "FeatureCollection) and GET /openmeteo/hourly (parallel arrays), each with ?start=&end= (RFC 3339)");
  extract::FakeApiOptions o;
  std::string listen = "127.0.0.1:0";
  std::string port_file;
  std::string first = "2026-01-01T00:00:00Z";
  weather->add_option("--listen", listen, "host:port; port 0 picks one")->capture_default_str();
  weather->add_option("--port-file", port_file, "Written with the bound port");
  weather->add_option("--stations", o.stations, "Stations (KAAA, KAAB, ...)")->capture_default_str();
  weather->add_option("--seed", o.seed, "Same seed, same readings")->capture_default_str();
  weather->add_option("--first-hour", first, "The first hour with data (RFC 3339)")->capture_default_str();
  weather->add_option("--hours", o.hours, "Hours of data from --first-hour")->capture_default_str();
  weather->add_option("--page-size", o.page_size, "Features per GeoJSON page")->capture_default_str();
  weather->add_option("--throttle-every", o.throttle_every, "Every K-th request: 429 with Retry-After");
  weather->add_option("--retry-after", o.retry_after_s, "Seconds in Retry-After")->capture_default_str();
  weather->add_option("--error-every", o.error_every, "Every K-th request: 503");
  weather->add_option("--malformed-every", o.malformed_every, "Every K-th request: a 200 with a cut-off body");
  weather->add_option("--duplicate-every", o.duplicate_every, "Every K-th observation is served twice");
  weather->add_option("--gap-every", o.gap_every, "Every K-th observation is missing");
  weather->add_option("--slow-ms", o.slow_ms, "Milliseconds each answer waits");
  weather->add_option("--request-log", o.request_log, "JSON lines, one per request");
  CLI11_PARSE(app, argc, argv);
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    fmt::print(stderr, "error: --listen: expected host:port, got {}\n", listen);
    return 2;
  }
  o.address = listen.substr(0, colon);
  o.port = static_cast<uint16_t>(std::stoi(listen.substr(colon + 1)));
  auto t = parse_time_ms(first);
  if (!t) {
    fmt::print(stderr, "error: --first-hour: {}\n", t.error().message);
    return 2;
  }
  o.first_hour_ms = *t;
  install_shutdown_handler();
  extract::FakeWeatherApi api(o);
  api.start();
  if (!port_file.empty()) {
    if (auto st = write_file_atomically(port_file, std::to_string(api.port()) + "\n"); !st) {
      fmt::print(stderr, "error: {}\n", st.error().message);
      return 1;
    }
  }
  fmt::print("fake weather API on {} ({} stations, {} hours from {})\n", api.base_url(), o.stations, o.hours, first);
  std::fflush(stdout);
  wait_for_shutdown();
  api.stop();
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "starling-fake-api: {}\n", e.what());
  return 1;
}
