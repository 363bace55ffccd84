#pragma once
// The weather pipeline (pipelines/weather.yaml) with a source block pointed
// at a FakeWeatherApi, in either shape: what the extract tests run.

#include <fmt/format.h>

#include <fstream>
#include <sstream>
#include <string>

#include "services/common/pipeline.h"
#include "tests/support/temp_dir.h"

namespace starling::testing {

/// pipelines/weather.yaml without its own source block (which it keeps
/// last), so each test appends the source it wants.
inline std::string weather_yaml() {
  std::ifstream in(source_path("pipelines/weather.yaml"));
  std::stringstream ss;
  ss << in.rdbuf();
  auto text = ss.str();
  if (const auto at = text.find("\nsource:\n"); at != std::string::npos) text.resize(at + 1);
  return text;
}

struct SourceShape {
  bool geojson = true;
  std::string every = "1s";
  std::string window = "6h";
  std::string lookback = "1h";
  std::string start;                                  // RFC 3339
  std::string extra;                                  // more lines of the http_poll block, indented by 4
  std::string url_tail;                               // appended to the GeoJSON url's query
  std::string paginate = "{next: /pagination/next}";  // GeoJSON; "" for none
};

/// weather.yaml plus `source: http_poll:` for the fake API at `base_url`.
inline std::string weather_with_source(const std::string& base_url, const SourceShape& s) {
  std::string block;
  if (s.geojson) {
    block = fmt::format(R"(
source:
  http_poll:
    url: {}/geojson/observations?start=${{since}}&end=${{until}}{}
    every: {}
    window: {}
    lookback: {}
    start: "{}"
    records: /features{}
    map:
      station_id: /properties/station
      observed_at: /properties/timestamp
      air_temperature: /properties/temperature_f
      humidity_pct: /properties/relative_humidity
      wind_speed: /properties/wind_speed_mph
      pressure: /properties/pressure_inhg
      precipitation: /properties/precipitation_in
      sky: /properties/sky
)",
                        base_url, s.url_tail, s.every, s.window, s.lookback, s.start,
                        s.paginate.empty() ? "" : "\n    paginate: " + s.paginate);
  } else {
    block = fmt::format(R"(
source:
  http_poll:
    url: {}/openmeteo/hourly?start=${{since}}&end=${{until}}
    every: {}
    window: {}
    lookback: {}
    start: "{}"
    columns: /hourly
    map:
      station_id: /station
      observed_at: /time
      air_temperature: /temperature_2m
      humidity_pct: /relative_humidity_2m
      wind_speed: /wind_speed_10m
      pressure: /surface_pressure
      precipitation: /precipitation
      sky: /sky
)",
                        base_url, s.every, s.window, s.lookback, s.start);
  }
  return weather_yaml() + block + s.extra;
}

/// What parse_pipeline refused in `yaml` ("" when it loads).
inline std::string problems_of(const std::string& yaml) {
  try {
    (void)parse_pipeline(yaml, "w.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return {};
}

}  // namespace starling::testing
