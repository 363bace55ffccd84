#include "services/saga/coordinator.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <unordered_map>

#include "services/common/pipeline.h"

namespace starling::saga {

namespace {

// Transitions services may react to (or alert on): the ends, the alerts
// (STALLED, OVERDUE), and the recovery from STALLED.
bool publishes(v1::SagaState before, v1::SagaState after) {
  if (before == after) return false;
  switch (after) {
    case v1::SAGA_STATE_COMPLETED:
    case v1::SAGA_STATE_STALLED:
    case v1::SAGA_STATE_OVERDUE:
    case v1::SAGA_STATE_FAILED:
    case v1::SAGA_STATE_COMPENSATED:
      return true;
    default:
      return before == v1::SAGA_STATE_STALLED;
  }
}

kafka::OutMessage outcome_message(const v1::SagaRecord& r, int64_t now) {
  return {kOutcomeTopic, r.saga_id(), make_outcome(r, now).SerializeAsString(), {}};
}

}  // namespace

v1::SagaOutcome make_outcome(const v1::SagaRecord& r, int64_t time_ms) {
  const auto c = counts(r);
  v1::SagaOutcome o;
  o.set_saga_id(r.saga_id());
  o.set_pipeline(r.pipeline());
  o.set_state(r.state());
  o.set_total(r.total());
  o.set_kind(r.kind());
  o.set_loaded(c.loaded);
  o.set_rejected(c.rejected + c.rejected_at_load);
  if (r.timeline_size() > 0) o.set_reason(r.timeline(r.timeline_size() - 1).cause());
  o.set_time_ms(time_ms);
  return o;
}

Coordinator::Coordinator(SagaStore& store, CoordinatorOptions options, Clock clock)
    : store_(store), options_(std::move(options)), clock_(std::move(clock)) {}

const SagaPolicy& Coordinator::policy_for(const std::string& pipeline) const {
  auto it = options_.pipelines.find(pipeline);
  return it == options_.pipelines.end() ? options_.defaults : it->second;
}

Result<std::size_t> Coordinator::fold_batch(const std::vector<kafka::InMessage>& batch) {
  struct Dirty {
    v1::SagaRecord record;
    v1::SagaState before = v1::SAGA_STATE_UNSPECIFIED;
    int64_t old_created = 0;
    int64_t old_deadline = 0;
    bool changed = false;
  };
  const int64_t now = clock_();
  std::unordered_map<std::string, Dirty> dirty;
  SagaCommit commit;
  for (const auto& in : batch) {
    commit.next_offsets[{in.topic, in.partition}] = in.offset + 1;
    v1::ProgressFact fact;
    if (!fact.ParseFromString(in.value) || fact.saga_id().empty()) {
      spdlog::warn("{}/{}@{}: not a progress fact; skipped", in.topic, in.partition, in.offset);
      continue;
    }
    if (fact.time_ms() == 0) fact.set_time_ms(now);
    auto it = dirty.find(fact.saga_id());
    if (it == dirty.end()) {
      auto stored = store_.get(fact.saga_id());
      if (!stored) return std::unexpected(stored.error());
      if (!stored->has_value() && fact.time_ms() < now - policy_for(fact.pipeline()).retention_ms) {
        // A fact older than retention for a saga we don't know: the saga was
        // finished and removed. Re-creating it would make a half saga that
        // stays OVERDUE for good.
        ++late_skipped_;
        continue;
      }
      Dirty d;
      if (auto& record = *stored; record.has_value()) {
        d.record = std::move(*record);
        d.before = d.record.state();
        d.old_deadline = d.record.deadline_ms();
        d.old_created = d.record.created_ms();
      }
      it = dirty.emplace(fact.saga_id(), std::move(d)).first;
    }
    auto& d = it->second;
    if (d.record.partition() != in.partition) {
      d.record.set_partition(in.partition);
      d.changed = true;
    }
    d.changed |= fold(d.record, fact);
    if (options_.activity != nullptr) options_.activity->record(fact, d.record.created_ms(), now);
    ++folded_;
  }
  std::size_t outcomes = 0;
  std::vector<Moved> moves;
  for (auto& [id, d] : dirty) {
    if (!d.changed) continue;
    auto& r = d.record;
    // The index entry only moves earlier here. Progress pushes the stall
    // deadline later on nearly every fact; leaving the entry in place saves
    // two index writes per fact, and tick(), finding it early, moves it to
    // the real deadline (apply_deadlines checks the real times).
    const int64_t due = next_deadline(r, policy_for(r.pipeline()));
    if (r.deadline_ms() == 0 || (due != 0 && due < r.deadline_ms())) r.set_deadline_ms(due);
    if (publishes(d.before, r.state())) {
      commit.outbox.push_back(outcome_message(r, now));
      ++outcomes;
    }
    if (d.before != r.state()) moves.push_back({r.pipeline(), d.before, r.state()});
    commit.sagas.push_back({std::move(r), d.old_deadline, d.before, d.old_created});
  }
  if (auto st = store_.commit(commit); !st) return std::unexpected(st.error());
  count_moves(moves);
  return outcomes;
}

Status Coordinator::count_states() {
  state_counts_.clear();
  // Every state of every configured pipeline has a count, 0 included, so a
  // dashboard or an alert on STALLED finds a series before any saga stalls.
  for (const auto& [pipeline, policy] : options_.pipelines) {
    for (int s = v1::SagaState_MIN + 1; s <= v1::SagaState_MAX; ++s) {
      if (v1::SagaState_IsValid(s)) state_counts_[{pipeline, static_cast<v1::SagaState>(s)}] = 0;
    }
  }
  return store_.scan([this](const v1::SagaRecord& r) {
    ++state_counts_[{r.pipeline(), r.state()}];
    return true;
  });
}

void Coordinator::count_moves(const std::vector<Moved>& moves) {
  for (const auto& m : moves) {
    if (m.before != v1::SAGA_STATE_UNSPECIFIED) --state_counts_[{m.pipeline, m.before}];
    if (m.after != v1::SAGA_STATE_UNSPECIFIED) ++state_counts_[{m.pipeline, m.after}];
  }
}

Result<std::size_t> Coordinator::tick() {
  const int64_t now = clock_();
  SagaCommit commit;
  std::vector<Moved> moves;
  std::size_t handled = 0;
  Status read_error;
  auto st = store_.due(now, [&](int64_t deadline, const std::string& id) {
    auto stored = store_.get(id);
    if (!stored) {
      read_error = std::unexpected(stored.error());
      return false;
    }
    if (!stored->has_value()) return true;  // cannot happen: removal drops the entry in the same batch
    auto r = std::move(**stored);
    if (!owns(r.partition())) return true;
    const auto stored_state = r.state();
    const auto& d = policy_for(r.pipeline());
    if (is_finished(r, d)) {
      if (now >= next_deadline(r, d)) {
        r.set_deadline_ms(deadline);
        moves.push_back({r.pipeline(), r.state(), v1::SAGA_STATE_UNSPECIFIED});
        commit.removed.push_back(std::move(r));
        return ++handled < options_.tick_max;
      }
    } else if (const auto before = r.state(); apply_deadlines(r, d, now)) {
      if (publishes(before, r.state())) commit.outbox.push_back(outcome_message(r, now));
      if (before != r.state()) moves.push_back({r.pipeline(), before, r.state()});
    }
    // Retention or deadlines changed since the entry was written: move it.
    r.set_deadline_ms(next_deadline(r, d));
    const auto created = r.created_ms();
    commit.sagas.push_back({std::move(r), deadline, stored_state, created});
    return ++handled < options_.tick_max;
  });
  if (!st) return std::unexpected(st.error());
  if (!read_error) return std::unexpected(read_error.error());
  if (commit.sagas.empty() && commit.removed.empty()) return std::size_t{0};
  if (auto c = store_.commit(commit); !c) return std::unexpected(c.error());
  count_moves(moves);
  if (!commit.removed.empty()) spdlog::info("retention removed {} finished sagas", commit.removed.size());
  return commit.outbox.size();
}

Result<int64_t> parse_duration_ms(const std::string& text) {
  int64_t n = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, n);
  if (ec != std::errc{} || n < 0)
    return fail(Errc::kInvalidArgument, "'" + text + "' is not a duration like 90s, 30m, 6h or 7d");
  const std::string unit(p, end);
  static const std::map<std::string, int64_t> units = {{"", 1},       {"ms", 1},        {"s", 1000},
                                                       {"m", 60'000}, {"h", 3'600'000}, {"d", 86'400'000}};
  auto u = units.find(unit);
  if (u == units.end()) return fail(Errc::kInvalidArgument, "'" + text + "' is not a duration like 90s, 30m, 6h or 7d");
  return n * u->second;
}

}  // namespace starling::saga
