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
  /// Removes entries with id <= up_to.
  virtual Status outbox_done(uint64_t up_to) = 0;
};

/// Sends everything pending, in chunks; returns how many were relayed, or the
/// first error (entries not confirmed stay for the next call).
Result<std::size_t> relay_outbox(Outbox& outbox, Producer& producer);

}  // namespace starling::kafka
