#pragma once
// The load stage: <p>.clean → sink rows, with offsets and LOADED facts
// committed in the same transaction, and an outbox relay to starling.saga;
// run by the one consumer loop (broker-adapters/kafka/consumer_loop.h).

#include <atomic>
#include <memory>
#include <string>

#include "broker-adapters/kafka/consumer_loop.h"
#include "broker-adapters/kafka/kafka.h"
#include "services/common/metrics.h"
#include "services/load/sink.h"

namespace starling::load {

struct LoadOptions {
  std::size_t batch_max = 2000;               // rows per transaction, at most
  std::chrono::milliseconds batch_wait{100};  // how long a batch waits to fill
};

/// Per batch (Stage::apply): decode the rows and the FAILED outcomes to
/// compensate; the store (Work::store) writes rows, compensations, offsets
/// and the outbox facts in ONE sink transaction, retried while the database
/// is down; then the outbox is relayed to Kafka.
class LoadService final : public kafka::Stage {
 public:
  LoadService(const PipelineConfig& pipeline, Sink& sink, kafka::KafkaOptions kafka, std::string instance,
              LoadOptions options = {});
  /// Runs until shutdown_requested(). Returns non-zero on a fatal error.
  int run();
  /// The same, on a given producer and consumer (tests).
  int run(kafka::Producer& producer, const kafka::ConsumerFactory& consumer, kafka::LoopOptions loop);
  /// False while the sink's database does not answer (an outage): /readyz reports it.
  bool ready() const { return sink_ok_; }

  Result<std::map<kafka::TopicPartition, int64_t>> assigned(const std::vector<kafka::TopicPartition>& parts) override;
  Result<kafka::Work> apply(std::vector<kafka::InMessage> batch) override;
  Status caught_up(bool idle) override;
  /// A dead letter too large for Kafka (the database's message, the whole
  /// envelope) goes in its truncated form, reason too_large; its
  /// REJECTED_AT_LOAD fact is already in the outbox.
  Result<std::vector<kafka::OutMessage>> too_large(const kafka::OutMessage& output, std::size_t size,
                                                   std::size_t limit) override;

 private:
  void relay();
  void set_sink_ok(bool ok);
  /// The facts and dead letters of a written batch (inside its transaction).
  std::vector<kafka::OutMessage> outbox(const SinkBatch& work, const std::vector<RowResult>& results, int64_t now);

  const PipelineConfig& pipeline_;
  Sink& sink_;
  kafka::KafkaOptions kafka_;
  std::string instance_;
  LoadOptions options_;
  kafka::Producer* producer_ = nullptr;  // during run()
  std::atomic<bool> sink_ok_{true};
  Gauge& sink_up_;  // starling_load_sink_up, the same fact for /metrics
  Histogram& ingest_to_loaded_;
  Counter& dead_letters_;
  Counter& rows_metric_;
  Counter& batches_metric_;
  uint64_t loaded_total_ = 0;
  std::chrono::steady_clock::time_point last_ping_{};
};

}  // namespace starling::load
