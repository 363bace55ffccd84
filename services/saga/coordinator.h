#pragma once
// The coordinator's logic without Kafka: folds batches of progress facts,
// fires deadlines and retires finished sagas, each step in one atomic store
// commit with the consumed offsets and the outcome facts it publishes. The
// consumer loop (SagaService) feeds it; unit tests drive it with a fake clock.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "broker-adapters/kafka/kafka.h"
#include "services/saga/activity.h"
#include "services/saga/saga_state.h"
#include "services/saga/saga_store.h"

namespace starling::saga {

/// Unix ms now. Injected so tests move time by hand instead of sleeping.
using Clock = std::function<int64_t()>;

struct CoordinatorOptions {
  std::map<std::string, SagaPolicy> pipelines;  // by pipeline name, from --pipeline files
  SagaPolicy defaults;                          // for facts of a pipeline not configured here
  std::size_t tick_max = 5000;                  // sagas one tick() handles; the rest wait for the next
  Activity* activity = nullptr;                 // told of every folded fact (the console's overview)
};

/// Threading: one thread (the consumer loop) calls everything.
class Coordinator {
 public:
  Coordinator(SagaStore& store, CoordinatorOptions options, Clock clock);

  /// Folds messages of starling.saga. Changed records (with their deadline
  /// index entries), the next offsets and outcome facts commit together.
  /// Returns how many outcome facts were queued in the outbox.
  Result<std::size_t> fold_batch(const std::vector<kafka::InMessage>& batch);

  /// Applies every deadline due at clock(): STALLED, OVERDUE, and removal of
  /// finished sagas past retention (into the hourly aggregates). Only sagas
  /// of owned partitions. Returns how many outcome facts were queued.
  Result<std::size_t> tick();

  /// The starling.saga partitions this instance owns (nullopt: all). Another
  /// instance may hold stale copies of the others' sagas; their deadlines
  /// must not fire here.
  void set_owned(std::optional<std::set<int32_t>> partitions) { owned_ = std::move(partitions); }

  /// Counts the stored sagas by pipeline and state (one scan of the store,
  /// at start; every state of a configured pipeline starts at 0);
  /// fold_batch() and tick() keep the counts after that.
  Status count_states();
  /// Sagas in this instance's store, by (pipeline, state). With several
  /// instances, each counts its own store (stale copies of sagas another
  /// instance now tracks included).
  const std::map<std::pair<std::string, v1::SagaState>, int64_t>& state_counts() const { return state_counts_; }

  const SagaPolicy& policy_for(const std::string& pipeline) const;
  uint64_t folded() const { return folded_; }
  uint64_t late_skipped() const { return late_skipped_; }

 private:
  bool owns(int32_t partition) const { return !owned_ || owned_->contains(partition); }

  SagaStore& store_;
  CoordinatorOptions options_;
  Clock clock_;
  std::optional<std::set<int32_t>> owned_;
  /// A saga that moved from `before` (UNSPECIFIED: new) to `after`
  /// (UNSPECIFIED: removed), once its commit succeeded.
  struct Moved {
    std::string pipeline;
    v1::SagaState before;
    v1::SagaState after;
  };
  void count_moves(const std::vector<Moved>& moves);

  std::map<std::pair<std::string, v1::SagaState>, int64_t> state_counts_;
  uint64_t folded_ = 0;
  uint64_t late_skipped_ = 0;
};

/// The outcome fact of a saga's current state.
v1::SagaOutcome make_outcome(const v1::SagaRecord& record, int64_t time_ms);

/// "250", "250ms", "90s", "30m", "6h", "7d" as ms; an error names the text.
Result<int64_t> parse_duration_ms(const std::string& text);

}  // namespace starling::saga
