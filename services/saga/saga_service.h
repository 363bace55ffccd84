#pragma once
// The coordinator's stage: starling.saga → Coordinator (RocksDB) → outbox →
// starling.saga.outcomes, run by the one consumer loop
// (broker-adapters/kafka/consumer_loop.h). It tracks and publishes facts; it
// never calls a service.

#include <chrono>
#include <map>
#include <set>
#include <string>

#include "broker-adapters/kafka/consumer_loop.h"
#include "broker-adapters/kafka/kafka.h"
#include "services/common/metrics.h"
#include "services/saga/coordinator.h"
#include "services/saga/saga_api.h"
#include "services/saga/saga_store.h"

namespace starling::saga {

struct SagaOptions {
  std::size_t batch_max = 5000;
  std::chrono::milliseconds batch_wait{100};
  /// How often deadlines and retention are checked. A deadline fires at most
  /// this late.
  std::chrono::milliseconds tick{500};
  /// Told the sagas by state after every step (the console's overview).
  Activity* activity = nullptr;
  /// Told the partitions owned on every assignment (the saga API's scope).
  Ownership* ownership = nullptr;
};

/// Per batch: the facts are folded into saga records, and the records, the
/// outcomes decided (outbox) and the consumed offsets go in one atomic
/// RocksDB write (Work::store); then the outbox is relayed. A restart, or a
/// partition assigned again, resumes from the stored offsets.
class SagaService final : public kafka::Stage {
 public:
  SagaService(SagaStore& store, Coordinator& coordinator, kafka::KafkaOptions kafka, std::string instance,
              SagaOptions options = {});
  /// Folds facts until shutdown_requested(). Returns non-zero on a fatal error.
  int run();
  /// The same, on a given producer and consumer (tests).
  int run(kafka::Producer& producer, const kafka::ConsumerFactory& consumer, kafka::LoopOptions loop);

  Result<std::map<kafka::TopicPartition, int64_t>> assigned(const std::vector<kafka::TopicPartition>& parts) override;
  void revoked(const std::vector<kafka::TopicPartition>& parts) override;
  Result<kafka::Work> apply(std::vector<kafka::InMessage> batch) override;
  Status caught_up(bool idle) override;

 private:
  void relay();
  /// Tells the coordinator and the API (options_.ownership) what owned_ holds.
  void set_owned();
  /// Sets starling_saga_sagas{pipeline,state} from the coordinator's counts.
  void publish_states();

  SagaStore& store_;
  Coordinator& coordinator_;
  kafka::KafkaOptions kafka_;
  std::string instance_;
  SagaOptions options_;
  kafka::Producer* producer_ = nullptr;  // during run()
  std::set<int32_t> owned_;
  Counter& facts_metric_;
  Counter& outcomes_metric_;
  std::map<std::pair<std::string, v1::SagaState>, Gauge*> state_gauges_;  // starling_saga_sagas, by series
  std::chrono::steady_clock::time_point last_tick_{};
};

}  // namespace starling::saga
