#pragma once
// The coordinator's consumer loop: starling.saga → Coordinator (RocksDB) →
// outbox → starling.saga.outcomes. It tracks and publishes facts; it never
// calls a service.

#include <chrono>
#include <string>

#include "broker-adapters/kafka/kafka.h"
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
};

class SagaService {
 public:
  SagaService(SagaStore& store, Coordinator& coordinator, kafka::KafkaOptions kafka, std::string instance,
              SagaOptions options = {});
  /// Folds facts until shutdown_requested(). Records and the consumed offsets
  /// go in one atomic write; a restart, or a partition assigned again,
  /// resumes from the stored offsets.
  int run();

 private:
  SagaStore& store_;
  Coordinator& coordinator_;
  kafka::KafkaOptions kafka_;
  std::string instance_;
  SagaOptions options_;
};

}  // namespace starling::saga
