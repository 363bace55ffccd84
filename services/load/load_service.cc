#include "services/load/load_service.h"

#include <set>
#include <thread>

#include <spdlog/spdlog.h>

#include "services/common/facts.h"
#include "services/common/metrics.h"
#include "services/common/records.h"
#include "services/common/retry.h"
#include "services/common/shutdown.h"
#include "services/common/time.h"
#include "starling/v1/saga.pb.h"

namespace starling::load {

LoadService::LoadService(const PipelineConfig& pipeline, Sink& sink, kafka::KafkaOptions kafka, std::string instance,
                         LoadOptions options)
    : pipeline_(pipeline),
      sink_(sink),
      kafka_(std::move(kafka)),
      instance_(std::move(instance)),
      options_(options),
      sink_up_(metrics().gauge("starling_load_sink_up", "1 while the sink's database answers, else 0",
                               {{"pipeline", pipeline.name}})) {
  sink_up_.set(1);
}

void LoadService::relay(kafka::Producer& producer) {
  if (auto sent = kafka::relay_outbox(sink_, producer); !sent) {
    spdlog::warn("outbox relay: {}; will retry", sent.error().message);
  }
}

template <class Op>
auto LoadService::with_sink(std::string_view what, Op&& op) {
  return retry_until_done(what, [&] {
    auto r = op();
    set_sink_ok(r.has_value());
    return r;
  });
}

void LoadService::set_sink_ok(bool ok) {
  sink_ok_ = ok;
  sink_up_.set(ok ? 1 : 0);
}

int LoadService::run() {
  auto producer = kafka::KafkaProducer::create(
      kafka_, {.queue_full_wait = std::chrono::seconds(60), .topics = {kSagaTopic, pipeline_.dlq_topic()}});
  if (!producer) {
    spdlog::critical("{}", producer.error().message);
    return 1;
  }
  relay(**producer);  // facts a previous run committed but did not send

  kafka::RebalanceHooks hooks;
  hooks.on_assign = [this](const std::vector<kafka::TopicPartition>& parts) {
    std::map<kafka::TopicPartition, int64_t> starts;
    // Starting without the stored offsets would redo or skip work: wait for
    // the database instead (an outage during a rebalance).
    auto stored = with_sink("reading stored offsets", [this] { return sink_.offsets(); });
    if (!stored) return starts;  // shutting down; a replay from anywhere is an idempotent upsert
    for (const auto& tp : parts) {
      if (auto it = stored->find(tp); it != stored->end()) starts[tp] = it->second;
    }
    spdlog::info("resuming {} of {} partitions from offsets stored in the sink", starts.size(), parts.size());
    return starts;
  };
  // The loader reacts to saga outcomes: a FAILED saga's rows are deleted.
  // <p>.clean.replay carries replays of this stage's input (`starling
  // replay --stage load`); its offsets are stored beside the others.
  auto consumer = kafka::KafkaConsumer::create(kafka_, "starling-load." + pipeline_.name,
                                               {pipeline_.clean_topic(), pipeline_.clean_replay_topic(), kOutcomeTopic},
                                               std::move(hooks));
  if (!consumer) {
    spdlog::critical("{}", consumer.error().message);
    return 1;
  }

  const Labels labels = {{"pipeline", pipeline_.name}};
  auto& rows_metric = metrics().counter("starling_load_rows_total", "Rows committed to the sink", labels);
  auto& batches_metric = metrics().counter("starling_load_batches_total", "Sink transactions committed", labels);
  uint64_t loaded_total = 0;
  auto last_ping = std::chrono::steady_clock::now();
  while (!shutdown_requested()) {
    auto batch = (*consumer)->poll_batch(options_.batch_max, options_.batch_wait);
    if (!batch) {
      spdlog::critical("{}", batch.error().message);
      return 1;
    }
    if (batch->empty()) {
      // Idle: no write tells whether the database is up, so ask it.
      if (const auto now = std::chrono::steady_clock::now(); now - last_ping >= std::chrono::seconds(1)) {
        last_ping = now;
        auto up = sink_.ping();
        if (!up && sink_ok_) spdlog::warn("sink unreachable: {}", up.error().message);
        set_sink_ok(up.has_value());
      }
      if (sink_ok_) relay(**producer);
      continue;
    }
    SinkBatch work;
    std::set<std::string> sagas;
    for (auto& in : *batch) {
      work.next_offsets[{in.topic, in.partition}] = in.offset + 1;
      if (in.topic == kOutcomeTopic) {
        v1::SagaOutcome outcome;
        // A REPLAY saga is not compensated: its rows replaced the originals'
        // in place (same event ids), so deleting them would delete events the
        // warehouse held before the replay. It stays FAILED; run it again.
        if (outcome.ParseFromString(in.value) && outcome.state() == v1::SAGA_STATE_FAILED &&
            outcome.pipeline() == pipeline_.name && outcome.kind() != v1::SAGA_KIND_REPLAY) {
          work.compensate.push_back(outcome.saga_id());
        }
        continue;
      }
      Row row;
      if (!row.envelope.ParseFromString(in.value)) {
        spdlog::error("{}/{}@{}: not an envelope; skipped", in.topic, in.partition, in.offset);
        continue;
      }
      auto record = record_from_bytes(pipeline_, row.envelope.payload());
      if (!record) {
        spdlog::error("{}/{}@{}: {}; skipped", in.topic, in.partition, in.offset, record.error().message);
        continue;
      }
      row.record = std::move(*record);
      sagas.insert(row.envelope.saga_id());
      work.rows.push_back(std::move(row));
    }
    // Rows of a saga compensated earlier arrive late after a replay or a
    // stalled loader: they stay out of the warehouse.
    auto gone = with_sink("reading compensated sagas", [&] { return sink_.compensated(sagas); });
    if (!gone) return 0;  // shutting down; offsets not stored, the batch is redone
    std::erase_if(work.rows, [&](const Row& r) { return gone->contains(r.envelope.saga_id()); });
    const auto now = now_ms();
    auto outbox = [&](const std::vector<RowResult>& results) {
      FactBuilder loaded(v1::STEP_LOADED, instance_);
      FactBuilder refused(v1::STEP_REJECTED_AT_LOAD, instance_);
      std::vector<kafka::OutMessage> out;
      for (std::size_t i = 0; i < results.size(); ++i) {
        const auto& env = work.rows[i].envelope;
        if (results[i].written) {
          loaded.add(env.saga_id(), env.pipeline(), env.seq());
          continue;
        }
        v1::RejectedRecord dead;
        *dead.mutable_envelope() = env;
        auto* r = dead.add_reasons();
        r->set_rule("sink");
        r->set_value(results[i].error);
        r->set_expected("a row " + pipeline_.table + " accepts");
        dead.set_stage("load");
        dead.set_rejected_time_ms(now);
        refused.add_rejection(env.saga_id(), env.pipeline(), env.seq(), dead.reasons());
        out.push_back({pipeline_.dlq_topic(), env.device_id(), dead.SerializeAsString(), {}});
        spdlog::warn("event {} refused by the sink: {}", env.event_id(), results[i].error);
      }
      for (const auto* b : {&loaded, &refused}) {
        for (const auto& f : b->build(now)) out.push_back({kSagaTopic, f.saga_id(), f.SerializeAsString(), {}});
      }
      for (const auto& saga : work.compensate) {
        v1::ProgressFact f;
        f.set_saga_id(saga);
        f.set_pipeline(pipeline_.name);
        f.set_step(v1::STEP_COMPENSATED);
        f.set_source(instance_);
        f.set_time_ms(now);
        out.push_back({kSagaTopic, saga, f.SerializeAsString(), {}});
      }
      return out;
    };
    // Rows, compensations, offsets and facts commit together or not at all.
    // A sink outage keeps the batch and retries it: offsets don't move.
    const auto written = with_sink("writing " + std::to_string(work.rows.size()) + " rows",
                                   [&] { return sink_.write(work, outbox); });
    if (!written) return 0;  // shutting down; nothing of the batch was stored
    for (const auto& saga : work.compensate) spdlog::info("compensated saga {}: its rows are deleted", saga);
    loaded_total += work.rows.size();
    rows_metric.add(work.rows.size());
    batches_metric.add();
    relay(**producer);
    spdlog::debug("batch: {} rows, {} loaded so far", work.rows.size(), loaded_total);
  }
  spdlog::info("draining: loaded {} rows this run", loaded_total);
  relay(**producer);
  (*consumer)->close();
  return 0;
}

}  // namespace starling::load
