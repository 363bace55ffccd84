#include "services/saga/saga_service.h"

#include <spdlog/spdlog.h>

#include "services/common/metrics.h"
#include "services/common/pipeline.h"
#include "services/common/shutdown.h"

namespace starling::saga {

SagaService::SagaService(SagaStore& store, Coordinator& coordinator, kafka::KafkaOptions kafka, std::string instance,
                         SagaOptions options)
    : store_(store), coordinator_(coordinator), kafka_(std::move(kafka)), instance_(std::move(instance)), options_(options) {}

int SagaService::run() {
  auto producer = kafka::KafkaProducer::create(
      kafka_, {.queue_full_wait = std::chrono::seconds(60), .topics = {kOutcomeTopic}});
  if (!producer) {
    spdlog::critical("{}", producer.error().message);
    return 1;
  }
  auto relay = [&] {
    if (auto sent = kafka::relay_outbox(store_, **producer); !sent) spdlog::warn("outcome relay: {}", sent.error().message);
  };
  relay();
  // Nothing is owned until the group assigns it: deadlines of sagas another
  // instance now tracks must not fire from our stale copy.
  std::set<int32_t> owned;
  coordinator_.set_owned(owned);
  kafka::RebalanceHooks hooks;
  hooks.on_assign = [&](const std::vector<kafka::TopicPartition>& parts) {
    auto stored = store_.offsets();
    STARLING_ASSERT(stored.has_value(), "cannot read stored offsets: {}", stored.error().message);
    // A partition with a stored offset resumes there: our records hold every
    // fact before it. One we never had starts at the beginning of the topic
    // (auto.offset.reset=earliest; this group commits no offsets to Kafka),
    // so its sagas are refolded from their facts. See README, Partitioning.
    std::map<kafka::TopicPartition, int64_t> starts;
    for (const auto& tp : parts) {
      if (auto it = stored->find(tp); it != stored->end()) starts[tp] = it->second;
      owned.insert(tp.partition);
    }
    coordinator_.set_owned(owned);
    spdlog::info("assigned {} partitions; {} resume from offsets in RocksDB, the rest from the beginning", parts.size(),
                 starts.size());
    return starts;
  };
  hooks.on_revoke = [&](const std::vector<kafka::TopicPartition>& parts) {
    for (const auto& tp : parts) owned.erase(tp.partition);
    coordinator_.set_owned(owned);
    // Outcomes already decided go out before another instance takes over.
    relay();
  };
  auto consumer = kafka::KafkaConsumer::create(kafka_, "starling-saga", {kSagaTopic}, std::move(hooks));
  if (!consumer) {
    spdlog::critical("{}", consumer.error().message);
    return 1;
  }
  auto& facts_metric = metrics().counter("starling_saga_facts_total", "Progress facts folded into saga state");
  auto& outcomes_metric = metrics().counter("starling_saga_outcomes_total", "Outcome facts decided (completed, stalled, failed)");
  auto last_tick = std::chrono::steady_clock::now();
  while (!shutdown_requested()) {
    auto batch = (*consumer)->poll_batch(options_.batch_max, options_.batch_wait);
    if (!batch) {
      spdlog::critical("{}", batch.error().message);
      return 1;
    }
    if (!batch->empty()) {
      auto outcomes = coordinator_.fold_batch(*batch);
      if (!outcomes) {
        spdlog::critical("saga store: {}", outcomes.error().message);
        return 1;  // nothing was applied; a restart refolds from the stored offsets
      }
      facts_metric.add(batch->size());
      outcomes_metric.add(*outcomes);
      if (*outcomes > 0) relay();
    }
    // Deadlines are checked only when caught up (a short batch): facts still
    // waiting in Kafka may be the progress that keeps a saga alive, and
    // FAILED cannot be undone.
    const auto now = std::chrono::steady_clock::now();
    if (batch->size() < options_.batch_max && now - last_tick >= options_.tick) {
      last_tick = now;
      auto outcomes = coordinator_.tick();
      if (!outcomes) {
        spdlog::critical("saga store: {}", outcomes.error().message);
        return 1;
      }
      outcomes_metric.add(*outcomes);
      if (*outcomes > 0) relay();
    }
  }
  spdlog::info("draining: folded {} facts this run", coordinator_.folded());
  relay();
  (*consumer)->close();
  return 0;
}

}  // namespace starling::saga
