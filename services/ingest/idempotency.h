#pragma once
// Idempotency-Key: a retried request gets the same receipt and the same saga.
//
// The saga id is derived from (key scope, pipeline, Idempotency-Key), so a
// retry after a 503, or after ingest restarted, re-produces the very same
// envelopes (same saga, seqs and event ids), which every stage downstream
// folds idempotently. This cache adds the rest: a retry of a request that got
// its 202 is answered from memory without producing again, a concurrent
// duplicate gets 409, and a key reused with a different body gets 422.

#include <chrono>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "services/common/http.h"

namespace starling::ingest {

/// 32 hex digits, a pure function of its inputs.
std::string derived_saga_id(const std::string& scope, const std::string& pipeline, const std::string& key);

class IdempotencyCache {
 public:
  explicit IdempotencyCache(std::chrono::seconds ttl = std::chrono::hours(24), std::size_t max_entries = 20'000)
      : ttl_(ttl), max_(max_entries) {}

  enum class Begin { kFresh, kInFlight, kMismatch, kReplay };
  /// `body_hash` identifies the request's content. On `replay`, `answer` is
  /// the stored 202.
  Begin begin(const std::string& id, const std::string& body_hash, HttpResponse& answer);
  /// Ends what begin() returned `fresh` for: a 202 is kept for the TTL, any
  /// other answer forgets the entry so that a retry runs again.
  void finish(const std::string& id, const HttpResponse& answer);

 private:
  struct Entry {
    std::string body_hash;
    bool done = false;
    HttpResponse answer;
    std::chrono::steady_clock::time_point expires;
  };
  void expire(std::chrono::steady_clock::time_point now);

  std::chrono::seconds ttl_;
  std::size_t max_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::string>> order_;  // by expiry
};

}  // namespace starling::ingest
