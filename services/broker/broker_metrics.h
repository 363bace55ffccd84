#pragma once
// The broker's own series, in the process registry that every Starling
// service serves (services/common/metrics.h, prometheus-cpp underneath):
// requests and latency per API, bytes in and out per topic, fsync latency,
// and, refreshed at each scrape, log offsets per partition, committed
// offsets and lag per group and partition, and open connections.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "services/common/metrics.h"

namespace starling::broker {

/// Kafka's name of an API key ("Produce", "Fetch"...), or "Unknown".
std::string_view api_name(int16_t api_key);

class BrokerMetrics {
 public:
  /// One request of `api_key` at `version` answered `seconds` after its
  /// frame was read (a Fetch's long poll and a JoinGroup's wait included, as
  /// Kafka's TotalTimeMs). Requests that do not decode count under their key
  /// too. starling_broker_requests_total counts them per API and version (as
  /// Kafka's RequestsPerSec{request,version}): which versions the clients in
  /// use negotiate. A version the broker does not serve counts as "other".
  void request(int16_t api_key, int16_t version, double seconds);
  /// Record bytes appended to `topic` (duplicates of an idempotent retry not).
  void bytes_in(const std::string& topic, uint64_t n);
  /// Record bytes a Fetch returned from `topic`.
  void bytes_out(const std::string& topic, uint64_t n);

 private:
  struct TopicCounters {
    Counter* in = nullptr;
    Counter* out = nullptr;
  };
  TopicCounters& topic(const std::string& name);

  std::array<Histogram*, 128> request_seconds_{};
  std::unordered_map<int32_t, Counter*> requests_;  // key << 16 | version slot
  std::unordered_map<std::string, TopicCounters> topics_;
};

/// fdatasync latency, one observation per group commit (of one or more files).
Histogram& fsync_seconds();

}  // namespace starling::broker
