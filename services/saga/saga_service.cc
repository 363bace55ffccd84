#include "services/saga/saga_service.h"

#include <spdlog/spdlog.h>

#include "services/common/metrics.h"
#include "services/common/pipeline.h"

namespace starling::saga {

SagaService::SagaService(SagaStore& store, Coordinator& coordinator, kafka::KafkaOptions kafka, std::string instance,
                         SagaOptions options)
    : store_(store),
      coordinator_(coordinator),
      kafka_(std::move(kafka)),
      instance_(std::move(instance)),
      options_(options),
      facts_metric_(metrics().counter("starling_saga_facts_total", "Progress facts folded into saga state")),
      outcomes_metric_(metrics().counter("starling_saga_outcomes_total",
                                         "Outcome facts decided (completed, stalled, overdue, failed, compensated)")) {}

void SagaService::relay() {
  if (auto sent = kafka::relay_outbox(store_, *producer_); !sent) {
    spdlog::warn("outcome relay: {}", sent.error().message);
  }
}

int SagaService::run() {
  auto producer =
      kafka::KafkaProducer::create(kafka_, {.queue_full_wait = std::chrono::seconds(60), .topics = {kOutcomeTopic}});
  if (!producer) {
    spdlog::critical("{}", producer.error().message);
    return 1;
  }
  return run(**producer, kafka::KafkaConsumer::factory(kafka_, kSagaGroup, {kSagaTopic}),
             {.batch_max = options_.batch_max, .batch_wait = options_.batch_wait});
}

void SagaService::publish_states() {
  for (const auto& [key, n] : coordinator_.state_counts()) {
    // Looked up in the registry once per series, then kept (after every batch).
    auto& gauge = state_gauges_[key];
    if (gauge == nullptr) {
      const auto& [pipeline, state] = key;
      std::string name = v1::SagaState_Name(state);
      if (name.starts_with("SAGA_STATE_")) name = name.substr(11);
      gauge = &metrics().gauge("starling_saga_sagas",
                               "Sagas in this instance's store by pipeline and state (ACCEPTED, IN_FLIGHT, COMPLETED, "
                               "STALLED, OVERDUE, FAILED, COMPENSATED), until retention removes them",
                               {{"pipeline", pipeline}, {"state", name}});
    }
    gauge->set(static_cast<double>(n));
  }
  if (options_.activity != nullptr) options_.activity->set_states(coordinator_.state_counts());
}

int SagaService::run(kafka::Producer& producer, const kafka::ConsumerFactory& consumer, kafka::LoopOptions loop) {
  producer_ = &producer;
  relay();
  if (auto st = coordinator_.count_states(); !st) {
    spdlog::critical("saga store: counting sagas by state: {}", st.error().message);
    return 1;
  }
  publish_states();
  // Nothing is owned until the group assigns it: deadlines of sagas another
  // instance now tracks must not fire from our stale copy.
  owned_.clear();
  set_owned();
  kafka::ConsumerLoop runner("saga", *this, producer, std::move(loop));
  const int rc = runner.run(consumer);
  spdlog::info("draining: folded {} facts this run", coordinator_.folded());
  relay();
  producer_ = nullptr;
  return rc;
}

void SagaService::set_owned() {
  coordinator_.set_owned(owned_);
  if (options_.ownership != nullptr) options_.ownership->set(owned_);
}

Result<std::map<kafka::TopicPartition, int64_t>> SagaService::assigned(
    const std::vector<kafka::TopicPartition>& parts) {
  auto stored = store_.offsets();
  STARLING_ASSERT(stored.has_value(), "cannot read stored offsets: {}", stored.error().message);
  // A partition with a stored offset resumes there: our records hold every
  // fact before it. One we never had starts at the beginning of the topic
  // (the consumer loop's rule: the group's committed offsets are only for lag
  // tools), so its sagas are refolded from their facts. See README,
  // Partitioning.
  std::map<kafka::TopicPartition, int64_t> starts;
  for (const auto& tp : parts) {
    if (auto it = stored->find(tp); it != stored->end()) starts[tp] = it->second;
    owned_.insert(tp.partition);
  }
  set_owned();
  spdlog::info("assigned {} partitions; {} resume from offsets in RocksDB, the rest from the beginning", parts.size(),
               starts.size());
  return starts;
}

void SagaService::revoked(const std::vector<kafka::TopicPartition>& parts) {
  for (const auto& tp : parts) owned_.erase(tp.partition);
  set_owned();
  // Outcomes already decided go out before another instance takes over.
  relay();
}

Result<kafka::Work> SagaService::apply(std::vector<kafka::InMessage> batch) {
  auto outcomes = std::make_shared<std::size_t>(0);
  kafka::Work work;
  // Folding reads and writes the store in one atomic write, so it is the
  // store step. A store error is fatal (Errc::kInternal): nothing was
  // applied, and a restart refolds from the stored offsets.
  const auto n = batch.size();
  work.store = [this, batch = std::move(batch), outcomes]() -> Status {
    auto n = coordinator_.fold_batch(batch);
    if (!n) return fail(Errc::kInternal, "saga store: " + n.error().message);
    *outcomes = *n;
    return {};
  };
  work.stored = [this, outcomes, n] {
    facts_metric_.add(n);
    outcomes_metric_.add(*outcomes);
    publish_states();
    if (*outcomes > 0) relay();
  };
  return work;
}

Status SagaService::caught_up(bool) {
  // Deadlines are checked only when caught up (a short batch): facts still
  // waiting in Kafka may be the progress that keeps a saga alive, and an
  // alert raised too early is noise.
  const auto now = std::chrono::steady_clock::now();
  if (now - last_tick_ < options_.tick) return {};
  last_tick_ = now;
  auto outcomes = coordinator_.tick();
  if (!outcomes) return fail(Errc::kInternal, "saga store: " + outcomes.error().message);
  outcomes_metric_.add(*outcomes);
  publish_states();
  if (*outcomes > 0) relay();
  return {};
}

}  // namespace starling::saga
