#include "services/ingest/ingestor.h"

#include <fmt/format.h>

#include <chrono>
#include <memory>
#include <mutex>

#include "services/common/envelope.h"
#include "services/common/ids.h"
#include "services/common/metrics.h"
#include "services/common/time.h"

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

// Batch is move-only (its records own their messages): callers hand it over, nothing is copied.
void Ingestor::submit(Batch batch, IngestDone done) {  // NOLINT(performance-unnecessary-value-param)
  const auto& p = *batch.pipeline;
  const auto saga_id = batch.saga_id.empty() ? random_id() : batch.saga_id;
  const auto trace_id = batch.trace_id.empty() ? random_id() : batch.trace_id;
  const auto ingest_ms = now_ms();
  Receipt receipt{saga_id, trace_id, 0, {}};
  std::vector<kafka::OutMessage> out;
  out.reserve(batch.records.size() + 1);
  for (auto& rec : batch.records) {
    const auto seq = receipt.accepted++;
    const auto env =
        make_envelope(p, *rec.message, saga_id, seq, fmt::format("{}-{}", saga_id, seq), trace_id, ingest_ms);
    receipt.event_ids.push_back(env.event_id());
    out.push_back({p.raw_topic(), envelope_key(env), env.SerializeAsString(), {{kafka::kTraceHeader, trace_id}}});
  }
  const auto fact = ingested_fact(p, saga_id, receipt.accepted, instance_, ingest_ms);
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
  for (const auto& m : out) {
    producer_.produce(m, [pending](const kafka::Delivery& d) {
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
