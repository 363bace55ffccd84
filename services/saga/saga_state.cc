#include "services/saga/saga_state.h"

#include <algorithm>
#include <bit>

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
    case v1::STEP_CLEANED: return r.mutable_cleaned();
    case v1::STEP_REJECTED: return r.mutable_rejected();
    case v1::STEP_LOADED: return r.mutable_loaded();
    case v1::STEP_REJECTED_AT_LOAD: return r.mutable_rejected_at_load();
    default: return nullptr;
  }
}

}  // namespace

bool fold(v1::SagaRecord& r, const v1::ProgressFact& f) {
  bool changed = false;
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
      r.set_created_ms(r.created_ms() == 0 ? f.time_ms() : std::min(r.created_ms(), f.time_ms()));
      changed = true;
    }
  } else if (f.step() == v1::STEP_COMPENSATED) {
    if (r.state() != v1::SAGA_STATE_COMPENSATED) {
      r.set_state(v1::SAGA_STATE_COMPENSATED);
      changed = true;
    }
  } else if (auto* bits = bitmap_for(r, f.step())) {
    // Reasons count once per seq: only a rejection that sets a new bit counts.
    for (const auto& rej : f.rejections()) {
      if (!set_bit(*bits, rej.seq())) continue;
      changed = true;
      for (const auto& reason : rej.reasons()) ++(*r.mutable_reason_counts())[reason.rule() + ":" + reason.field()];
    }
    for (const auto& range : f.seqs()) {
      for (uint32_t s = range.first(); s <= range.last() && s < kMaxSeq; ++s) changed |= set_bit(*bits, s);
    }
  }
  if (changed) {
    r.set_updated_ms(std::max(r.updated_ms(), f.time_ms()));
    r.set_state(derive_state(r));
  }
  return changed;
}

v1::SagaState derive_state(const v1::SagaRecord& r) {
  if (r.state() == v1::SAGA_STATE_COMPENSATED) return v1::SAGA_STATE_COMPENSATED;
  const auto c = counts(r);
  if (r.ingested() && c.in_flight == 0) return v1::SAGA_STATE_COMPLETED;
  if (r.state() == v1::SAGA_STATE_FAILED || r.state() == v1::SAGA_STATE_STALLED) return r.state();
  if (c.cleaned + c.rejected + c.loaded + c.rejected_at_load > 0) return v1::SAGA_STATE_IN_FLIGHT;
  return v1::SAGA_STATE_ACCEPTED;
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

const char* state_name(v1::SagaState s) {
  switch (s) {
    case v1::SAGA_STATE_ACCEPTED: return "ACCEPTED";
    case v1::SAGA_STATE_IN_FLIGHT: return "IN_FLIGHT";
    case v1::SAGA_STATE_COMPLETED: return "COMPLETED";
    case v1::SAGA_STATE_STALLED: return "STALLED";
    case v1::SAGA_STATE_FAILED: return "FAILED";
    case v1::SAGA_STATE_COMPENSATED: return "COMPENSATED";
    default: return "UNKNOWN";
  }
}

}  // namespace starling::saga
