#include "services/extract/fake_api_cli.h"

#include <fmt/format.h>

#include <charconv>
#include <cstdio>

#include "services/common/files.h"
#include "services/common/shutdown.h"
#include "services/common/time.h"

namespace starling::extract {
namespace {

constexpr int64_t kHourMs = 3'600'000;

}  // namespace

CLI::App* add_fake_weather_command(CLI::App& parent, FakeWeatherFlags& f) {
  auto* weather = parent.add_subcommand(
      "weather",
      "Hourly observations of N stations in US units, generated from a seed (nothing is downloaded): GET "
      "/geojson/observations (paginated FeatureCollection) and GET /openmeteo/hourly (parallel arrays), each with "
      "?start=&end= (RFC 3339). Serves until Ctrl-C (SIGINT or SIGTERM).\n"
      "  weather --listen 127.0.0.1:8089 --stations 10   (what pipelines/weather.yaml polls by default)");
  auto& o = f.api;
  weather->add_option("--listen", f.listen, "host:port; port 0 picks one")->capture_default_str();
  weather->add_option("--port-file", f.port_file, "Written with the bound port");
  weather->add_option("--stations", o.stations, "Stations (KAAA, KAAB, ...)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  weather->add_option("--seed", o.seed, "Same seed, same readings")->capture_default_str();
  weather
      ->add_option("--first-hour", f.first_hour,
                   "The first hour with data: RFC 3339, or a duration back from the current hour (48h)")
      ->capture_default_str();
  weather->add_option("--hours", o.hours, "Hours of data from --first-hour")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  weather->add_option("--page-size", o.page_size, "Features per GeoJSON page")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  weather->add_option("--throttle-every", o.throttle_every, "Every K-th request: 429 with Retry-After");
  weather->add_option("--retry-after", o.retry_after_s, "Seconds in Retry-After")->capture_default_str();
  weather->add_option("--error-every", o.error_every, "Every K-th request: 503");
  weather->add_option("--malformed-every", o.malformed_every, "Every K-th request: a 200 with a cut-off body");
  weather->add_option("--duplicate-every", o.duplicate_every, "Every K-th observation is served twice");
  weather->add_option("--gap-every", o.gap_every, "Every K-th observation is missing");
  weather->add_option("--slow-ms", o.slow_ms, "Milliseconds each answer waits");
  weather->add_option("--request-log", o.request_log, "JSON lines, one per request");
  return weather;
}

Result<int64_t> fake_first_hour_ms(const std::string& value, int64_t now_ms) {
  if (const auto back = parse_duration_ms(value)) return (now_ms / kHourMs) * kHourMs - *back;
  auto t = parse_time_ms(value);
  if (!t) {
    return fail(Errc::kInvalidArgument,
                fmt::format("--first-hour: expected RFC 3339 or a duration like 48h, got '{}'", value));
  }
  return *t;
}

int run_fake_weather(const FakeWeatherFlags& f, const std::string& program) {
  FakeApiOptions o = f.api;
  const auto colon = f.listen.rfind(':');
  int port = -1;
  if (colon != std::string::npos) {
    const auto* end = f.listen.data() + f.listen.size();
    const auto [ptr, ec] = std::from_chars(f.listen.data() + colon + 1, end, port);
    if (ec != std::errc() || ptr != end || port > 65535) port = -1;
  }
  if (colon == std::string::npos || colon == 0 || port < 0) {
    fmt::print(stderr, "error: --listen: expected host:port, got '{}'\n", f.listen);
    return 2;
  }
  o.address = f.listen.substr(0, colon);
  o.port = static_cast<uint16_t>(port);
  auto first = fake_first_hour_ms(f.first_hour, now_ms());
  if (!first) {
    fmt::print(stderr, "error: {}\n", first.error().message);
    return 2;
  }
  o.first_hour_ms = *first;
  FakeWeatherApi api(o);
  try {
    api.start();
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: cannot serve on {}: {}\n", program, f.listen, e.what());
    return 1;
  }
  if (!f.port_file.empty()) {
    if (auto st = write_file_atomically(f.port_file, std::to_string(api.port()) + "\n"); !st) {
      fmt::print(stderr, "error: {}\n", st.error().message);
      return 1;
    }
  }
  fmt::print("fake weather API on {} ({} stations, {} hours from {})\n", api.base_url(), o.stations, o.hours,
             rfc3339_trimmed(o.first_hour_ms));
  std::fflush(stdout);
  wait_for_shutdown();
  api.stop();
  return 0;
}

}  // namespace starling::extract
