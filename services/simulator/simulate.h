#pragma once
// A simulated e-bike fleet: rides with realistic telemetry, and a share of
// faulty readings that the ecowheels rules must reject, posted open loop:
// requests leave on a fixed schedule over several keep-alive connections,
// and each one's latency counts from when it was due, not from when a
// connection was free to send it (no coordinated omission).

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "services/common/error.h"
#include "services/simulator/histogram.h"

namespace starling::simulator {

struct SimOptions {
  // starling-ingest; several instances comma-separated: connection i posts to
  // the (i mod n)-th, so --connections must be at least n.
  std::string url = "http://127.0.0.1:8080";
  std::string pipeline = "ecowheels";
  int bikes = 50;
  int events = 2000;
  double rate = 1000;        // events per second, all bikes together; 0: as fast as the connections go
  int batch = 20;            // events per HTTP request (one saga each)
  int connections = 1;       // keep-alive connections the requests share
  double fault_rate = 0.05;  // share of events with a reading the rules reject
  // Share of events made tricky but handled exactly: a ride id beyond ASCII,
  // a reading 3 hours late, one 30 s behind the bike's previous reading, or
  // a resend of an event an earlier request carried (a bike that lost the
  // 202; rejected `dedupe`). 0 draws nothing, so a seed's fleet is unchanged.
  double tricky = 0;
  uint64_t seed = 1;
  int max_retries = 20;   // per request, on 503, 429, 409 or a broken connection
  std::string id_prefix;  // prepended to every event id: two fleets with the same seed stay distinct
  // Event times are spaced this far apart, ending about now: 100 ms (the
  // default) keeps 860k events within ecowheels' `max_late: 1d`.
  int event_spacing_ms = 100;
  int timeout_ms = 30'000;  // one attempt's connect + write + answer
  // Stop starting requests this long after the first was due (0: never):
  // a rate past saturation ends instead of queueing for ever. The requests
  // not started are counted in SimResult::unsent.
  double give_up_after_s = 0;
  // Keep every saga id and event id in SimResult (the e2e tests compare them
  // with the warehouse): memory grows with the run. `starling simulate`,
  // `starling demo` and the benches turn it off and keep counts only.
  bool keep_ids = true;
};

struct SimEvent {
  std::string event_id;
  std::string fault;  // empty: valid; else which rule it breaks ("dedupe:event_id" for a resend)
  nlohmann::json record;
};

/// One reading as the fleet produces it, before it becomes JSON.
struct Reading {
  std::string event_id;
  std::string fault;
  std::string device_id;
  std::string ride_id;
  int64_t event_time_ms = 0;
  double lat = 0;
  double lon = 0;
  double speed_kmh = 0;
  std::optional<double> battery_pct;  // nullopt: the gauge is silent (fault required:battery_pct)
  double temperature_c = 0;
  double odometer_km = 0;
  bool riding = false;

  nlohmann::json to_json() const;
  /// Appends the same object as to_json() as JSON text, without building it.
  void append_json(std::string& out) const;
};

/// The fleet's events one at a time, deterministic for a seed (the same
/// events generate_events() returns). Holds O(bikes) state, plus the last
/// batch + 100 readings when `tricky` > 0 (a resend repeats one of those).
class EventStream {
 public:
  explicit EventStream(const SimOptions& options);
  /// The next reading; false once `options.events` were produced.
  bool next(Reading& out);
  uint64_t produced() const { return produced_; }
  uint64_t total() const { return total_; }
  /// Readings and bikes held now (tests: constant in the number of events).
  std::size_t held() const { return bikes_.size() + recent_.size(); }

 private:
  struct Bike {
    std::string id;
    double lat, lon, battery, odometer, temperature;
    int ride = 0;
  };
  SimOptions o_;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> u_{0.0, 1.0};
  std::vector<Bike> bikes_;
  std::deque<Reading> recent_;  // the last recent_cap_ readings, oldest first
  std::size_t recent_cap_ = 0;
  int64_t start_ms_ = 0;
  uint64_t produced_ = 0;
  uint64_t total_ = 0;
};

/// Every event at once (tests and benches that need them all in memory).
std::vector<SimEvent> generate_events(const SimOptions& options);

/// When request `k` (0-based; events k·batch .. k·batch+batch-1) is due,
/// counted from the start of the run: k·batch/rate seconds; 0 when rate is 0.
std::chrono::nanoseconds request_due(uint64_t k, int batch, double rate);

struct SimResult {
  uint64_t sent = 0;      // events of the requests answered 202
  uint64_t accepted = 0;  // as the 202 receipts count them
  uint64_t valid = 0;     // accepted events that must reach the warehouse
  uint64_t faulty = 0;    // accepted events carrying a fault (must be rejected)
  uint64_t sagas = 0;     // 202 receipts: one saga each
  uint64_t requests = 0;  // requests planned
  uint64_t unsent = 0;    // events of requests not started before give_up_after_s
  uint64_t retries = 0;
  uint64_t late_starts = 0;  // requests that started more than 1 ms after they were due
  double seconds = 0;        // from the first request's due time to the last answer
  LatencyHistogram latency;  // each 202, from its request's due time (retries included)
  // Only with SimOptions::keep_ids:
  std::vector<std::string> saga_ids;
  std::vector<std::string> valid_ids;   // event ids that must reach the warehouse
  std::vector<std::string> faulty_ids;  // event ids that must be rejected
};

/// Posts the fleet's events in requests of `batch`, on the schedule of
/// request_due(), over `connections` keep-alive connections (one io thread).
/// A request due while every connection is busy waits for the first free one
/// and its latency still counts from its due time. 503, 429, 409 and a
/// broken connection are retried with the same Idempotency-Key (the same
/// event ids: idempotent downstream), up to max_retries; any other answer
/// fails the run with its status and body. `progress(done, total)` is called
/// after each answered request, with events.
Result<SimResult> simulate(const SimOptions& options, const std::function<void(uint64_t, uint64_t)>& progress = {});

}  // namespace starling::simulator
