#pragma once
// Building progress facts: the seqs a stage handled in one batch, grouped per
// saga and compressed into ranges; and the dead letter of a record too large
// to send.

#include <map>
#include <string>
#include <vector>

#include "starling/v1/envelope.pb.h"
#include "starling/v1/saga.pb.h"

namespace starling {

class FactBuilder {
 public:
  FactBuilder(v1::Step step, std::string source) : step_(step), source_(std::move(source)) {}

  void add(const std::string& saga_id, const std::string& pipeline, uint32_t seq);
  /// For REJECTED steps: the seq plus why (each reason's rule and field only).
  void add_rejection(const std::string& saga_id, const std::string& pipeline, uint32_t seq,
                     const google::protobuf::RepeatedPtrField<v1::Reason>& reasons);
  bool empty() const { return sagas_.empty(); }
  /// One fact per saga, seqs sorted and merged into ranges.
  std::vector<v1::ProgressFact> build(int64_t time_ms) const;

 private:
  struct Entry {
    std::string pipeline;
    std::vector<uint32_t> seqs;
    std::vector<v1::SeqRejection> rejections;
  };
  v1::Step step_;
  std::string source_;
  std::map<std::string, Entry> sagas_;
};

/// The truncated form of a record too large for Kafka (`size` bytes, over
/// `limit`): its envelope without payload and changes (the raw event stays on
/// <p>.raw, replayable), the reason `too_large` first, then `reasons` with
/// values and expectations cut to an excerpt.
v1::RejectedRecord too_large_dead_letter(v1::Envelope envelope,
                                         const google::protobuf::RepeatedPtrField<v1::Reason>& reasons,
                                         const std::string& stage, std::size_t size, std::size_t limit, int64_t now_ms);

/// Sorted, de-duplicated seqs as inclusive ranges.
std::vector<v1::SeqRange> to_ranges(std::vector<uint32_t> seqs);

}  // namespace starling
