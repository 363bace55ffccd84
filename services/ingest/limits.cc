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
    if (devices_.size() + events_by_device.size() > max_devices_) {
      // Full buckets carry no state (a new one starts full): forget them.
      std::erase_if(devices_, [now](const auto& kv) { return kv.second.full(now); });
    }
    for (const auto& [device, n] : events_by_device) {
      auto& b = devices_.try_emplace(pipeline + "/" + device, device_, now).first->second;
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

}  // namespace starling::ingest
