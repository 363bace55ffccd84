#include "services/ingest/limits.h"

#include <algorithm>
#include <vector>

namespace starling::ingest {

void TokenBucket::refill(Clock::time_point now) const {
  if (now <= last_) return;
  const double secs = std::chrono::duration<double>(now - last_).count();
  tokens_ = std::min(rate_.burst, tokens_ + secs * rate_.per_s);
  last_ = now;
}

double TokenBucket::wait_for(double n, Clock::time_point now) const {
  refill(now);
  const double need = std::min(n, rate_.burst);
  if (tokens_ >= need) return 0;
  return (need - tokens_) / rate_.per_s;
}

bool TokenBucket::full(Clock::time_point now) const {
  refill(now);
  return tokens_ >= rate_.burst;
}

void BucketTable::begin(Clock::time_point now) {
  ++request_;
  now_ = now;
  // A bucket still in debt at the cold end would hide the full ones behind
  // it: it moves to the warm end (at most two a request, so this stays O(1)).
  for (int moved = 0; !lru_.empty();) {
    if (map_.at(*lru_.back()).bucket.full(now)) {
      map_.erase(*lru_.back());
      lru_.pop_back();
    } else if (++moved <= 2) {
      lru_.splice(lru_.begin(), lru_, std::prev(lru_.end()));
    } else {
      break;
    }
  }
}

TokenBucket& BucketTable::get(const std::string& name, Rate rate) {
  if (auto it = map_.find(name); it != map_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    it->second.request = request_;
    return it->second.bucket;
  }
  if (map_.size() >= capacity_ && !lru_.empty()) {
    if (auto coldest = map_.find(*lru_.back()); coldest->second.request != request_) {
      evicted_ += coldest->second.bucket.full(now_) ? 0 : 1;
      map_.erase(coldest);
      lru_.pop_back();
    }
  }
  auto it = map_.emplace(name, Entry{TokenBucket(rate, now_), {}, request_}).first;
  lru_.push_front(&it->first);
  it->second.lru = lru_.begin();
  return it->second.bucket;
}

double RateLimiter::admit(const ApiKey* key, const std::string& pipeline,
                          const std::map<std::string, double>& events_by_device, std::string& who,
                          Clock::time_point now) {
  double total = 0;
  for (const auto& [d, n] : events_by_device) total += n;
  std::lock_guard lock(mu_);
  TokenBucket* key_bucket = nullptr;
  if (key != nullptr && key->rate.per_s > 0) {
    key_bucket = &keys_.try_emplace(key->name, key->rate, now).first->second;
    if (const double w = key_bucket->wait_for(total, now); w > 0) {
      who = "api key '" + key->name + "'";
      return w;
    }
  }
  std::vector<TokenBucket*> device_buckets;
  if (device_.per_s > 0) {
    devices_.begin(now);
    device_buckets.reserve(events_by_device.size());
    for (const auto& [device, n] : events_by_device) {
      std::string bucket = pipeline;
      bucket += '/';
      bucket += device;
      auto& b = devices_.get(bucket, device_);
      if (const double w = b.wait_for(n, now); w > 0) {
        who = "device '" + device + "'";
        return w;
      }
      device_buckets.push_back(&b);
    }
  }
  if (key_bucket != nullptr) key_bucket->take(total);
  std::size_t i = 0;
  for (const auto& [device, n] : events_by_device) {
    if (i < device_buckets.size()) device_buckets[i++]->take(n);
  }
  return 0;
}

std::size_t RateLimiter::tracked_devices() const {
  std::lock_guard lock(mu_);
  return devices_.size();
}

uint64_t RateLimiter::evicted_devices() const {
  std::lock_guard lock(mu_);
  return devices_.evicted();
}

}  // namespace starling::ingest
