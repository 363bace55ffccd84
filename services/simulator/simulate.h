#pragma once
// A simulated e-bike fleet: rides with realistic telemetry, and a share of
// faulty readings that the ecowheels rules must reject.

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "services/common/error.h"

namespace starling::simulator {

struct SimOptions {
  std::string url = "http://127.0.0.1:8080";
  std::string pipeline = "ecowheels";
  int bikes = 50;
  int events = 2000;
  double rate = 1000;        // events per second, all bikes together; 0: as fast as possible
  int batch = 20;            // events per HTTP request (one saga each)
  double fault_rate = 0.05;  // share of events with a reading the rules reject
  // Share of events made tricky but handled exactly: a ride id beyond ASCII,
  // a reading 3 hours late, one 30 s behind the bike's previous reading, or
  // a resend of an event an earlier request carried (a bike that lost the
  // 202; rejected `dedupe`). 0 draws nothing, so a seed's fleet is unchanged.
  double tricky = 0;
  uint64_t seed = 1;
  int max_retries = 20;   // per request, on 503 or a broken connection
  std::string id_prefix;  // prepended to every event id: two fleets with the same seed stay distinct
};

struct SimEvent {
  std::string event_id;
  std::string fault;  // empty: valid; else which rule it breaks ("dedupe:event_id" for a resend)
  nlohmann::json record;
};

/// Deterministic for a given seed.
std::vector<SimEvent> generate_events(const SimOptions& options);

struct SimResult {
  uint64_t sent = 0;
  uint64_t accepted = 0;
  uint64_t faulty = 0;  // accepted events carrying a fault
  uint64_t retries = 0;
  std::vector<std::string> saga_ids;
  std::vector<std::string> valid_ids;   // event ids that must reach the warehouse
  std::vector<std::string> faulty_ids;  // event ids that must be rejected
};

/// Posts the fleet's events in batches at the given rate. A 503 is retried
/// with the same event ids (idempotent downstream); any other refusal fails.
/// `progress(done, total)` is called after each request.
Result<SimResult> simulate(const SimOptions& options, const std::function<void(uint64_t, uint64_t)>& progress = {});

}  // namespace starling::simulator
