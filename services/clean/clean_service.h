#pragma once
// The cleaning stage's loop: <p>.raw → rules → <p>.clean or <p>.rejected,
// plus CLEANED/REJECTED progress facts on starling.saga.

#include <string>

#include "broker-adapters/kafka/kafka.h"
#include "services/clean/cleaner.h"
#include "services/clean/state.h"
#include "services/common/pipeline.h"

namespace starling::clean {

struct CleanOptions {
  std::size_t batch_max = 10000;
  std::chrono::milliseconds batch_wait{100};
  int threads = 2;  // cleaning a batch's partitions in parallel (Cleaner)
};

/// Per batch: clean (staging state changes), produce every output and fact
/// and wait until all are PERSISTED, then commit the state changes and the
/// next input offsets in one RocksDB WriteBatch. The state effect is
/// exactly-once; the outputs are at-least-once (a crash before the commit
/// replays the batch from the stored offsets against the stored state, and
/// produces the same records again). Pipelined: the next batch is polled and
/// cleaned while this one's outputs are in flight and the one before's
/// RocksDB write runs on a thread of its own; its outputs are sent only after
/// this one's are persisted. See README.md, Guarantees.
class CleanService {
 public:
  CleanService(const PipelineConfig& pipeline, RocksCleanStore& store, kafka::KafkaOptions kafka, std::string instance,
               CleanOptions options = {});
  /// Runs until shutdown_requested(). Returns non-zero on a fatal error.
  int run();

 private:
  const PipelineConfig& pipeline_;
  RocksCleanStore& store_;
  kafka::KafkaOptions kafka_;
  std::string instance_;
  CleanOptions options_;
  Cleaner cleaner_;
};

}  // namespace starling::clean
