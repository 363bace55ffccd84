#include "services/ingest/idempotency.h"

#include "services/common/api_keys.h"

namespace starling::ingest {

std::string derived_saga_id(const std::string& scope, const std::string& pipeline, const std::string& key) {
  std::string material = "starling-idempotency";
  for (const auto* part : {&scope, &pipeline, &key}) {
    material += '\0';
    material += *part;
  }
  const auto h = sha256(material);
  return hex(h.data(), 16);
}

void IdempotencyCache::expire(std::chrono::steady_clock::time_point now) {
  while (!order_.empty() && (order_.front().first <= now || order_.size() > max_)) {
    auto it = entries_.find(order_.front().second);
    // Only a finished entry whose expiry is this one goes; a re-begun key has a later one.
    if (it != entries_.end() && it->second.done && it->second.expires == order_.front().first) entries_.erase(it);
    order_.pop_front();
  }
}

IdempotencyCache::Begin IdempotencyCache::begin(const std::string& id, const std::string& body_hash,
                                                HttpResponse& answer) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  expire(now);
  auto [it, inserted] = entries_.try_emplace(id);
  if (inserted) {
    it->second.body_hash = body_hash;
    return Begin::kFresh;
  }
  if (it->second.body_hash != body_hash) return Begin::kMismatch;
  if (!it->second.done) return Begin::kInFlight;
  answer = it->second.answer;
  return Begin::kReplay;
}

void IdempotencyCache::finish(const std::string& id, const HttpResponse& answer) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  if (answer.status != 202) {
    entries_.erase(it);
    return;
  }
  it->second.done = true;
  it->second.answer = answer;
  it->second.expires = now + ttl_;
  order_.emplace_back(it->second.expires, id);
}

}  // namespace starling::ingest
