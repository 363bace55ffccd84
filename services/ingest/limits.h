#pragma once
// Token buckets: one per API key (from the keys file) and one per device
// (from --device-rate), both counted in events.

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

#include "services/ingest/auth.h"

namespace starling::ingest {

using Clock = std::chrono::steady_clock;

/// `rate` tokens a second up to `burst`. A request of n events passes when
/// the bucket holds min(n, burst) tokens and then takes all n, so a batch
/// bigger than the burst is possible but leaves the bucket in debt.
class TokenBucket {
 public:
  TokenBucket(Rate rate, Clock::time_point now) : rate_(rate), tokens_(rate.burst), last_(now) {}
  /// 0 when granted (and taken); otherwise the seconds until it would be.
  double wait_for(double n, Clock::time_point now) const;
  void take(double n) { tokens_ -= n; }
  bool full(Clock::time_point now) const;

 private:
  void refill(Clock::time_point now) const;
  Rate rate_;
  mutable double tokens_;
  mutable Clock::time_point last_;
};

class RateLimiter {
 public:
  /// `device`: the per-device rate; per_s 0 turns it off.
  explicit RateLimiter(Rate device, std::size_t max_devices = 100'000) : device_(device), max_devices_(max_devices) {}

  /// Grants all or nothing: `events_by_device` of one pipeline under `key`
  /// (nullptr: no key). 0 when granted, else seconds to wait (Retry-After),
  /// with `who` naming the bucket that refused.
  double admit(const ApiKey* key, const std::string& pipeline, const std::map<std::string, double>& events_by_device,
               std::string& who, Clock::time_point now = Clock::now());

  std::size_t tracked_devices() const;

 private:
  Rate device_;
  std::size_t max_devices_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, TokenBucket> keys_;
  std::unordered_map<std::string, TokenBucket> devices_;  // "<pipeline>/<device>"
};

}  // namespace starling::ingest
