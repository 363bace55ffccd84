#pragma once
// Folding progress facts into a saga's state. Pure functions: the same facts
// in any order, any number of times, give the same state (bitmaps per step,
// never counters).

#include <cstdint>
#include <string>

#include "starling/v1/saga.pb.h"

namespace starling::saga {

/// Applies one fact. Returns true when the record changed.
bool fold(v1::SagaRecord& record, const v1::ProgressFact& fact);

/// The state the bitmaps imply: COMPLETED once every seq of a known total is
/// loaded or rejected; COMPENSATED is sticky.
v1::SagaState derive_state(const v1::SagaRecord& record);

struct SagaCounts {
  uint32_t cleaned = 0;
  uint32_t rejected = 0;          // by cleaning
  uint32_t loaded = 0;
  uint32_t rejected_at_load = 0;
  uint32_t in_flight = 0;         // total - loaded - rejected - rejected_at_load
};
SagaCounts counts(const v1::SagaRecord& record);

const char* state_name(v1::SagaState s);

// Bitmap helpers over a bytes field, one bit per seq.
bool set_bit(std::string& bits, uint32_t seq);
bool test_bit(const std::string& bits, uint32_t seq);
uint32_t popcount(const std::string& bits);

}  // namespace starling::saga
