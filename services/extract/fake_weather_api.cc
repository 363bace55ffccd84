#include "services/extract/fake_weather_api.h"

#include <fmt/format.h>
#include <google/protobuf/stubs/strutil.h>

#include <array>
#include <cmath>
#include <fstream>
#include <numbers>
#include <thread>

#include "services/common/ids.h"
#include "services/common/text.h"
#include "services/common/time.h"

namespace starling::extract {

namespace {

using nlohmann::json;
constexpr int64_t kHourMs = 3'600'000;

std::string station_name(int i) {
  return fmt::format("K{}{}{}", static_cast<char>('A' + (i / 676) % 26), static_cast<char>('A' + (i / 26) % 26),
                     static_cast<char>('A' + i % 26));
}

// A deterministic number in [0, 1) for (seed, station, hour, what).
double noise(uint64_t seed, int station, int64_t hour, std::string_view what) {
  StableHash h;
  h.add(fmt::format("{}/{}/{}/", seed, station, hour)).add(what);
  return static_cast<double>(h.value() >> 11) / static_cast<double>(1ULL << 53);
}

double round_to(double v, int decimals) {
  const double f = std::pow(10.0, decimals);
  return std::round(v * f) / f;
}

}  // namespace

FakeWeatherApi::FakeWeatherApi(FakeApiOptions options) : options_(std::move(options)) {}
FakeWeatherApi::~FakeWeatherApi() { stop(); }

void FakeWeatherApi::start() {
  HttpServerOptions o;
  o.address = options_.address;
  o.port = options_.port;
  o.threads = 2;
  o.tls = options_.tls;
  server_ =
      std::make_unique<HttpServer>(o, [this](const HttpRequest& r, const HttpResponder& done) { done(handle(r)); });
  server_->start();
}

void FakeWeatherApi::stop() {
  if (server_) server_->stop();
}

uint16_t FakeWeatherApi::port() const { return server_ ? server_->port() : 0; }
std::string FakeWeatherApi::base_url() const {
  return fmt::format("{}://{}:{}", options_.tls.enabled() ? "https" : "http", options_.address, port());
}

std::vector<FakeObservation> FakeWeatherApi::observations(int64_t start_ms, int64_t end_ms) const {
  std::vector<FakeObservation> out;
  const int64_t last = options_.first_hour_ms + options_.hours * kHourMs;
  static constexpr std::array<const char*, 6> kSky = {"CLEAR", "PARTLY_CLOUDY", "OVERCAST", "RAIN", "SNOW", "FOG"};
  for (int64_t t = options_.first_hour_ms; t < last; t += kHourMs) {
    if (t < start_ms || t >= end_ms) continue;
    const int64_t hour = (t - options_.first_hour_ms) / kHourMs;
    for (int s = 0; s < options_.stations; ++s) {
      const int64_t index = hour * options_.stations + s;
      if (options_.gap_every > 0 && (index + 1) % options_.gap_every == 0) continue;
      FakeObservation o;
      o.station = station_name(s);
      o.time_ms = t;
      const double day = std::sin(2 * std::numbers::pi * static_cast<double>((t / kHourMs) % 24) / 24);
      o.temperature_f = round_to(45 + 3 * s + 12 * day + 6 * noise(options_.seed, s, hour, "t"), 1);
      o.humidity_pct = round_to(40 + 50 * noise(options_.seed, s, hour, "h"), 0);
      o.wind_mph = round_to(25 * noise(options_.seed, s, hour, "w"), 1);
      o.pressure_inhg = round_to(29.5 + noise(options_.seed, s, hour, "p"), 2);
      const double rain = noise(options_.seed, s, hour, "r");
      o.precipitation_in = rain > 0.8 ? round_to((rain - 0.8) * 2, 2) : 0;
      o.sky = kSky.at(static_cast<std::size_t>(noise(options_.seed, s, hour, "s") * kSky.size()));
      out.push_back(std::move(o));
    }
  }
  return out;
}

std::vector<json> FakeWeatherApi::requests() const {
  std::lock_guard lock(mu_);
  return log_;
}

HttpResponse FakeWeatherApi::handle(const HttpRequest& r) {
  const auto n = ++count_;
  HttpResponse res;
  auto every = [n](int k) { return k > 0 && n % static_cast<uint64_t>(k) == 0; };
  auto query = [&r](const std::string& k) {
    auto it = r.query.find(k);
    return it == r.query.end() ? std::string{} : it->second;
  };
  const bool geo = r.path == "/geojson/observations";
  const bool meteo = r.path == "/openmeteo/hourly";
  const bool token = r.path == "/oauth/token" && !options_.client_id.empty();
  if (options_.slow_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(options_.slow_ms));
  // A bearer token this API issued and that has not expired.
  auto authorized = [&] {
    if (options_.client_id.empty()) return true;
    const auto h = r.header("authorization");
    if (!h.starts_with("Bearer ")) return false;
    std::lock_guard lock(mu_);
    auto it = tokens_.find(h.substr(7));
    return it != tokens_.end() && it->second > now_ms();
  };
  if (!geo && !meteo && !token) {
    res = json_error(404, "not_found", "GET /geojson/observations or /openmeteo/hourly");
  } else if (down_) {
    res = json_error(503, "unavailable", "the API is down");
  } else if (token) {
    std::string basic;
    // RFC 6749 2.3.1: each part form-encoded before Basic, as a conforming server reads it.
    google::protobuf::Base64Escape(url_encode(options_.client_id) + ":" + url_encode(options_.client_secret), &basic);
    if (r.method != "POST" || r.body.find("grant_type=client_credentials") == std::string::npos) {
      res = json_error(400, "unsupported_grant_type", "POST grant_type=client_credentials");
    } else if (r.header("authorization") != "Basic " + basic) {
      res = json_error(401, "invalid_client", "unknown client or wrong secret");
    } else {
      const auto t = fmt::format("t{}-{}", ++tokens_issued_, random_id().substr(0, 8));
      {
        std::lock_guard lock(mu_);
        tokens_[t] = now_ms() + options_.token_ttl_s * 1000LL;
      }
      res.body = json{{"access_token", t}, {"token_type", "Bearer"}, {"expires_in", options_.token_ttl_s}}.dump();
    }
  } else if (!options_.api_key.empty() && query("api_key") != options_.api_key) {
    res = json_error(401, "unauthorized", "a valid api_key is required");
  } else if (!authorized()) {
    res = json_error(401, "invalid_token", "a valid bearer token is required");
  } else if (every(options_.throttle_every)) {
    res = json_error(429, "rate_limited", "too many requests");
    res.headers.emplace_back("Retry-After", std::to_string(options_.retry_after_s));
  } else if (every(options_.error_every)) {
    res = json_error(503, "unavailable", "the station network is down for maintenance");
  } else {
    auto start = parse_time_ms(query("start"));
    auto end = parse_time_ms(query("end"));
    if (!start || !end) {
      res = json_error(400, "bad_request", "start and end must be RFC 3339 times");
    } else {
      auto obs = observations(*start, *end);
      if (const auto station = query("station"); !station.empty()) {
        std::erase_if(obs, [&station](const FakeObservation& o) { return o.station != station; });
      }
      if (options_.duplicate_every > 0) {
        std::vector<FakeObservation> with;
        for (std::size_t i = 0; i < obs.size(); ++i) {
          with.push_back(obs[i]);
          if ((i + 1) % static_cast<std::size_t>(options_.duplicate_every) == 0) with.push_back(obs[i]);
        }
        obs = std::move(with);
      }
      json body;
      if (geo) {
        auto number = [&](const std::string& k, std::size_t otherwise) {
          try {
            return query(k).empty() ? otherwise : std::stoul(query(k));
          } catch (const std::exception&) {
            return otherwise;
          }
        };
        const bool by_offset = !query("offset").empty();
        const auto size = by_offset ? number("limit", static_cast<std::size_t>(std::max(1, options_.page_size)))
                                    : number("per_page", static_cast<std::size_t>(std::max(1, options_.page_size)));
        const std::size_t page = by_offset ? 0 : number("page", 0);
        const std::size_t from = by_offset ? number("offset", 0) : page * size;
        json features = json::array();
        for (std::size_t i = from; i < std::min(obs.size(), from + size); ++i) {
          const auto& o = obs[i];
          features.push_back({{"type", "Feature"},
                              {"geometry", {{"type", "Point"}, {"coordinates", {-71.0, 42.3}}}},
                              {"properties",
                               {{"station", o.station},
                                {"timestamp", rfc3339_trimmed(o.time_ms)},
                                {"temperature_f", o.temperature_f},
                                {"relative_humidity", o.humidity_pct},
                                {"wind_speed_mph", o.wind_mph},
                                {"pressure_inhg", o.pressure_inhg},
                                {"precipitation_in", o.precipitation_in},
                                {"sky", o.sky}}}});
        }
        json next = nullptr;
        if (!by_offset && (page + 1) * size < obs.size()) {
          // The request's own parameters but the page (and a key, which a
          // client adds itself), as APIs write their next links.
          std::string q = fmt::format("page={}", page + 1);
          for (const auto& [k, v] : r.query) {
            if (k != "page" && k != "api_key") q += "&" + url_encode(k) + "=" + url_encode(v);
          }
          next = fmt::format("{}/geojson/observations?{}", base_url(), q);
        }
        body = {{"type", "FeatureCollection"}, {"features", features}, {"pagination", {{"next", next}}}};
      } else {
        json hourly = {{"time", json::array()},           {"station", json::array()},
                       {"temperature_2m", json::array()}, {"relative_humidity_2m", json::array()},
                       {"wind_speed_10m", json::array()}, {"surface_pressure", json::array()},
                       {"precipitation", json::array()},  {"sky", json::array()}};
        for (const auto& o : obs) {
          hourly["time"].push_back(rfc3339_trimmed(o.time_ms));
          hourly["station"].push_back(o.station);
          hourly["temperature_2m"].push_back(o.temperature_f);
          hourly["relative_humidity_2m"].push_back(o.humidity_pct);
          hourly["wind_speed_10m"].push_back(o.wind_mph);
          hourly["surface_pressure"].push_back(o.pressure_inhg);
          hourly["precipitation"].push_back(o.precipitation_in);
          hourly["sky"].push_back(o.sky);
        }
        body = {{"latitude", 42.3},
                {"longitude", -71.0},
                {"hourly_units", {{"temperature_2m", "°F"}, {"wind_speed_10m", "mph"}, {"precipitation", "inch"}}},
                {"hourly", hourly}};
      }
      res.body = body.dump();
      if (every(options_.malformed_every)) res.body.resize(res.body.size() / 2);
    }
  }
  json entry = {{"n", n}, {"t_ms", now_ms()}, {"path", r.path}, {"query", r.query}, {"status", res.status}};
  std::lock_guard lock(mu_);
  log_.push_back(entry);
  if (!options_.request_log.empty()) {
    std::ofstream(options_.request_log, std::ios::app) << entry.dump() << '\n';
  }
  return res;
}

}  // namespace starling::extract
