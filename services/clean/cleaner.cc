#include "services/clean/cleaner.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>
#include <map>

#include "services/common/facts.h"
#include "services/common/records.h"
#include "starling/v1/saga.pb.h"

namespace starling::clean {

Cleaner::Cleaner(const PipelineConfig& pipeline, std::string instance, int threads)
    : pipeline_(pipeline), rules_(pipeline), instance_(std::move(instance)), threads_(std::max(1, threads)) {}

void Cleaner::clean(const std::string& raw, int32_t partition, CleanState& state, int64_t now, CleanResult& res) const {
  res.clean = false;
  res.rewritten = false;
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
  // But the original's own verdict stands: when the live window says this id
  // was first seen as another event (another saga or seq), the original was
  // a duplicate and was rejected, so the replay rejects it too, instead of
  // loading it over the first copy's row. (The replay topic has the raw
  // topic's partitions and keys, so the id is in this partition's window.)
  const bool replayed = !env.origin_saga_id().empty();
  if (replayed && pipeline_.dedupe_window_ms > 0) {
    const auto first = state.seen(partition, env.event_id());
    if (first && first->fingerprint != event_fingerprint(env.origin_saga_id(), env.origin_seq())) {
      add("dedupe", "event_id", env.event_id(),
          fmt::format("an event id whose original was not a duplicate (first seen at ingest time {} ms as another "
                      "event)",
                      first->ingest_time_ms));
      reject();
      return;
    }
  }
  if (replayed) partition = replay_state_partition(partition, env.saga_id());
  if (pipeline_.dedupe_window_ms > 0 && !replayed) {
    // A device resending, or a retried request without Idempotency-Key: the
    // first copy wins. The same event of the same saga again (a retried
    // Idempotency-Key request or a redelivered MQTT message re-produces the
    // identical envelope) is not a duplicate: it is cleaned again, as a
    // redelivery is, and every stage after folds it.
    const auto fingerprint = event_fingerprint(env.saga_id(), env.seq());
    const auto first = state.seen(partition, env.event_id());
    const bool in_window =
        first && std::abs(env.ingest_time_ms() - first->ingest_time_ms) <= pipeline_.dedupe_window_ms;
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
  // The envelope says what changed, and only this stage's changes (a raw
  // envelope claiming some of its own loses them).
  res.rewritten = !outcome.changes.empty() || env.changes_size() > 0;
  if (!outcome.changes.empty()) {
    record.SerializeToString(env.mutable_payload());
    // Formatting the changes as text costs as much as the rules: only when printed.
    if (spdlog::should_log(spdlog::level::trace)) {
      spdlog::trace("event {}: {}", env.event_id(), describe_changes(outcome.changes));
    }
  }
  if (res.rewritten) to_proto(outcome.changes, *env.mutable_changes());
}

// One input message's outcome, ready to join its batch.
struct Cleaner::Piece {
  kafka::OutMessage out;
  bool clean = false;
  bool warm_up = false;  // a replay's warm-up: state only, no output, no fact
  std::string saga_id;
  std::string pipeline;
  uint32_t seq = 0;
  google::protobuf::RepeatedPtrField<v1::Reason> reasons;  // when rejected
};

void Cleaner::clean_one(const kafka::InMessage& in, CleanState& state, int64_t now, CleanResult& r,
                        Piece& piece) const {
  clean(in.value, in.partition, state, now, r);
  const auto& env = r.envelope;
  piece.clean = r.clean;
  piece.saga_id = env.saga_id();
  piece.pipeline = env.pipeline();
  piece.seq = env.seq();
  // Cleaned (or rejected) into the replay's device state like any replayed
  // event, and then nothing: it is not part of the replay saga.
  piece.warm_up = env.warm_up() && !env.origin_saga_id().empty();
  if (piece.warm_up) return;
  if (r.clean) {
    piece.out = {pipeline_.clean_topic(), in.key, r.rewritten ? env.SerializeAsString() : in.value, in.headers};
    return;
  }
  if (r.rejected.reasons(0).rule() == "envelope") {
    spdlog::warn("{}/{}@{}: not an envelope; sent to {}", in.topic, in.partition, in.offset,
                 pipeline_.rejected_topic());
  }
  piece.out = {pipeline_.rejected_topic(), in.key, r.rejected.SerializeAsString(), in.headers};
  piece.reasons.Swap(r.rejected.mutable_reasons());
}

CleanedBatch Cleaner::clean_batch(const std::vector<kafka::InMessage>& batch, CleanState& state, int64_t now) const {
  std::vector<Piece> pieces(batch.size());
  if (threads_ > 1 && state.concurrent_partitions()) {
    // Each input partition whole to one thread (its devices' state is its
    // own), the largest first to the least loaded thread.
    std::map<std::pair<std::string_view, int32_t>, std::vector<std::size_t>> by_partition;
    for (std::size_t i = 0; i < batch.size(); ++i) by_partition[{batch[i].topic, batch[i].partition}].push_back(i);
    std::vector<const std::vector<std::size_t>*> parts;
    parts.reserve(by_partition.size());
    for (const auto& [tp, indices] : by_partition) parts.push_back(&indices);
    std::stable_sort(parts.begin(), parts.end(), [](auto* a, auto* b) { return a->size() > b->size(); });
    std::vector<std::vector<const std::vector<std::size_t>*>> work(static_cast<std::size_t>(threads_));
    std::vector<std::size_t> load(work.size(), 0);
    for (const auto* p : parts) {
      const auto w = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
      work[w].push_back(p);
      load[w] += p->size();
    }
    auto run = [&](const std::vector<const std::vector<std::size_t>*>& mine) {
      CleanResult r;  // reused: see clean()
      for (const auto* indices : mine) {
        for (const auto i : *indices) clean_one(batch[i], state, now, r, pieces[i]);
      }
    };
    std::vector<std::future<void>> others;
    for (std::size_t w = 1; w < work.size(); ++w) {
      if (!work[w].empty()) others.push_back(std::async(std::launch::async, run, std::cref(work[w])));
    }
    run(work[0]);
    for (auto& f : others) f.get();
  } else {
    CleanResult r;  // reused: see clean()
    for (std::size_t i = 0; i < batch.size(); ++i) clean_one(batch[i], state, now, r, pieces[i]);
  }
  CleanedBatch b;
  b.out.reserve(batch.size() + 16);
  FactBuilder cleaned(v1::STEP_CLEANED, instance_);
  FactBuilder rejected(v1::STEP_REJECTED, instance_);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    auto& piece = pieces[i];
    b.next_offsets[{batch[i].topic, batch[i].partition}] = batch[i].offset + 1;
    if (piece.warm_up) continue;
    if (piece.clean) {
      cleaned.add(piece.saga_id, piece.pipeline, piece.seq);
      ++b.cleaned;
    } else {
      for (const auto& reason : piece.reasons) ++b.reasons[{reason.rule(), reason.field()}];
      if (!piece.saga_id.empty()) rejected.add_rejection(piece.saga_id, piece.pipeline, piece.seq, piece.reasons);
      ++b.rejected;
    }
    b.out.push_back(std::move(piece.out));
  }
  for (const auto* f : {&cleaned, &rejected}) {
    for (const auto& fact : f->build(now)) b.out.push_back({kSagaTopic, fact.saga_id(), fact.SerializeAsString(), {}});
  }
  return b;
}

Result<std::vector<kafka::OutMessage>> Cleaner::too_large(const kafka::OutMessage& output, std::size_t size,
                                                          std::size_t limit, int64_t now_ms) const {
  const bool clean_record = output.topic == pipeline_.clean_topic();
  v1::RejectedRecord was;
  if (clean_record ? !was.mutable_envelope()->ParseFromString(output.value)
                   : output.topic != pipeline_.rejected_topic() || !was.ParseFromString(output.value)) {
    return fail(Errc::kInvalidArgument, fmt::format("an output to {} of {} bytes is over the {} a message may have and "
                                                    "is not a record this stage can dead-letter",
                                                    output.topic, size, limit));
  }
  const auto dead = too_large_dead_letter(was.envelope(), was.reasons(), "clean", size, limit, now_ms);
  std::vector<kafka::OutMessage> out = {{pipeline_.rejected_topic(), output.key, dead.SerializeAsString(), {}}};
  const auto& env = dead.envelope();
  if (clean_record && !env.saga_id().empty()) {
    FactBuilder rejected(v1::STEP_REJECTED, instance_);
    rejected.add_rejection(env.saga_id(), env.pipeline(), env.seq(), dead.reasons());
    for (const auto& fact : rejected.build(now_ms)) {
      out.push_back({kSagaTopic, fact.saga_id(), fact.SerializeAsString(), {}});
    }
  }
  return out;
}

}  // namespace starling::clean
