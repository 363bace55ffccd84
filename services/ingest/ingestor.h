#pragma once
// The durable core of the front door, shared by HTTP and the MQTT bridge:
// converted records become one saga of envelopes on <p>.raw plus its
// INGESTED fact on starling.saga, and `done` runs once Kafka has answered for
// every one of them.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/error.h"
#include "services/common/pipeline.h"
#include "services/ingest/decode.h"

namespace starling::ingest {

struct Batch {
  const PipelineConfig* pipeline = nullptr;
  std::vector<Record> records;  // at least one; seq follows this order
  std::string saga_id;          // empty: a fresh random id
  std::string trace_id;         // empty: a fresh random id
};

struct Receipt {
  std::string saga_id;
  std::string trace_id;
  uint32_t accepted = 0;
  std::vector<std::string> event_ids;  // by seq
};

/// Ok only when every envelope and the INGESTED fact were PERSISTED;
/// otherwise Errc::kUnavailable with the first delivery error. Runs on a Kafka
/// delivery thread (or inline when producing failed at once).
using IngestDone = std::function<void(Result<Receipt>)>;

class Ingestor {
 public:
  Ingestor(kafka::Producer& producer, std::string instance);

  /// An event without its own id gets "<saga_id>-<seq>", so the same saga id
  /// and records (a retried Idempotency-Key) give the same envelopes.
  void submit(Batch batch, IngestDone done);

 private:
  kafka::Producer& producer_;
  std::string instance_;
};

}  // namespace starling::ingest
