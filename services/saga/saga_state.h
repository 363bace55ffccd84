#pragma once
// Folding progress facts into a saga's state, and the saga's deadlines. Pure
// functions: the same facts in any order, any number of times, give the same
// bitmaps (per step, never counters); the state machine only moves forward.
// A deadline is an alert, never a verdict: it cannot end a saga.
//
//   ACCEPTED ─► IN_FLIGHT ─► COMPLETED                 (terminal)
//      │  ▲        │  ▲         ▲
//      ▼  │        ▼  │ progress│ every seq loaded or rejected
//      STALLED ◄───┘  │         │                      (an alert: no progress for stall_after)
//         └───────────┴─► OVERDUE                      (an alert: not finished overdue_after after creation)
//
//   any running state ─► FAILED                         (a definite failure: a seq the sink refused)
//                          └─► COMPENSATED              (atomic pipelines: the loader removed its rows)

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "starling/v1/saga.pb.h"

namespace starling::saga {

/// Per pipeline (the `saga:` section of its YAML) plus the coordinator's
/// retention of finished sagas.
struct SagaPolicy {
  int64_t stall_after_ms = 60'000;
  int64_t overdue_after_ms = 300'000;
  int64_t retention_ms = 7LL * 24 * 3600 * 1000;
  /// All-or-nothing batches: the loader removes a FAILED saga's rows, and the
  /// saga waits for that (COMPENSATED). Off: what loaded stays, and FAILED is
  /// final.
  bool atomic = false;
};

/// How many transitions a record keeps: the first (creation) and the latest
/// ones. Sagas move through at most five states, so this loses nothing in
/// practice and bounds a pathological STALLED ⇄ IN_FLIGHT flapper.
inline constexpr int kTimelineMax = 16;

/// Replay saga ids start with this (services/replay/replay.h makes them), so
/// the coordinator knows a replay before its INGESTED fact, which comes last.
inline constexpr std::string_view kReplaySagaPrefix = "replay-";

/// One replay child's progress: its seqs done (loaded or rejected) so far.
struct ChildCounts {
  uint32_t total = 0;
  uint32_t loaded = 0;
  uint32_t rejected = 0;  // by cleaning or at load
};
ChildCounts child_counts(const v1::SagaRecord& record, const v1::ReplayChild& child);

/// Applies one fact. Returns true when the record changed. A fact without a
/// time must be given one by the caller (the coordinator stamps its clock).
/// A seq the sink refused (REJECTED_AT_LOAD) FAILs the saga: a definite
/// failure, whatever else arrives (not for a replay, see next_state).
bool fold(v1::SagaRecord& record, const v1::ProgressFact& fact);

/// Applies the deadlines at `now_ms`: STALLED when nothing progressed for
/// stall_after, OVERDUE when not finished overdue_after after creation. Both
/// are alerts; the saga COMPLETES when its events arrive. Returns the new
/// state when it changed (a transition is added to the timeline).
std::optional<v1::SagaState> apply_deadlines(v1::SagaRecord& record, const SagaPolicy& d, int64_t now_ms);

/// When the coordinator must look at this saga again: the next stall or
/// overdue deadline while it runs, the end of retention once finished, and 0
/// (never) while OVERDUE waits for its events or an atomic pipeline's FAILED
/// saga for compensation.
int64_t next_deadline(const v1::SagaRecord& record, const SagaPolicy& d);

/// COMPLETED, FAILED and COMPENSATED: the deadlines no longer apply.
bool is_terminal(v1::SagaState s);
/// Nothing will change its state any more, so retention may remove it:
/// COMPLETED, COMPENSATED, and FAILED in a pipeline that is not atomic.
bool is_finished(const v1::SagaRecord& record, const SagaPolicy& d);

struct SagaCounts {
  uint32_t cleaned = 0;
  uint32_t rejected = 0;  // by cleaning
  uint32_t loaded = 0;
  uint32_t rejected_at_load = 0;
  uint32_t in_flight = 0;  // total - seqs loaded or rejected (each seq once)
};
SagaCounts counts(const v1::SagaRecord& record);

const char* state_name(v1::SagaState s);
/// The inverse of state_name; nullopt for an unknown name.
std::optional<v1::SagaState> parse_state(const std::string& name);
const char* step_name(v1::Step s);

/// One line: "STALLED at 2026-11-23T10:00:02Z (no progress for 2000 ms), ...".
std::string explain(const v1::SagaRecord& record);

// Bitmap helpers over a bytes field, one bit per seq.
bool set_bit(std::string& bits, uint32_t seq);
bool test_bit(const std::string& bits, uint32_t seq);
uint32_t popcount(const std::string& bits);

}  // namespace starling::saga
