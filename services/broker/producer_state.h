#pragma once

#include <cstdint>
#include <deque>
#include <unordered_map>

#include "services/broker/error.h"
#include "services/broker/record_batch.h"

namespace starling::broker {

/// Per-partition idempotent-producer bookkeeping (KIP-98): for every producer
/// id the current epoch and the metadata of its last few batches, enough to
/// recognise a retried batch and answer it with the offset it already got.
class ProducerStateTable {
 public:
  /// Kafka keeps 5 because a producer has at most 5 requests in flight.
  static constexpr size_t kCachedBatches = 5;

  struct BatchMeta {
    int32_t first_seq = 0;
    int32_t last_seq = 0;
    int64_t first_offset = 0;
    int64_t last_offset = 0;
  };
  struct Entry {
    int16_t epoch = -1;
    std::deque<BatchMeta> batches;
  };

  /// Outcome of checking an incoming batch.
  struct Verdict {
    bool duplicate = false;
    int64_t duplicate_base_offset = -1;  // valid when duplicate
  };

  /// Checks an incoming batch against the producer's state without changing
  /// it. Errors: INVALID_PRODUCER_EPOCH for a fenced (older) epoch,
  /// OUT_OF_ORDER_SEQUENCE_NUMBER for a gap or a non-zero first sequence of a
  /// new epoch.
  Result<Verdict> check(const BatchHeader& batch) const;

  /// Records a batch that is now in the log (also used when replaying the log).
  void record(const BatchHeader& batch, int64_t base_offset);

  const Entry* find(int64_t producer_id) const;
  size_t size() const { return producers_.size(); }

 private:
  std::unordered_map<int64_t, Entry> producers_;
};

}  // namespace starling::broker
