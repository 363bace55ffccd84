#pragma once
// A simulated weather API for tests and the offline demo (`starling-fake-api
// weather`): hourly observations of N stations in US units, generated from a
// seed (the same seed gives the same readings, nothing is downloaded), in two
// shapes, with faults switched on by options and a log of every request.
//
//   GET /geojson/observations?start=T&end=T[&page=K]   a national weather
//       service's shape: {"type":"FeatureCollection","features":[{"properties":
//       {"station","timestamp","temperature_f",...}}],"pagination":{"next":URL|null}}
//   GET /openmeteo/hourly?start=T&end=T                Open-Meteo's shape:
//       {"hourly":{"time":[...],"station":[...],"temperature_2m":[...],...}}
//
// An hour of a station exists when start <= hour < min(end, first + hours).

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "services/common/error.h"
#include "services/common/http.h"

namespace starling::extract {

struct FakeApiOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 0;
  int stations = 3;
  uint64_t seed = 1;
  int64_t first_hour_ms = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
  int hours = 48;                             // hours of data from first_hour_ms
  int page_size = 50;                         // features per GeoJSON page
  // Faults, each every K-th request (0: never), counted over all requests.
  int throttle_every = 0;  // 429 with Retry-After: retry_after_s
  int retry_after_s = 1;
  int error_every = 0;      // 503
  int malformed_every = 0;  // a 200 whose body is cut off
  int duplicate_every = 0;  // every K-th observation (by index) is served twice
  int gap_every = 0;        // every K-th observation is missing
  int slow_ms = 0;          // each answer waits this long (a page in flight, for kill tests)
  std::string request_log;  // JSON lines: {"n","path","query","status","t_ms"}
};

/// One generated observation, as the API serves it (US units).
struct FakeObservation {
  std::string station;  // KAAA, KAAB, ...
  int64_t time_ms = 0;
  double temperature_f = 0;
  double humidity_pct = 0;
  double wind_mph = 0;
  double pressure_inhg = 0;
  double precipitation_in = 0;
  std::string sky;
};

class FakeWeatherApi {
 public:
  explicit FakeWeatherApi(FakeApiOptions options);
  ~FakeWeatherApi();
  FakeWeatherApi(const FakeWeatherApi&) = delete;
  FakeWeatherApi& operator=(const FakeWeatherApi&) = delete;

  /// Binds and serves; throws when the address cannot be bound.
  void start();
  void stop();
  uint16_t port() const;
  std::string base_url() const;

  /// Every observation with start <= time < end, in (time, station) order,
  /// gaps left out and duplicates not repeated: what a client should end up with.
  std::vector<FakeObservation> observations(int64_t start_ms, int64_t end_ms) const;
  /// The requests served so far, as the request log writes them.
  std::vector<nlohmann::json> requests() const;

 private:
  HttpResponse handle(const HttpRequest& r);

  FakeApiOptions options_;
  std::unique_ptr<HttpServer> server_;
  std::atomic<uint64_t> count_{0};
  mutable std::mutex mu_;
  std::vector<nlohmann::json> log_;
};

}  // namespace starling::extract
