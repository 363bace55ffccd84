#include "services/clean/cleaner.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "services/common/facts.h"
#include "services/common/records.h"
#include "starling/v1/saga.pb.h"

namespace starling::clean {

Cleaner::Cleaner(const PipelineConfig& pipeline, std::string instance)
    : pipeline_(pipeline), rules_(pipeline), instance_(std::move(instance)) {}

void Cleaner::clean(const std::string& raw, int32_t partition, CleanState& state, int64_t now, CleanResult& res) const {
  res.clean = false;
  res.changes.clear();
  auto& rej = res.rejected;
  rej.Clear();
  // Only a rejection carries these; a clean record never pays for them.
  auto rejecting = [&rej, now]() -> v1::RejectedRecord& {
    if (rej.stage().empty()) {
      rej.set_stage("clean");
      rej.set_rejected_time_ms(now);
    }
    return rej;
  };
  auto add = [&rejecting](std::string rule, std::string field, std::string value, std::string expected) {
    auto* r = rejecting().add_reasons();
    r->set_rule(std::move(rule));
    r->set_field(std::move(field));
    r->set_value(std::move(value));
    r->set_expected(std::move(expected));
  };
  if (!res.envelope.ParseFromString(raw)) {
    // Not ours to clean and not tied to a saga: park it with the reason.
    res.envelope.Clear();
    add("envelope", "", "", "a starling.v1.Envelope");
    rej.mutable_envelope()->set_payload(raw);
    return;
  }
  auto& env = res.envelope;
  // The envelope as received goes into the rejection only when there is one.
  auto reject = [&rejecting, &env] { *rejecting().mutable_envelope() = env; };
  // A replayed event has the id of its original: the dedupe window would
  // take it for its own duplicate. `starling replay` replays each id once.
  const bool replayed = !env.origin_saga_id().empty();
  if (replayed) partition = replay_state_partition(partition, env.saga_id());
  if (pipeline_.dedupe_window_ms > 0 && !replayed) {
    // A device resending, or a retried request without Idempotency-Key: the
    // first copy wins. The same event of the same saga again (a retried
    // Idempotency-Key request or a redelivered MQTT message re-produces the
    // identical envelope) is not a duplicate: it is cleaned again, as a
    // redelivery is, and every stage after folds it.
    const auto fingerprint = event_fingerprint(env.saga_id(), env.seq());
    const auto first = state.seen(partition, env.event_id());
    const bool in_window = first && std::abs(env.ingest_time_ms() - first->ingest_time_ms) <= pipeline_.dedupe_window_ms;
    if (in_window && first->fingerprint != fingerprint) {
      add("dedupe", "event_id", env.event_id(),
          fmt::format("an event id not seen in the last {} (first seen at ingest time {} ms)",
                      format_duration(pipeline_.dedupe_window_ms), first->ingest_time_ms));
      reject();
      return;
    }
    if (!in_window) state.put_seen(partition, env.event_id(), {env.ingest_time_ms(), fingerprint});
  }
  if (!res.record) res.record = new_record(pipeline_);
  auto& record = *res.record;
  if (auto parsed = parse_record(pipeline_, env.payload(), record); !parsed) {
    add("schema", "", parsed.error().message, pipeline_.message_type);
    reject();
    return;
  }
  const RecordContext ctx{env.ingest_time_ms(), env.event_time_ms() != 0 ? env.event_time_ms() : env.ingest_time_ms()};
  DeviceMemory memory;
  if (rules_.uses_memory()) memory = state.device(partition, env.device_id());
  auto& outcome = res.outcome;
  rules_.apply(record, ctx, memory, outcome);
  if (!outcome.reasons.empty()) {
    auto& into = rejecting();
    for (auto& r : outcome.reasons) *into.add_reasons() = std::move(r);
    reject();
    return;
  }
  res.clean = true;
  if (rules_.uses_memory() && remember(memory, outcome.observed)) state.put_device(partition, env.device_id(), memory);
  if (!outcome.changes.empty()) {
    record.SerializeToString(env.mutable_payload());
    // Formatting the changes costs as much as the rules: only when printed.
    if (spdlog::should_log(spdlog::level::debug)) {
      spdlog::debug("event {}: {}", env.event_id(), describe_changes(outcome.changes));
    }
  }
  res.changes.swap(outcome.changes);
}

CleanedBatch Cleaner::clean_batch(const std::vector<kafka::InMessage>& batch, CleanState& state, int64_t now) const {
  CleanedBatch b;
  FactBuilder cleaned(v1::STEP_CLEANED, instance_);
  FactBuilder rejected(v1::STEP_REJECTED, instance_);
  b.out.reserve(batch.size() + 16);
  CleanResult r;  // reused: see clean()
  for (const auto& in : batch) {
    b.next_offsets[{in.topic, in.partition}] = in.offset + 1;
    clean(in.value, in.partition, state, now, r);
    const auto& env = r.envelope;
    if (r.clean) {
      cleaned.add(env.saga_id(), env.pipeline(), env.seq());
      auto headers = in.headers;
      if (!r.changes.empty()) headers.push_back({kChangesHeader, describe_changes(r.changes)});
      b.out.push_back({pipeline_.clean_topic(), in.key, r.changes.empty() ? in.value : env.SerializeAsString(), std::move(headers)});
      ++b.cleaned;
      continue;
    }
    if (!env.saga_id().empty()) rejected.add_rejection(env.saga_id(), env.pipeline(), env.seq(), r.rejected.reasons());
    if (r.rejected.reasons(0).rule() == "envelope") {
      spdlog::warn("{}/{}@{}: not an envelope; sent to {}", in.topic, in.partition, in.offset, pipeline_.rejected_topic());
    }
    b.out.push_back({pipeline_.rejected_topic(), in.key, r.rejected.SerializeAsString(), in.headers});
    ++b.rejected;
  }
  for (const auto* f : {&cleaned, &rejected}) {
    for (const auto& fact : f->build(now)) b.out.push_back({kSagaTopic, fact.saga_id(), fact.SerializeAsString(), {}});
  }
  return b;
}

}  // namespace starling::clean
