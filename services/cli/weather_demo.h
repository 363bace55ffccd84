#pragma once
// `starling demo` for a pipeline that pulls its records (a `source:
// http_poll:` block, pipelines/weather.yaml): the fake weather API in this
// process on a free loopback port, the stack (extract, clean, load, saga)
// polling it, and a consistency report against every observation the API has.

#include <cstdint>
#include <string>

#include "services/common/pipeline.h"
#include "services/supervisor/stack.h"

namespace starling::cli {

struct WeatherDemoOptions {
  int stations = 10;
  int hours = 24;  // ending at the current hour
  int page_size = 50;
  uint64_t seed = 1;
  int settle_s = 120;  // how long the whole range has to be loaded or rejected
};

/// The variables pipelines/weather.yaml's source reads: the API's host:port
/// and the first window's start.
inline constexpr const char* kWeatherApiVar = "WEATHER_API";
inline constexpr const char* kWeatherStartVar = "WEATHER_API_START";

/// Why `p` (loaded from `file`) cannot have the weather demo, or "" when it
/// can: it must pull (a source) starling.v1.WeatherObservation records.
std::string weather_demo_refusal(const PipelineConfig& p, const std::string& file);

/// Runs the demo on the first of stack_opts.pipeline_files (the others run
/// beside it). Exit code: 0 CONSISTENT; 1 not, or the stack or the API
/// failed; 2 a pipeline the demo cannot feed (the message names its file).
int cmd_weather_demo(supervisor::StackOptions stack_opts, const WeatherDemoOptions& o);

}  // namespace starling::cli
