#pragma once
// The coordinator's loop (starling.saga → RocksDB) and its HTTP API. It
// tracks and publishes facts; it never calls a service.

#include <string>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/http.h"
#include "services/saga/saga_store.h"

namespace starling::saga {

struct SagaOptions {
  std::size_t batch_max = 5000;
  std::chrono::milliseconds batch_wait{100};
};

class SagaService {
 public:
  SagaService(SagaStore& store, kafka::KafkaOptions kafka, std::string instance, SagaOptions options = {});
  /// Folds facts until shutdown_requested(). Records and the consumed offsets
  /// go in one atomic write; a restart resumes from the stored offsets.
  int run();

 private:
  SagaStore& store_;
  kafka::KafkaOptions kafka_;
  std::string instance_;
  SagaOptions options_;
};

/// GET /v1/sagas/{id}, GET /v1/sagas?state=&pipeline=&limit=, /healthz.
/// Reads the store only; safe beside the loop.
HttpResponse handle_saga_api(SagaStore& store, const HttpRequest& req);

}  // namespace starling::saga
