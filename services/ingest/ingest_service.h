#pragma once
// The HTTP front door: authenticates, decodes, rate-limits and hands each
// request's records to the Ingestor as one saga; answers 202 with the receipt
// only once Kafka has PERSISTED all of them and the saga's INGESTED fact.

#include <atomic>
#include <map>
#include <optional>
#include <string>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/api_keys.h"
#include "services/common/http.h"
#include "services/common/metrics.h"
#include "services/common/pipeline.h"
#include "services/ingest/decode.h"
#include "services/ingest/idempotency.h"
#include "services/ingest/ingestor.h"
#include "services/ingest/limits.h"

namespace starling::ingest {

struct IngestOptions {
  std::optional<KeyStore> keys;  // none: every request is allowed (a laptop)
  Rate device_rate;              // per device id, in events; per_s 0: off
  std::size_t max_tracked_devices = RateLimiter::kMaxTrackedDevices;
  std::string saga_url;              // http://host:port of starling-saga; empty: /v1/sagas is 404
  std::size_t max_records = 10'000;  // per request
  RecordLimits limits;               // per record: larger ones get 413
};

class IngestService {
 public:
  IngestService(std::map<std::string, PipelineConfig> pipelines, kafka::Producer& producer, std::string instance,
                IngestOptions options = {});

  /// The HTTP handler. Thread-safe; answers asynchronously.
  void handle(HttpRequest req, HttpResponder respond);

  /// /readyz reports this; the main loop refreshes it from broker metadata.
  void set_ready(bool ready) { ready_ = ready; }
  bool ready() const { return ready_; }

  Ingestor& ingestor() { return ingestor_; }
  const std::map<std::string, PipelineConfig>& pipelines() const { return pipelines_; }

 private:
  void post_events(const PipelineConfig& p, const ApiKey* key, const HttpRequest& req, HttpResponder respond);
  void get_saga(const ApiKey* key, const HttpRequest& req, HttpResponder respond);

  std::map<std::string, PipelineConfig> pipelines_;
  Ingestor ingestor_;
  IngestOptions options_;
  RateLimiter limiter_;
  IdempotencyCache idempotency_;
  struct PipelineCounters {
    Counter* accepted;
    Counter* refused;
  };
  std::map<std::string, PipelineCounters> counters_;  // looked up once, not per request
  std::atomic<int> proxies_{0};
  std::atomic<bool> ready_{false};
};

/// The OpenAPI 3.1 document of this API (services/ingest/openapi.json).
const std::string& openapi_json();

}  // namespace starling::ingest
