#include "services/common/facts.h"

#include <fmt/format.h>

#include <algorithm>

#include "services/common/text.h"

namespace starling {

void FactBuilder::add(const std::string& saga_id, const std::string& pipeline, uint32_t seq) {
  auto& e = sagas_[saga_id];
  e.pipeline = pipeline;
  e.seqs.push_back(seq);
}

void FactBuilder::add_rejection(const std::string& saga_id, const std::string& pipeline, uint32_t seq,
                                const google::protobuf::RepeatedPtrField<v1::Reason>& reasons) {
  auto& e = sagas_[saga_id];
  e.pipeline = pipeline;
  e.seqs.push_back(seq);
  v1::SeqRejection r;
  r.set_seq(seq);
  // The saga counts "rule:field"; values and expectations (which may echo a
  // whole field) stay in the dead letter, so a fact stays small whatever the
  // events held.
  for (const auto& reason : reasons) {
    auto* kept = r.add_reasons();
    kept->set_rule(reason.rule());
    kept->set_field(reason.field());
  }
  e.rejections.push_back(std::move(r));
}

std::vector<v1::ProgressFact> FactBuilder::build(int64_t time_ms) const {
  std::vector<v1::ProgressFact> out;
  for (const auto& [saga, e] : sagas_) {
    v1::ProgressFact f;
    f.set_saga_id(saga);
    f.set_pipeline(e.pipeline);
    f.set_step(step_);
    for (const auto& r : to_ranges(e.seqs)) *f.add_seqs() = r;
    for (const auto& r : e.rejections) *f.add_rejections() = r;
    f.set_source(source_);
    f.set_time_ms(time_ms);
    out.push_back(std::move(f));
  }
  return out;
}

v1::RejectedRecord too_large_dead_letter(v1::Envelope envelope,
                                         const google::protobuf::RepeatedPtrField<v1::Reason>& reasons,
                                         const std::string& stage, std::size_t size, std::size_t limit,
                                         int64_t now_ms) {
  envelope.clear_payload();
  envelope.clear_changes();
  v1::RejectedRecord dead;
  *dead.mutable_envelope() = std::move(envelope);
  dead.set_stage(stage);
  dead.set_rejected_time_ms(now_ms);
  auto* r = dead.add_reasons();
  r->set_rule("too_large");
  r->set_value(fmt::format("{} bytes", size));
  r->set_expected(fmt::format("a record of at most {} bytes (Kafka's message.max.bytes)", limit));
  for (const auto& reason : reasons) {
    auto* kept = dead.add_reasons();
    kept->set_rule(reason.rule());
    kept->set_field(excerpt(reason.field()));
    kept->set_value(excerpt(reason.value()));
    kept->set_expected(excerpt(reason.expected()));
  }
  return dead;
}

std::vector<v1::SeqRange> to_ranges(std::vector<uint32_t> seqs) {
  std::sort(seqs.begin(), seqs.end());
  seqs.erase(std::unique(seqs.begin(), seqs.end()), seqs.end());
  std::vector<v1::SeqRange> out;
  for (const auto s : seqs) {
    if (!out.empty() && out.back().last() + 1 == s) {
      out.back().set_last(s);
    } else {
      v1::SeqRange r;
      r.set_first(s);
      r.set_last(s);
      out.push_back(r);
    }
  }
  return out;
}

}  // namespace starling
