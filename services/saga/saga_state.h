#pragma once
// Folding progress facts into a saga's state, and the saga's deadlines. Pure
// functions: the same facts in any order, any number of times, give the same
// bitmaps (per step, never counters); the state machine only moves forward.
//
//   ACCEPTED ─► IN_FLIGHT ─► COMPLETED                 (terminal)
//      │  ▲        │  ▲
//      ▼  │        ▼  │ progress
//      STALLED ◄───┘  │                                (an alert, not an end)
//         └───────────┴─► FAILED ─► COMPENSATED        (FAILED leaves only on STEP_COMPENSATED)

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "starling/v1/saga.pb.h"

namespace starling::saga {

/// Per pipeline (the `saga:` section of its YAML) plus the coordinator's
/// retention of finished sagas.
struct Deadlines {
  int64_t stall_after_ms = 60'000;
  int64_t fail_after_ms = 300'000;
  int64_t retention_ms = 7LL * 24 * 3600 * 1000;
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
bool fold(v1::SagaRecord& record, const v1::ProgressFact& fact);

/// Applies the deadlines at `now_ms`: STALLED when nothing progressed for
/// stall_after, FAILED when not finished fail_after after creation. Returns
/// the new state when it changed (a transition is added to the timeline).
std::optional<v1::SagaState> apply_deadlines(v1::SagaRecord& record, const Deadlines& d, int64_t now_ms);

/// When the coordinator must look at this saga again: the next stall or fail
/// deadline while it runs, the end of retention once COMPLETED or
/// COMPENSATED, and 0 (never) while FAILED waits for compensation.
int64_t next_deadline(const v1::SagaRecord& record, const Deadlines& d);

/// COMPLETED, FAILED and COMPENSATED: the deadlines no longer apply.
bool is_terminal(v1::SagaState s);
/// COMPLETED and COMPENSATED: retention may remove the saga.
bool is_finished(v1::SagaState s);

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
