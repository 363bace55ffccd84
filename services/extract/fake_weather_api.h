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
//   POST /oauth/token                                  OAuth2 client credentials
//       (HTTP Basic), when client_id is set: {"access_token","expires_in"}
//
// Both data paths take station=NAME (that station only). GeoJSON pages: by
// its own next links (page=K, from 0, page_size features), by page number
// (page=K&per_page=N), or by offset (offset=K&limit=N; no next link then).
// With api_key set, a data request without ?api_key=KEY gets 401; with
// client_id set, one without a valid unexpired bearer token gets 401.
//
// An hour of a station exists when start <= hour < min(end, first + hours).

#include <atomic>
#include <cstdint>
#include <map>
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
  TlsOptions tls;           // serve https:// (base_url says so)
  std::string api_key;      // required as ?api_key= on data requests
  std::string client_id;    // OAuth2: these credentials get tokens at POST /oauth/token
  std::string client_secret;
  int token_ttl_s = 3600;  // a token's expires_in
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
  /// While down, every request gets 503 (the API is out).
  void set_down(bool down) { down_ = down; }
  /// Tokens issued so far.
  int tokens_issued() const { return tokens_issued_; }
  /// Forgets every token issued (a revocation, or the server restarted):
  /// requests with one get 401.
  void revoke_tokens() {
    std::lock_guard lock(mu_);
    tokens_.clear();
  }

 private:
  HttpResponse handle(const HttpRequest& r);

  FakeApiOptions options_;
  std::unique_ptr<HttpServer> server_;
  std::atomic<uint64_t> count_{0};
  std::atomic<bool> down_{false};
  std::atomic<int> tokens_issued_{0};
  std::map<std::string, int64_t> tokens_;  // token -> expiry (Unix ms), under mu_
  mutable std::mutex mu_;
  std::vector<nlohmann::json> log_;
};

}  // namespace starling::extract
