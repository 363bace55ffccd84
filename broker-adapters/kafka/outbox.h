#pragma once
// The transactional outbox: a store appends messages in the same atomic write
// as its effect, and relay_outbox() sends them, removing each only after
// Kafka persisted it. A crash in between re-sends, never loses; consumers of
// outbox messages must therefore be idempotent (the saga bitmaps are).

#include <cstdint>
#include <vector>

#include "broker-adapters/kafka/kafka.h"

namespace starling::kafka {

struct OutboxEntry {
  uint64_t id = 0;  // increasing in append order
  OutMessage message;
};

class Outbox {
 public:
  virtual ~Outbox() = default;
  /// The oldest `max` entries, in id order.
  virtual Result<std::vector<OutboxEntry>> outbox(std::size_t max) = 0;
  /// Removes exactly these entries, the ones relayed. Not "every id up to
  /// the last": where several writers share one outbox (loaders of one
  /// pipeline on one PostgreSQL database), an id is taken at insert and shows
  /// at commit, so an entry with a lower id can appear after the relay read.
  virtual Status outbox_done(const std::vector<uint64_t>& ids) = 0;
};

/// Sends everything pending, in chunks; returns how many were relayed, or the
/// first error (entries not confirmed stay for the next call).
Result<std::size_t> relay_outbox(Outbox& outbox, Producer& producer);

}  // namespace starling::kafka
