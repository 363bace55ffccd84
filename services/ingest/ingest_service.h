#pragma once
// The front door: turns an HTTP request of device records into one saga of
// envelopes on <p>.raw, and answers 202 only once Kafka has PERSISTED all of
// them and the saga's INGESTED fact.

#include <atomic>
#include <map>
#include <string>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/http.h"
#include "services/common/pipeline.h"

namespace starling::ingest {

class IngestService {
 public:
  IngestService(std::map<std::string, PipelineConfig> pipelines, kafka::Producer& producer, std::string instance);

  /// The HTTP handler. Thread-safe; answers asynchronously.
  void handle(HttpRequest req, HttpResponder respond);

  /// /readyz reports this; the main loop refreshes it from broker metadata.
  void set_ready(bool ready) { ready_ = ready; }
  bool ready() const { return ready_; }

 private:
  void post_events(const PipelineConfig& p, const HttpRequest& req, HttpResponder respond);

  std::map<std::string, PipelineConfig> pipelines_;
  kafka::Producer& producer_;
  std::string instance_;
  std::atomic<bool> ready_{false};
};

}  // namespace starling::ingest
