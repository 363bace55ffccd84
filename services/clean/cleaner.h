#pragma once
// One record through the clean stage: dedupe, decode, rules, and the output
// it becomes. Pure apart from the CleanState it reads and stages, so the
// service, `starling test` and the tests share it.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "broker-adapters/kafka/kafka.h"
#include "services/clean/rules.h"
#include "services/clean/state.h"
#include "services/common/ids.h"
#include "services/common/pipeline.h"
#include "starling/v1/envelope.pb.h"

namespace starling::clean {

/// Where a replayed event keeps its device state: a namespace of its own per
/// replay saga (bit 30 set, 16 bits of the StableHash of the saga id, the
/// input partition in the low 8 bits). A replay builds the state of its own
/// range, in order, as the original run did; it never moves the live devices'
/// last known values back in time, live events never see replayed ones, and a
/// second replay of the same range starts from nothing again (so it gives the
/// same rows). The range's first events see the state the original run had:
/// `starling replay` sends the events of the `max_age` before the range first,
/// marked `warm_up`, which are cleaned into this namespace and output nothing.
/// These entries are not expired yet (services/clean/README.md).
inline int32_t replay_state_partition(int32_t partition, std::string_view replay_saga_id) {
  const auto h = static_cast<uint32_t>(StableHash().add(replay_saga_id).value());
  return static_cast<int32_t>((1u << 30) | ((h & 0xFFFFu) << 8) | (static_cast<uint32_t>(partition) & 0xFFu));
}

struct CleanResult {
  bool clean = false;
  // When clean: the envelope with the cleaned payload and, in `changes`,
  // what the rules set or changed. As received otherwise.
  v1::Envelope envelope;
  bool rewritten = false;       // clean, and the envelope differs from the raw bytes
  v1::RejectedRecord rejected;  // reasons when not clean
  // The rules' outcome; when clean, its `changes` are what the rules set or
  // changed. With the decoded record, scratch that keeps its buffers when
  // the next clean() reuses this result.
  Outcome outcome;
  std::unique_ptr<google::protobuf::Message> record;
};

struct CleanedBatch {
  std::vector<kafka::OutMessage> out;  // records, then the batch's progress facts
  std::map<kafka::TopicPartition, int64_t> next_offsets;
  uint64_t cleaned = 0;
  uint64_t rejected = 0;
  /// Reasons of the rejected records by (rule, field), for the metric.
  std::map<std::pair<std::string, std::string>, uint64_t> reasons;
};

class Cleaner {
 public:
  /// `threads` > 1 cleans a batch's input partitions on that many threads
  /// when the state allows it (CleanState::concurrent_partitions).
  Cleaner(const PipelineConfig& pipeline, std::string instance, int threads = 1);

  /// Cleans one raw message value of `partition`. Times come from the
  /// envelope (ingest time), so the same input and state give the same result.
  CleanResult clean(const std::string& raw, int32_t partition, CleanState& state, int64_t now_ms) const {
    CleanResult res;
    clean(raw, partition, state, now_ms, res);
    return res;
  }
  /// The same into `res`, overwritten (reusing one result across records
  /// saves most of the allocations per record).
  void clean(const std::string& raw, int32_t partition, CleanState& state, int64_t now_ms, CleanResult& res) const;

  /// Cleans a batch and builds every output and fact. Each partition's
  /// messages are cleaned in order (on one thread); the outputs come in input
  /// order, so they are the same whatever the thread count.
  CleanedBatch clean_batch(const std::vector<kafka::InMessage>& batch, CleanState& state, int64_t now_ms) const;

  /// What goes instead of an output too large for Kafka (kafka::Stage::
  /// too_large): a clean record becomes a rejection `too_large` on
  /// <p>.rejected plus a REJECTED fact for its seq (its CLEANED bit alone does
  /// not finish it, so the saga completes exactly); a rejection is cut to its
  /// truncated form. Any other output is an error.
  Result<std::vector<kafka::OutMessage>> too_large(const kafka::OutMessage& output, std::size_t size, std::size_t limit,
                                                   int64_t now_ms) const;

 private:
  struct Piece;
  void clean_one(const kafka::InMessage& in, CleanState& state, int64_t now, CleanResult& scratch, Piece& piece) const;

  const PipelineConfig& pipeline_;
  RuleEngine rules_;
  std::string instance_;
  int threads_;
};

}  // namespace starling::clean
