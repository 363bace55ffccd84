#include "services/clean/clean_service.h"

#include <spdlog/spdlog.h>

#include "services/common/facts.h"
#include "services/common/records.h"
#include "services/common/retry.h"
#include "services/common/shutdown.h"
#include "services/common/time.h"
#include "starling/v1/envelope.pb.h"
#include "starling/v1/saga.pb.h"

namespace starling::clean {

CleanService::CleanService(const PipelineConfig& pipeline, kafka::KafkaOptions kafka, std::string instance,
                           CleanOptions options)
    : pipeline_(pipeline), kafka_(std::move(kafka)), instance_(std::move(instance)), options_(options),
      rules_(pipeline) {}

int CleanService::run() {
  auto producer = kafka::KafkaProducer::create(kafka_, {.queue_full_wait = std::chrono::seconds(60)});
  if (!producer) {
    spdlog::critical("{}", producer.error().message);
    return 1;
  }
  auto consumer = kafka::KafkaConsumer::create(kafka_, "starling-clean." + pipeline_.name, {pipeline_.raw_topic()}, {});
  if (!consumer) {
    spdlog::critical("{}", consumer.error().message);
    return 1;
  }
  uint64_t cleaned_total = 0;
  uint64_t rejected_total = 0;
  while (!shutdown_requested()) {
    auto batch = (*consumer)->poll_batch(options_.batch_max, options_.batch_wait);
    if (!batch) {
      spdlog::critical("{}", batch.error().message);
      return 1;
    }
    if (batch->empty()) continue;

    std::vector<kafka::OutMessage> out;
    std::map<kafka::TopicPartition, int64_t> next;
    FactBuilder cleaned(v1::STEP_CLEANED, instance_);
    FactBuilder rejected(v1::STEP_REJECTED, instance_);
    const auto now = now_ms();
    for (const auto& in : *batch) {
      next[{in.topic, in.partition}] = in.offset + 1;
      v1::Envelope env;
      v1::RejectedRecord rej;
      rej.set_stage("clean");
      rej.set_rejected_time_ms(now);
      if (!env.ParseFromString(in.value)) {
        // Not ours to clean and not tied to a saga: park it with the reason.
        auto* r = rej.add_reasons();
        r->set_rule("envelope");
        r->set_expected("a starling.v1.Envelope");
        rej.mutable_envelope()->set_payload(in.value);
        out.push_back({pipeline_.rejected_topic(), in.key, rej.SerializeAsString(), in.headers});
        spdlog::warn("{}/{}@{}: not an envelope; sent to {}", in.topic, in.partition, in.offset, pipeline_.rejected_topic());
        continue;
      }
      auto record = record_from_bytes(pipeline_, env.payload());
      if (record) {
        for (auto& reason : rules_.check(**record)) *rej.add_reasons() = std::move(reason);
      } else {
        auto* r = rej.add_reasons();
        r->set_rule("schema");
        r->set_expected(pipeline_.message_type);
        r->set_value(record.error().message);
      }
      if (rej.reasons_size() == 0) {
        cleaned.add(env.saga_id(), env.pipeline(), env.seq());
        out.push_back({pipeline_.clean_topic(), in.key, in.value, in.headers});
        ++cleaned_total;
      } else {
        rejected.add_rejection(env.saga_id(), env.pipeline(), env.seq(), rej.reasons());
        *rej.mutable_envelope() = std::move(env);
        out.push_back({pipeline_.rejected_topic(), in.key, rej.SerializeAsString(), in.headers});
        ++rejected_total;
      }
    }
    for (const auto* b : {&cleaned, &rejected}) {
      for (const auto& f : b->build(now)) out.push_back({kSagaTopic, f.saga_id(), f.SerializeAsString(), {}});
    }
    // Outputs first, offsets after: retry the same outputs until they are
    // persisted (duplicates are idempotent downstream), never skip them.
    const auto sent = retry_until_done("producing a batch of " + std::to_string(out.size()),
                                       [&] { return kafka::produce_all(**producer, out, std::chrono::seconds(60)); });
    if (!sent) return 0;  // shutting down; offsets not committed, so the batch is redone
    if (auto st = (*consumer)->commit(next); !st) spdlog::warn("{}", st.error().message);
    spdlog::debug("batch: {} in, cleaned {} rejected {} so far", batch->size(), cleaned_total, rejected_total);
  }
  spdlog::info("draining: cleaned {} rejected {}", cleaned_total, rejected_total);
  (*consumer)->close();
  return 0;
}

}  // namespace starling::clean
