#include "services/load/load_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <set>

#include "services/common/facts.h"
#include "services/common/metrics.h"
#include "services/common/records.h"
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
                               {{"pipeline", pipeline.name}})),
      ingest_to_loaded_(metrics().histogram(
          "starling_load_ingest_to_loaded_seconds",
          "From an event's ingest time (its envelope's, when ingest accepted it) to the commit of its row",
          {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}, {{"pipeline", pipeline.name}})),
      dead_letters_(metrics().counter("starling_load_dead_letters_total",
                                      "Rows the sink refused, sent to <pipeline>.dlq with the reason",
                                      {{"pipeline", pipeline.name}})),
      rows_metric_(
          metrics().counter("starling_load_rows_total", "Rows committed to the sink", {{"pipeline", pipeline.name}})),
      batches_metric_(metrics().counter("starling_load_batches_total", "Sink transactions committed",
                                        {{"pipeline", pipeline.name}})) {
  sink_up_.set(1);
}

void LoadService::relay() {
  if (auto sent = kafka::relay_outbox(sink_, *producer_); !sent) {
    spdlog::warn("outbox relay: {}; will retry", sent.error().message);
  }
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
  // The loader reacts to saga outcomes: an atomic pipeline's FAILED saga's
  // rows are deleted.
  // <p>.clean.replay carries replays of this stage's input (`starling
  // replay --stage load`); its offsets are stored beside the others.
  return run(**producer, kafka::KafkaConsumer::factory(kafka_, pipeline_.load_group(), pipeline_.load_inputs()),
             {.batch_max = options_.batch_max, .batch_wait = options_.batch_wait});
}

int LoadService::run(kafka::Producer& producer, const kafka::ConsumerFactory& consumer, kafka::LoopOptions loop) {
  producer_ = &producer;
  relay();  // facts a previous run committed but did not send
  kafka::ConsumerLoop runner("load " + pipeline_.name, *this, producer, std::move(loop));
  const int rc = runner.run(consumer);
  spdlog::info("draining: loaded {} rows this run", loaded_total_);
  relay();
  producer_ = nullptr;
  return rc;
}

Result<std::map<kafka::TopicPartition, int64_t>> LoadService::assigned(
    const std::vector<kafka::TopicPartition>& parts) {
  // Starting without the stored offsets would redo or skip work: the loop
  // retries while the database is down (an outage during a rebalance).
  auto stored = sink_.offsets();
  set_sink_ok(stored.has_value());
  if (!stored) return std::unexpected(stored.error());
  std::map<kafka::TopicPartition, int64_t> starts;
  for (const auto& tp : parts) {
    if (auto it = stored->find(tp); it != stored->end()) starts[tp] = it->second;
  }
  spdlog::info("resuming {} of {} partitions from offsets stored in the sink", starts.size(), parts.size());
  return starts;
}

