#include "services/saga/saga_state.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>

#include "services/common/time.h"

namespace starling::saga {

// A seq beyond this is a corrupt fact, not a batch: refuse to allocate for it.
constexpr uint32_t kMaxSeq = 1u << 24;

bool set_bit(std::string& bits, uint32_t seq) {
  if (seq >= kMaxSeq) return false;
  const std::size_t byte = seq / 8;
  if (bits.size() <= byte) bits.resize(byte + 1, '\0');
  const auto mask = static_cast<char>(1u << (seq % 8));
  if (bits[byte] & mask) return false;
  bits[byte] = static_cast<char>(bits[byte] | mask);
  return true;
}

bool test_bit(const std::string& bits, uint32_t seq) {
  const std::size_t byte = seq / 8;
  return byte < bits.size() && (bits[byte] & (1u << (seq % 8))) != 0;
}

uint32_t popcount(const std::string& bits) {
  uint32_t n = 0;
  for (const char c : bits) n += static_cast<uint32_t>(std::popcount(static_cast<unsigned char>(c)));
  return n;
}

namespace {

std::string* bitmap_for(v1::SagaRecord& r, v1::Step step) {
  switch (step) {
    case v1::STEP_CLEANED:
      return r.mutable_cleaned();
    case v1::STEP_REJECTED:
      return r.mutable_rejected();
    case v1::STEP_LOADED:
      return r.mutable_loaded();
    case v1::STEP_REJECTED_AT_LOAD:
      return r.mutable_rejected_at_load();
    default:
      return nullptr;
  }
}

void transition(v1::SagaRecord& r, v1::SagaState to, int64_t time_ms, std::string cause) {
  auto* t = r.add_timeline();
  t->set_from(r.state());
  t->set_to(to);
  t->set_time_ms(time_ms);
  t->set_cause(std::move(cause));
  // Keep the creation entry, drop the oldest of the rest.
  if (r.timeline_size() > kTimelineMax) r.mutable_timeline()->DeleteSubrange(1, 1);
  r.set_state(to);
  // FAILED is final unless an atomic pipeline's loader compensates it, and
  // then COMPENSATED sets the time again.
  if (to == v1::SAGA_STATE_COMPLETED || to == v1::SAGA_STATE_FAILED || to == v1::SAGA_STATE_COMPENSATED) {
    r.set_finished_ms(time_ms);
  }
}

// Where the facts seen so far take the saga. Only forward: a terminal state
// stays (FAILED leaves only for COMPENSATED), STALLED leaves only when this
// fact made progress, and OVERDUE only for COMPLETED or FAILED. A seq the
// sink refused is a definite failure (not for a replay, which rewrote rows
// in place and is never compensated: its refusals are rejections).
v1::SagaState next_state(const v1::SagaRecord& r, bool progressed) {
  const auto s = r.state();
  if (s == v1::SAGA_STATE_COMPLETED || s == v1::SAGA_STATE_COMPENSATED) return s;
  if (s == v1::SAGA_STATE_FAILED) return r.compensated() ? v1::SAGA_STATE_COMPENSATED : s;
  const auto c = counts(r);
  if (r.kind() != v1::SAGA_KIND_REPLAY && c.rejected_at_load > 0) return v1::SAGA_STATE_FAILED;
  if (r.ingested() && c.in_flight == 0) return v1::SAGA_STATE_COMPLETED;
  if (s == v1::SAGA_STATE_OVERDUE) return s;
  if (s == v1::SAGA_STATE_STALLED && !progressed) return s;
  if (c.cleaned + c.rejected + c.loaded + c.rejected_at_load > 0) return v1::SAGA_STATE_IN_FLIGHT;
  return v1::SAGA_STATE_ACCEPTED;
}

// Facts of a replay's events arrive while `starling replay` still publishes
// (or is paused); without its INGESTED fact the total is not known yet.
bool replay_publishing(const v1::SagaRecord& r) { return !r.ingested() && r.saga_id().starts_with(kReplaySagaPrefix); }

int64_t last_progress(const v1::SagaRecord& r) { return std::max(r.progress_ms(), r.created_ms()); }

}  // namespace

bool is_terminal(v1::SagaState s) {
  return s == v1::SAGA_STATE_COMPLETED || s == v1::SAGA_STATE_FAILED || s == v1::SAGA_STATE_COMPENSATED;
}

bool is_finished(const v1::SagaRecord& r, const SagaPolicy& d) {
  const auto s = r.state();
  return s == v1::SAGA_STATE_COMPLETED || s == v1::SAGA_STATE_COMPENSATED || (s == v1::SAGA_STATE_FAILED && !d.atomic);
}

bool fold(v1::SagaRecord& r, const v1::ProgressFact& f) {
  bool changed = false;
  bool progressed = false;
  if (r.saga_id().empty()) {
    r.set_saga_id(f.saga_id());
    r.set_created_ms(f.time_ms());
    changed = true;
  }
  if (r.pipeline().empty() && !f.pipeline().empty()) {
    r.set_pipeline(f.pipeline());
    changed = true;
  }
  if (f.step() == v1::STEP_INGESTED) {
    if (!r.ingested()) {
      r.set_ingested(true);
      r.set_total(f.total());
      if (f.kind() == v1::SAGA_KIND_REPLAY) {
        // A replay saga exists as a whole once its command has published every
        // event and knows the total: that is its creation, and its deadlines
        // start there (a long or paused replay is the command's to report).
        r.set_kind(f.kind());
        *r.mutable_replay() = f.replay();
        r.set_created_ms(f.time_ms());
      } else {
        // Creation is ingest's time even when another step's fact came first.
        r.set_created_ms(r.created_ms() == 0 ? f.time_ms() : std::min(r.created_ms(), f.time_ms()));
      }
      progressed = true;
    }
  } else if (f.step() == v1::STEP_COMPENSATED) {
    if (!r.compensated()) {
      r.set_compensated(true);
      changed = true;
    }
    // A repeated compensation still moves a FAILED saga on (the loader may
    // have compensated before the coordinator decided FAILED).
    if (r.state() == v1::SAGA_STATE_FAILED) changed = true;
  } else if (auto* bits = bitmap_for(r, f.step())) {
    // Reasons count once per seq: only a rejection that sets a new bit counts.
    for (const auto& rej : f.rejections()) {
      if (!set_bit(*bits, rej.seq())) continue;
      progressed = true;
      for (const auto& reason : rej.reasons()) ++(*r.mutable_reason_counts())[reason.rule() + ":" + reason.field()];
    }
    for (const auto& range : f.seqs()) {
      for (uint32_t s = range.first(); s <= range.last() && s < kMaxSeq; ++s) progressed |= set_bit(*bits, s);
    }
  }
  if (progressed) {
    changed = true;
    r.set_progress_ms(std::max(r.progress_ms(), f.time_ms()));
  }
  if (!changed) return false;
  r.set_updated_ms(std::max(r.updated_ms(), f.time_ms()));
  const auto to = next_state(r, progressed);
  if (to != r.state()) {
    auto cause = fmt::format("{} from {}", step_name(f.step()), f.source().empty() ? "?" : f.source());
    if (to == v1::SAGA_STATE_COMPLETED) cause = "every seq loaded or rejected; last: " + cause;
    if (to == v1::SAGA_STATE_FAILED) {
      cause = fmt::format("{} of {} seqs refused by the sink; last: {}", counts(r).rejected_at_load, r.total(), cause);
    }
    transition(r, to, f.time_ms(), std::move(cause));
  }
  return true;
}

std::optional<v1::SagaState> apply_deadlines(v1::SagaRecord& r, const SagaPolicy& d, int64_t now_ms) {
  const auto s = r.state();
  if (s == v1::SAGA_STATE_UNSPECIFIED || is_terminal(s) || replay_publishing(r)) return std::nullopt;
  if (s == v1::SAGA_STATE_OVERDUE) return std::nullopt;
  if (now_ms >= r.created_ms() + d.overdue_after_ms) {
    transition(r, v1::SAGA_STATE_OVERDUE, now_ms,
               fmt::format("not finished {} ms after creation ({} of {} events in flight)", d.overdue_after_ms,
                           counts(r).in_flight, r.total()));
  } else if (s != v1::SAGA_STATE_STALLED && now_ms >= last_progress(r) + d.stall_after_ms) {
    transition(r, v1::SAGA_STATE_STALLED, now_ms, fmt::format("no progress for {} ms", now_ms - last_progress(r)));
  } else {
    return std::nullopt;
  }
  r.set_updated_ms(std::max(r.updated_ms(), now_ms));
  return r.state();
}

int64_t next_deadline(const v1::SagaRecord& r, const SagaPolicy& d) {
  if (replay_publishing(r)) return 0;
  if (is_finished(r, d)) return (r.finished_ms() != 0 ? r.finished_ms() : r.updated_ms()) + d.retention_ms;
  switch (r.state()) {
    case v1::SAGA_STATE_UNSPECIFIED:
    case v1::SAGA_STATE_FAILED:  // an atomic pipeline's: it waits for compensation
    case v1::SAGA_STATE_OVERDUE:
      return 0;
    case v1::SAGA_STATE_STALLED:
      return r.created_ms() + d.overdue_after_ms;
    default:
      return std::min(r.created_ms() + d.overdue_after_ms, last_progress(r) + d.stall_after_ms);
  }
}

SagaCounts counts(const v1::SagaRecord& r) {
  SagaCounts c;
  c.cleaned = popcount(r.cleaned());
  c.rejected = popcount(r.rejected());
  c.loaded = popcount(r.loaded());
  c.rejected_at_load = popcount(r.rejected_at_load());
  // A seq is done once loaded or rejected by either stage; count each once.
  uint32_t done = 0;
  const std::size_t n = std::max({r.loaded().size(), r.rejected().size(), r.rejected_at_load().size()});
  for (std::size_t i = 0; i < n; ++i) {
    auto at = [i](const std::string& s) { return i < s.size() ? static_cast<unsigned char>(s[i]) : 0u; };
    done += static_cast<uint32_t>(std::popcount(at(r.loaded()) | at(r.rejected()) | at(r.rejected_at_load())));
  }
  c.in_flight = r.total() > done ? r.total() - done : 0;
  return c;
}

ChildCounts child_counts(const v1::SagaRecord& r, const v1::ReplayChild& child) {
  ChildCounts c;
  if (child.last() < child.first()) return c;
  c.total = child.last() - child.first() + 1;
  for (uint32_t s = child.first(); s <= child.last(); ++s) {
    if (test_bit(r.loaded(), s)) {
      ++c.loaded;
    } else if (test_bit(r.rejected(), s) || test_bit(r.rejected_at_load(), s)) {
      ++c.rejected;
    }
  }
  return c;
}

const char* state_name(v1::SagaState s) {
  switch (s) {
    case v1::SAGA_STATE_ACCEPTED:
      return "ACCEPTED";
    case v1::SAGA_STATE_IN_FLIGHT:
      return "IN_FLIGHT";
    case v1::SAGA_STATE_COMPLETED:
      return "COMPLETED";
    case v1::SAGA_STATE_STALLED:
      return "STALLED";
    case v1::SAGA_STATE_FAILED:
      return "FAILED";
    case v1::SAGA_STATE_COMPENSATED:
      return "COMPENSATED";
    case v1::SAGA_STATE_OVERDUE:
      return "OVERDUE";
    default:
      return "UNKNOWN";
  }
}

std::optional<v1::SagaState> parse_state(const std::string& name) {
  for (int i = v1::SAGA_STATE_ACCEPTED; i <= v1::SAGA_STATE_OVERDUE; ++i) {
    if (name == state_name(static_cast<v1::SagaState>(i))) return static_cast<v1::SagaState>(i);
  }
  return std::nullopt;
}

const char* step_name(v1::Step s) {
  switch (s) {
    case v1::STEP_INGESTED:
      return "STEP_INGESTED";
    case v1::STEP_CLEANED:
      return "STEP_CLEANED";
    case v1::STEP_REJECTED:
      return "STEP_REJECTED";
    case v1::STEP_LOADED:
      return "STEP_LOADED";
    case v1::STEP_REJECTED_AT_LOAD:
      return "STEP_REJECTED_AT_LOAD";
    case v1::STEP_COMPENSATED:
      return "STEP_COMPENSATED";
    default:
      return "STEP_UNSPECIFIED";
  }
}

std::string explain(const v1::SagaRecord& r) {
  std::string out;
  for (const auto& t : r.timeline()) {
    if (!out.empty()) out += "; ";
    out += fmt::format("{} at {} ({})", state_name(t.to()), rfc3339(t.time_ms()), t.cause());
  }
  return out;
}

}  // namespace starling::saga
