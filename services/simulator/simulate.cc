#include "services/simulator/simulate.h"

#include <fmt/format.h>

#include <cmath>
#include <random>
#include <thread>

#include "services/common/http.h"
#include "services/common/ids.h"
#include "services/common/time.h"

namespace starling::simulator {

using nlohmann::json;

std::vector<SimEvent> generate_events(const SimOptions& o) {
  std::mt19937_64 rng(o.seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  struct Bike {
    std::string id;
    double lat, lon, battery, odometer, temperature;
    int ride = 0;
  };
  std::vector<Bike> bikes;
  for (int b = 0; b < std::max(1, o.bikes); ++b) {
    // Around Lisbon, where EcoWheels rents its bikes.
    bikes.push_back({fmt::format("bike-{:04d}", b), 38.70 + u(rng) * 0.1, -9.20 + u(rng) * 0.1, 60 + u(rng) * 40,
                     1000 * u(rng), 12 + u(rng) * 10});
  }
  const int64_t start_ms = now_ms() - static_cast<int64_t>(o.events) * 100;
  std::vector<SimEvent> out;
  out.reserve(o.events);
  for (int i = 0; i < o.events; ++i) {
    auto& bike = bikes[static_cast<std::size_t>(i) % bikes.size()];
    if (u(rng) < 0.02) ++bike.ride;
    const double speed = std::max(0.0, 18 + 8 * std::sin(i * 0.1) + 4 * (u(rng) - 0.5));
    bike.lat += (u(rng) - 0.5) * 1e-3;
    bike.lon += (u(rng) - 0.5) * 1e-3;
    bike.battery = std::max(1.0, bike.battery - 0.05);
    bike.odometer += speed / 3600.0;
    SimEvent e;
    e.event_id = fmt::format("{}{}-{:08d}", o.id_prefix, bike.id, i);
    e.record = {{"event_id", e.event_id},
                {"device_id", bike.id},
                {"ride_id", fmt::format("{}-r{}", bike.id, bike.ride)},
                {"event_time", rfc3339_trimmed(start_ms + int64_t{i} * 100)},
                {"lat", bike.lat},
                {"lon", bike.lon},
                {"speed_kmh", speed},
                {"battery_pct", bike.battery},
                {"temperature_c", bike.temperature},
                {"odometer_km", bike.odometer},
                {"status", speed > 1 ? "RIDING" : "PARKED"}};
    if (u(rng) < o.fault_rate) {
      // The faults a real fleet shows: a glitching speed sensor, a battery
      // gauge out of range or silent, and a GPS fix off the planet.
      switch (static_cast<int>(u(rng) * 4)) {
        case 0:
          e.fault = "range:speed_kmh";
          e.record["speed_kmh"] = 180 + u(rng) * 100;
          break;
        case 1:
          e.fault = "range:battery_pct";
          e.record["battery_pct"] = 140.0;
          break;
        case 2:
          e.fault = "required:battery_pct";
          e.record.erase("battery_pct");
          break;
        default:
          e.fault = "range:lat";
          e.record["lat"] = 123.4;
          break;
      }
    }
    if (o.tricky > 0 && u(rng) < o.tricky) {
      const int64_t at = start_ms + int64_t{i} * 100;
      switch (static_cast<int>(u(rng) * 4)) {
        case 0:
          e.record["ride_id"] = fmt::format("räd-\U0001F6B2-{}-ü", bike.ride);
          break;
        case 1:
          e.record["event_time"] = rfc3339_trimmed(at - int64_t{3} * 3'600'000);
          break;
        case 2:
          e.record["event_time"] = rfc3339_trimmed(at - 30'000);
          break;
        default: {
          // A resend from at least one request back: the same event again.
          const auto back = static_cast<std::size_t>(std::max(1, o.batch)) + static_cast<std::size_t>(u(rng) * 100);
          if (out.size() >= back && !out[out.size() - back].fault.starts_with("dedupe")) {
            e = out[out.size() - back];
            e.fault = "dedupe:event_id";
          }
          break;
        }
      }
    }
    out.push_back(std::move(e));
  }
  return out;
}

Result<SimResult> simulate(const SimOptions& o, const std::function<void(uint64_t, uint64_t)>& progress) {
  if (o.batch < 1) return fail(Errc::kInvalidArgument, "--batch: expected at least 1");
  const auto events = generate_events(o);
  SimResult res;
  const auto url = fmt::format("{}/v1/pipelines/{}/events", o.url, o.pipeline);
  const auto t0 = std::chrono::steady_clock::now();
  // One Idempotency-Key per batch, kept across its retries: a retry after a
  // 503 (some events may be in Kafka already) re-sends the same saga.
  const auto run = random_id().substr(0, 12);
  for (std::size_t i = 0; i < events.size(); i += static_cast<std::size_t>(o.batch)) {
    const auto end = std::min(events.size(), i + static_cast<std::size_t>(o.batch));
    json body = json::array();
    for (std::size_t k = i; k < end; ++k) body.push_back(events[k].record);
    const auto payload = body.dump();
    for (int attempt = 0;; ++attempt) {
      auto resp = http_call("POST", url, payload, {{"Idempotency-Key", fmt::format("sim-{}-{}", run, i)}});
      if (resp && resp->status == 202) {
        const auto receipt = json::parse(resp->body);
        res.saga_ids.push_back(receipt.at("saga_id"));
        res.accepted += receipt.at("accepted").get<uint64_t>();
        if (!receipt.at("refused").empty()) {
          return fail(Errc::kInvalidArgument,
                      fmt::format("ingest refused records of a simulated batch: {}", resp->body));
        }
        break;
      }
      const bool retryable = !resp || resp->status == 503 || resp->status == 429 || resp->status == 409;
      if (!retryable || attempt >= o.max_retries) {
        return fail(Errc::kUnavailable,
                    fmt::format("POST {}: {}", url,
                                resp ? fmt::format("{} {}", resp->status, resp->body) : resp.error().message));
      }
      ++res.retries;
      std::this_thread::sleep_for(std::chrono::milliseconds(100 * (attempt + 1)));
    }
    for (std::size_t k = i; k < end; ++k) {
      (events[k].fault.empty() ? res.valid_ids : res.faulty_ids).push_back(events[k].event_id);
      if (!events[k].fault.empty()) ++res.faulty;
    }
    res.sent = end;
    if (progress) progress(res.sent, events.size());
    if (o.rate > 0) {
      const auto due = t0 + std::chrono::microseconds(static_cast<int64_t>(1e6 * static_cast<double>(end) / o.rate));
      std::this_thread::sleep_until(due);
    }
  }
  return res;
}

}  // namespace starling::simulator
