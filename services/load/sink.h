#pragma once
// The warehouse side of the loader. A sink commits rows, the consumed
// offsets and the outbox of progress facts in ONE transaction: that is what
// makes the load stage's effect exactly-once.

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "broker-adapters/kafka/kafka.h"
#include "broker-adapters/kafka/outbox.h"
#include "services/common/error.h"
#include "services/common/pipeline.h"
#include "starling/v1/envelope.pb.h"

namespace starling::load {

/// The envelope column holding the device an event came from. An event id
/// loaded for one device is never rewritten for another: a trigger in each
/// sink refuses that update with a message starting with kEventIdConflict,
/// so the row is dead-lettered with that reason instead of overwriting
/// another tenant's row (a shared event id, or an Idempotency-Key reused
/// after ingest's cache forgot it, which derives the same event ids).
inline constexpr const char* kDeviceColumn = "_starling_device_id";
inline constexpr std::string_view kEventIdConflict = "event_id_conflict";

/// One row: the envelope (event id is the primary key) plus the decoded record.
struct Row {
  v1::Envelope envelope;
  std::unique_ptr<google::protobuf::Message> record;
};

/// What happened to one row of a batch.
struct RowResult {
  bool written = false;
  std::string error;  // why the DB refused it (a constraint, a type), when not written
};

/// Everything one transaction applies.
struct SinkBatch {
  std::vector<Row> rows;                                  // upserted by event id
  std::vector<std::string> compensate;                    // sagas whose rows are deleted
  std::map<kafka::TopicPartition, int64_t> next_offsets;  // consumed offsets, stored with the effect
};

/// Builds the outbox messages (facts, dead letters) from what the rows did;
/// called inside the transaction, so they commit with the rows.
using OutboxBuilder = std::function<std::vector<kafka::OutMessage>(const std::vector<RowResult>&)>;

/// Lifecycle: open, then use from one thread at a time (the consumer loop:
/// write() on its store thread, the rest on its own thread, never both at once).
class Sink : public kafka::Outbox {
 public:
  ~Sink() override = default;
  /// Applies a batch in ONE transaction: upserts, compensations, offsets and
  /// the outbox. A row the DB refuses is skipped and reported to `outbox`; any
  /// other failure (the DB is down, the disk is full) rolls everything back.
  virtual Status write(const SinkBatch& batch, const OutboxBuilder& outbox) = 0;
  /// Next offset to read per partition, as last committed.
  virtual Result<std::map<kafka::TopicPartition, int64_t>> offsets() = 0;
  /// Which of these sagas were compensated already (their late rows are dropped).
  virtual Result<std::set<std::string>> compensated(const std::set<std::string>& saga_ids) = 0;
  /// Whether the database answers now (reconnecting if needed); the loader
  /// probes it while idle so that /readyz tells an outage with no traffic.
  virtual Status ping() = 0;
};

}  // namespace starling::load
