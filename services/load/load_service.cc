#include "services/load/load_service.h"

#include <thread>

#include <spdlog/spdlog.h>

#include "services/common/facts.h"
#include "services/common/records.h"
#include "services/common/shutdown.h"
#include "services/common/time.h"

namespace starling::load {

LoadService::LoadService(const PipelineConfig& pipeline, Sink& sink, kafka::KafkaOptions kafka, std::string instance,
                         LoadOptions options)
    : pipeline_(pipeline), sink_(sink), kafka_(std::move(kafka)), instance_(std::move(instance)), options_(options) {}

void LoadService::relay(kafka::Producer& producer) {
  if (auto sent = kafka::relay_outbox(sink_, producer); !sent) {
    spdlog::warn("outbox relay: {}; will retry", sent.error().message);
  }
}

int LoadService::run() {
  auto producer = kafka::KafkaProducer::create(kafka_, {.queue_full_wait = std::chrono::seconds(60)});
  if (!producer) {
    spdlog::critical("{}", producer.error().message);
    return 1;
  }
  relay(**producer);  // facts a previous run committed but did not send

  kafka::RebalanceHooks hooks;
  hooks.on_assign = [this](const std::vector<kafka::TopicPartition>& parts) {
    std::map<kafka::TopicPartition, int64_t> starts;
    auto stored = sink_.offsets();
    STARLING_ASSERT(stored.has_value(), "cannot read stored offsets: {}", stored.error().message);
    for (const auto& tp : parts) {
      if (auto it = stored->find(tp); it != stored->end()) starts[tp] = it->second;
    }
    spdlog::info("resuming {} of {} partitions from offsets stored in the sink", starts.size(), parts.size());
    return starts;
  };
  auto consumer = kafka::KafkaConsumer::create(kafka_, "starling-load." + pipeline_.name, {pipeline_.clean_topic()},
                                               std::move(hooks));
  if (!consumer) {
    spdlog::critical("{}", consumer.error().message);
    return 1;
  }

  uint64_t loaded_total = 0;
  while (!shutdown_requested()) {
    auto batch = (*consumer)->poll_batch(options_.batch_max, options_.batch_wait);
    if (!batch) {
      spdlog::critical("{}", batch.error().message);
      return 1;
    }
    if (batch->empty()) {
      relay(**producer);
      continue;
    }
    std::vector<Row> rows;
    std::map<kafka::TopicPartition, int64_t> next;
    FactBuilder loaded(v1::STEP_LOADED, instance_);
    FactBuilder refused(v1::STEP_REJECTED_AT_LOAD, instance_);
    for (auto& in : *batch) {
      next[{in.topic, in.partition}] = in.offset + 1;
      Row row;
      if (!row.envelope.ParseFromString(in.value)) {
        spdlog::error("{}/{}@{}: not an envelope; skipped", in.topic, in.partition, in.offset);
        continue;
      }
      auto record = record_from_bytes(pipeline_, row.envelope.payload());
      if (!record) {
        google::protobuf::RepeatedPtrField<v1::Reason> reasons;
        auto* r = reasons.Add();
        r->set_rule("schema");
        r->set_expected(pipeline_.message_type);
        r->set_value(record.error().message);
        refused.add_rejection(row.envelope.saga_id(), row.envelope.pipeline(), row.envelope.seq(), reasons);
        continue;
      }
      row.record = std::move(*record);
      loaded.add(row.envelope.saga_id(), row.envelope.pipeline(), row.envelope.seq());
      rows.push_back(std::move(row));
    }
    std::vector<kafka::OutMessage> facts;
    const auto now = now_ms();
    for (const auto* b : {&loaded, &refused}) {
      for (const auto& f : b->build(now)) facts.push_back({kSagaTopic, f.saga_id(), f.SerializeAsString(), {}});
    }
    // Rows, offsets and facts commit together or not at all. A sink outage
    // keeps the batch and retries it: offsets don't move, nothing is lost.
    for (int attempt = 1;; ++attempt) {
      auto st = sink_.write(rows, next, facts);
      if (st) break;
      if (shutdown_requested()) return 0;
      spdlog::warn("sink write of {} rows failed (attempt {}): {}", rows.size(), attempt, st.error().message);
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(5000, 100 * attempt)));
    }
    loaded_total += rows.size();
    relay(**producer);
    spdlog::debug("batch: {} rows, {} loaded so far", rows.size(), loaded_total);
  }
  spdlog::info("draining: loaded {} rows this run", loaded_total);
  relay(**producer);
  (*consumer)->close();
  return 0;
}

}  // namespace starling::load
