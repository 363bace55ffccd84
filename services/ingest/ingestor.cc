#include "services/ingest/ingestor.h"

#include <fmt/format.h>

#include <chrono>
#include <memory>
#include <mutex>

#include "services/common/ids.h"
#include "services/common/metrics.h"
#include "services/common/records.h"
#include "services/common/time.h"
#include "starling/v1/envelope.pb.h"
#include "starling/v1/saga.pb.h"

namespace starling::ingest {

namespace {

// Produce latency, from the first produce to the last delivery report.
Histogram& produce_seconds() {
  static auto& h = metrics().histogram("starling_ingest_produce_seconds",
                                       "Time from producing a saga's first message to its last delivery report",
                                       {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
  return h;
}

}  // namespace

Ingestor::Ingestor(kafka::Producer& producer, std::string instance)
    : producer_(producer), instance_(std::move(instance)) {}

void Ingestor::submit(Batch batch, IngestDone done) {
  const auto& p = *batch.pipeline;
  const auto saga_id = batch.saga_id.empty() ? random_id() : batch.saga_id;
  const auto trace_id = batch.trace_id.empty() ? random_id() : batch.trace_id;
  const auto ingest_ms = now_ms();
  Receipt receipt{saga_id, trace_id, 0, {}};
  std::vector<kafka::OutMessage> out;
  out.reserve(batch.records.size() + 1);
  for (auto& rec : batch.records) {
    const auto& msg = *rec.message;
    const auto seq = receipt.accepted++;
    v1::Envelope env;
    env.set_event_id(p.event_id_field ? field_text(msg, p.event_id_field) : std::string{});
    if (env.event_id().empty()) env.set_event_id(fmt::format("{}-{}", saga_id, seq));
    env.set_saga_id(saga_id);
    env.set_seq(seq);
    env.set_pipeline(p.name);
    if (p.device_id_field) env.set_device_id(field_text(msg, p.device_id_field));
    env.set_event_time_ms(p.event_time_field ? timestamp_ms(msg, p.event_time_field) : ingest_ms);
    if (env.event_time_ms() == 0) env.set_event_time_ms(ingest_ms);
    env.set_ingest_time_ms(ingest_ms);
    env.set_schema_name(p.message_type);
    env.set_schema_version(p.schema_version);
    env.set_trace_id(trace_id);
    msg.SerializeToString(env.mutable_payload());
    receipt.event_ids.push_back(env.event_id());
    auto key = env.device_id().empty() ? env.event_id() : env.device_id();
    out.push_back({p.raw_topic(), std::move(key), env.SerializeAsString(), {{kafka::kTraceHeader, trace_id}}});
  }
  v1::ProgressFact fact;
  fact.set_saga_id(saga_id);
  fact.set_pipeline(p.name);
  fact.set_step(v1::STEP_INGESTED);
  fact.set_total(receipt.accepted);
  auto* range = fact.add_seqs();
  range->set_first(0);
  range->set_last(receipt.accepted - 1);
  fact.set_source(instance_);
  fact.set_time_ms(ingest_ms);
  out.push_back({kSagaTopic, saga_id, fact.SerializeAsString(), {{kafka::kTraceHeader, trace_id}}});

  // The last delivery report completes the saga.
  struct Pending {
    std::mutex mu;
    std::size_t left;
    std::string error;
    Receipt receipt;
    IngestDone done;
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  };
  auto pending = std::make_shared<Pending>();
  pending->left = out.size();
  pending->receipt = std::move(receipt);
  pending->done = std::move(done);
  for (auto& m : out) {
    producer_.produce(std::move(m), [pending](const kafka::Delivery& d) {
      std::unique_lock lock(pending->mu);
      if (d.status != kafka::DeliveryStatus::kPersisted && pending->error.empty()) {
        pending->error = d.error.empty() ? "delivery not confirmed" : d.error;
      }
      if (--pending->left != 0) return;
      lock.unlock();
      produce_seconds().observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - pending->start).count());
      if (pending->error.empty()) {
        pending->done(std::move(pending->receipt));
      } else {
        pending->done(fail(Errc::kUnavailable, pending->error));
      }
    });
  }
}

}  // namespace starling::ingest
