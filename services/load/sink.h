#pragma once
// The warehouse side of the loader. A sink commits rows, the consumed
// offsets and the outbox of progress facts in ONE transaction: that is what
// makes the load stage's effect exactly-once.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "broker-adapters/kafka/kafka.h"
#include "broker-adapters/kafka/outbox.h"
#include "services/common/error.h"
#include "services/common/pipeline.h"
#include "starling/v1/envelope.pb.h"

namespace starling::load {

/// One row: the envelope (event id is the primary key) plus the decoded record.
struct Row {
  v1::Envelope envelope;
  std::unique_ptr<google::protobuf::Message> record;
};

/// Lifecycle: open, then write/read from one thread (the consumer loop).
class Sink : public kafka::Outbox {
 public:
  virtual ~Sink() = default;
  /// Upserts rows by event id, records next offsets, appends outbox messages:
  /// all or nothing.
  virtual Status write(const std::vector<Row>& rows, const std::map<kafka::TopicPartition, int64_t>& next_offsets,
                       const std::vector<kafka::OutMessage>& outbox) = 0;
  /// Next offset to read per partition, as last committed.
  virtual Result<std::map<kafka::TopicPartition, int64_t>> offsets() = 0;
};

}  // namespace starling::load