Result<kafka::Work> LoadService::apply(std::vector<kafka::InMessage> batch) {
  auto work = std::make_shared<SinkBatch>();
  auto sagas = std::make_shared<std::set<std::string>>();
  for (const auto& in : batch) {
    work->next_offsets[{in.topic, in.partition}] = in.offset + 1;
    if (in.topic == kOutcomeTopic) {
      v1::SagaOutcome outcome;
      if (!outcome.ParseFromString(in.value) || outcome.state() != v1::SAGA_STATE_FAILED ||
          outcome.pipeline() != pipeline_.name) {
        continue;
      }
      // Rows are deleted only for an all-or-nothing pipeline: accepted data
      // is never deleted otherwise, whoever published FAILED. A REPLAY saga
      // is not compensated either: its rows replaced the originals' in place
      // (same event ids), so deleting them would delete events the warehouse
      // held before the replay. It stays FAILED; run it again.
      if (!pipeline_.saga_atomic || outcome.kind() == v1::SAGA_KIND_REPLAY) {
        spdlog::warn("saga {} FAILED ({}); its rows stay: {}", outcome.saga_id(), outcome.reason(),
                     pipeline_.saga_atomic ? "a replay is not compensated" : "the pipeline is not saga.atomic");
        continue;
      }
      work->compensate.push_back(outcome.saga_id());
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
    sagas->insert(row.envelope.saga_id());
    work->rows.push_back(std::move(row));
  }
  kafka::Work out;
  // Rows, compensations, offsets and facts commit together or not at all. A
  // sink outage fails the store, and the loop retries it: offsets don't move.
  // Ingest time to commit of each live row written (not those the sink
  // refused), observed once the store succeeded.
  auto latencies = std::make_shared<std::vector<double>>();
  auto dead_letters = std::make_shared<uint64_t>(0);  // rows the sink refused: to <p>.dlq
  out.store = [this, work, sagas, latencies, dead_letters]() -> Status {
    // Rows of a saga compensated earlier arrive late after a replay or a
    // stalled loader: they stay out of the warehouse.
    auto gone = sink_.compensated(*sagas);
    set_sink_ok(gone.has_value());
    if (!gone) return std::unexpected(gone.error());
    std::erase_if(work->rows, [&](const Row& r) { return gone->contains(r.envelope.saga_id()); });
    const auto now = now_ms();
    auto written = sink_.write(*work, [&](const std::vector<RowResult>& results) {
      latencies->clear();
      *dead_letters = 0;
      for (std::size_t i = 0; i < results.size() && i < work->rows.size(); ++i) {
        if (!results[i].written) ++*dead_letters;
        // A replayed event (origin_saga_id set) keeps its original's ingest
        // time: it would measure the replay's age, not the pipeline.
        const auto& env = work->rows[i].envelope;
        if (results[i].written && env.ingest_time_ms() > 0 && env.origin_saga_id().empty())
          latencies->push_back(static_cast<double>(now - env.ingest_time_ms()) / 1000.0);
      }
      return outbox(*work, results, now);
    });
    set_sink_ok(written.has_value());
    return written;
  };
  out.stored = [this, work, latencies, dead_letters] {
    dead_letters_.add(*dead_letters);
    for (const auto& saga : work->compensate) spdlog::info("compensated saga {}: its rows are deleted", saga);
    for (const double l : *latencies) ingest_to_loaded_.observe(l);
    loaded_total_ += work->rows.size();
    rows_metric_.add(work->rows.size());
    batches_metric_.add();
    relay();
    spdlog::debug("batch: {} rows, {} loaded so far", work->rows.size(), loaded_total_);
  };
  return out;
}

std::vector<kafka::OutMessage> LoadService::outbox(const SinkBatch& work, const std::vector<RowResult>& results,
                                                   int64_t now) {
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
    // The sinks' trigger names a cross-device rewrite of an event id (sink.h).
    if (results[i].error.find(kEventIdConflict) != std::string::npos) {
      r->set_rule(std::string(kEventIdConflict));
      r->set_field("event_id");
      r->set_expected("an event id that no other device's loaded event holds");
    } else {
      r->set_rule("sink");
      r->set_expected("a row " + pipeline_.table + " accepts");
    }
    r->set_value(results[i].error);
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
}

Result<std::vector<kafka::OutMessage>> LoadService::too_large(const kafka::OutMessage& output, std::size_t size,
                                                              std::size_t limit) {
  v1::RejectedRecord was;
  if (output.topic != pipeline_.dlq_topic() || !was.ParseFromString(output.value)) {
    return fail(Errc::kInvalidArgument, fmt::format("an output to {} of {} bytes is over the {} a message may have and "
                                                    "is not a dead letter this stage can cut",
                                                    output.topic, size, limit));
  }
  const auto dead = too_large_dead_letter(was.envelope(), was.reasons(), "load", size, limit, now_ms());
  return std::vector<kafka::OutMessage>{{output.topic, output.key, dead.SerializeAsString(), {}}};
}

Status LoadService::caught_up(bool idle) {
  if (!idle) return {};
  // Idle: no write tells whether the database is up, so ask it.
  if (const auto now = std::chrono::steady_clock::now(); now - last_ping_ >= std::chrono::seconds(1)) {
    last_ping_ = now;
    auto up = sink_.ping();
    if (!up && sink_ok_) spdlog::warn("sink unreachable: {}", up.error().message);
    set_sink_ok(up.has_value());
  }
  if (sink_ok_) relay();
  return {};
}

}  // namespace starling::load
