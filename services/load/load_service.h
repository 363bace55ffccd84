#pragma once
// The load stage's loop: <p>.clean → sink rows, with offsets and LOADED facts
// committed in the same transaction, and an outbox relay to starling.saga.

#include <atomic>
#include <memory>
#include <string>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/metrics.h"
#include "services/load/sink.h"

namespace starling::load {

struct LoadOptions {
  std::size_t batch_max = 2000;                // rows per transaction, at most
  std::chrono::milliseconds batch_wait{100};   // how long a batch waits to fill
};

class LoadService {
 public:
  LoadService(const PipelineConfig& pipeline, Sink& sink, kafka::KafkaOptions kafka, std::string instance,
              LoadOptions options = {});
  /// Runs until shutdown_requested(). Returns non-zero on a fatal error.
  int run();
  /// False while the sink's database does not answer (an outage): /readyz reports it.
  bool ready() const { return sink_ok_; }

 private:
  void relay(kafka::Producer& producer);
  void set_sink_ok(bool ok);
  /// Calls the sink until it succeeds or shutdown; every answer updates ready().
  template <class Op>
  auto with_sink(std::string_view what, Op&& op);

  const PipelineConfig& pipeline_;
  Sink& sink_;
  kafka::KafkaOptions kafka_;
  std::string instance_;
  LoadOptions options_;
  std::atomic<bool> sink_ok_{true};
  Gauge& sink_up_;  // starling_load_sink_up, the same fact for /metrics
};

}  // namespace starling::load
