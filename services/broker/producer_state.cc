#include "services/broker/producer_state.h"

#include <fmt/format.h>

#include <limits>

namespace starling::broker {

namespace {
int32_t next_sequence(int32_t seq) { return seq == std::numeric_limits<int32_t>::max() ? 0 : seq + 1; }
}  // namespace

Result<ProducerStateTable::Verdict> ProducerStateTable::check(const BatchHeader& b) const {
  if (!b.is_idempotent()) return Verdict{};
  auto it = producers_.find(b.producer_id);
  // An unknown producer (new, or its batches were removed by retention) may
  // start anywhere, like Kafka: refusing would wedge producers after retention.
  if (it == producers_.end()) return Verdict{};
  const Entry& e = it->second;
  if (b.producer_epoch < e.epoch) {
    return fail(ErrorCode::kInvalidProducerEpoch, fmt::format("producer {} epoch {} is older than current epoch {}",
                                                              b.producer_id, b.producer_epoch, e.epoch));
  }
  if (b.producer_epoch > e.epoch) {
    if (b.base_sequence != 0) {
      return fail(ErrorCode::kOutOfOrderSequenceNumber,
                  fmt::format("producer {} new epoch {} must start at sequence 0, got {}", b.producer_id,
                              b.producer_epoch, b.base_sequence));
    }
    return Verdict{};
  }
  for (const auto& m : e.batches) {
    if (m.first_seq == b.base_sequence && m.last_seq == b.last_sequence()) return Verdict{true, m.first_offset};
  }
  if (e.batches.empty()) return Verdict{};
  int32_t expected = next_sequence(e.batches.back().last_seq);
  if (b.base_sequence != expected) {
    return fail(ErrorCode::kOutOfOrderSequenceNumber,
                fmt::format("producer {} epoch {}: expected sequence {}, got {}", b.producer_id, b.producer_epoch,
                            expected, b.base_sequence));
  }
  return Verdict{};
}

void ProducerStateTable::record(const BatchHeader& b, int64_t base_offset) {
  if (!b.is_idempotent()) return;
  Entry& e = producers_[b.producer_id];
  if (b.producer_epoch != e.epoch) {
    e.epoch = b.producer_epoch;
    e.batches.clear();
  }
  e.batches.push_back({b.base_sequence, b.last_sequence(), base_offset, base_offset + b.last_offset_delta});
  while (e.batches.size() > kCachedBatches) e.batches.pop_front();
}

const ProducerStateTable::Entry* ProducerStateTable::find(int64_t producer_id) const {
  auto it = producers_.find(producer_id);
  return it == producers_.end() ? nullptr : &it->second;
}

}  // namespace starling::broker
