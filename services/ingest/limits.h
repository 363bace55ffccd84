#pragma once
// Token buckets: one per API key (from the keys file) and one per device
// (from --device-rate), both counted in events.

#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

#include "services/common/api_keys.h"

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

/// Buckets by name, each found in O(1), at most `capacity` of them. A bucket
/// that has refilled to full carries no state (a new one starts full), so
/// full ones are dropped from the least recently used end, each once (O(1)
/// amortized, never a scan; one still in debt there moves to the warm end). When a new name finds the table at capacity
/// (that many devices in debt within their refill time), the least recently
/// used bucket is dropped anyway: that device may burst once more, and memory
/// stays bounded (`evicted()` counts it). Buckets got since the last begin()
/// are never dropped, so one request's buckets stay valid while it is decided
/// (the table may exceed its capacity by one request's devices).
class BucketTable {
 public:
  explicit BucketTable(std::size_t capacity) : capacity_(capacity) {}
  /// Starts a request at `now`: drops the full buckets at the cold end.
  /// Buckets got since the previous begin() may be dropped from now on.
  void begin(Clock::time_point now);
  /// The bucket for `name`, made (full) if absent; now the most recently used.
  TokenBucket& get(const std::string& name, Rate rate);
  std::size_t size() const { return map_.size(); }
  uint64_t evicted() const { return evicted_; }

 private:
  struct Entry {
    TokenBucket bucket;
    std::list<const std::string*>::iterator lru;
    uint64_t request = 0;  // the begin() that last got it
  };
  std::size_t capacity_;
  std::unordered_map<std::string, Entry> map_;
  std::list<const std::string*> lru_;  // the map's keys (nodes are stable), most recent first
  uint64_t request_ = 0;
  Clock::time_point now_;
  uint64_t evicted_ = 0;
};

class RateLimiter {
 public:
  /// `device`: the per-device rate; per_s 0 turns it off. `max_devices`: the
  /// device buckets kept at most (each about 150 bytes).
  explicit RateLimiter(Rate device, std::size_t max_devices = kMaxTrackedDevices)
      : device_(device), devices_(max_devices) {}
  static constexpr std::size_t kMaxTrackedDevices = 1'000'000;

  /// Grants all or nothing: `events_by_device` of one pipeline under `key`
  /// (nullptr: no key). 0 when granted, else seconds to wait (Retry-After),
  /// with `who` naming the bucket that refused. O(devices in the request).
  double admit(const ApiKey* key, const std::string& pipeline, const std::map<std::string, double>& events_by_device,
               std::string& who, Clock::time_point now = Clock::now());

  std::size_t tracked_devices() const;
  /// Device buckets dropped over capacity while not yet full.
  uint64_t evicted_devices() const;

 private:
  Rate device_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, TokenBucket> keys_;  // one per API key in the keys file: bounded
  BucketTable devices_;                                // "<pipeline>/<device>"
};

}  // namespace starling::ingest
