#pragma once
// The cleaning stage: <p>.raw → rules → <p>.clean or <p>.rejected, plus
// CLEANED/REJECTED progress facts on starling.saga, run by the one consumer
// loop (broker-adapters/kafka/consumer_loop.h).

#include <map>
#include <string>
#include <utility>

#include "broker-adapters/kafka/consumer_loop.h"
#include "broker-adapters/kafka/kafka.h"
#include "services/clean/cleaner.h"
#include "services/clean/state.h"
#include "services/common/metrics.h"
#include "services/common/pipeline.h"

namespace starling::clean {

struct CleanOptions {
  std::size_t batch_max = 10000;
  std::chrono::milliseconds batch_wait{100};
  int threads = 2;  // cleaning a batch's partitions in parallel (Cleaner)
};

/// Per batch (Stage::apply): clean, staging state changes in the store as a
/// sealed layer; the loop produces every output and fact until all are
/// PERSISTED, then the layer and the next input offsets are written in one
/// RocksDB WriteBatch. The state effect is exactly-once; the outputs are
/// at-least-once (a crash before the write replays the batch from the stored
/// offsets against the stored state, and produces the same records again).
/// Pipelined: the next batch is cleaned while this one's outputs are in
/// flight and the one before's write runs on the loop's store thread. See
/// README.md, Guarantees.
class CleanService final : public kafka::Stage {
 public:
  CleanService(const PipelineConfig& pipeline, RocksCleanStore& store, kafka::KafkaOptions kafka, std::string instance,
               CleanOptions options = {});
  /// Runs until shutdown_requested(). Returns non-zero on a fatal error.
  int run();
  /// The same, on a given producer and consumer (tests).
  int run(kafka::Producer& producer, const kafka::ConsumerFactory& consumer, kafka::LoopOptions loop);

  Result<std::map<kafka::TopicPartition, int64_t>> assigned(const std::vector<kafka::TopicPartition>& parts) override;
  Result<kafka::Work> apply(std::vector<kafka::InMessage> batch) override;
  void abandon() override;
  Result<std::vector<kafka::OutMessage>> too_large(const kafka::OutMessage& output, std::size_t size,
                                                   std::size_t limit) override;

 private:
  const PipelineConfig& pipeline_;
  RocksCleanStore& store_;
  kafka::KafkaOptions kafka_;
  std::string instance_;
  CleanOptions options_;
  Cleaner cleaner_;
  Counter& cleaned_;
  Counter& rejected_;
  // starling_clean_rejects_total by (rule, field), looked up once per series.
  std::map<std::pair<std::string, std::string>, Counter*> reject_counters_;
  uint64_t cleaned_total_ = 0;
  uint64_t rejected_total_ = 0;
};

}  // namespace starling::clean
