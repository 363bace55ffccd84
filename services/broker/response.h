#pragma once

// The response side shared by the Broker's request handlers (broker_*.cc).
#include <cstdint>
#include <utility>
#include <vector>

#include "services/broker/broker.h"
#include "services/broker/error.h"
#include "services/broker/wire.h"

namespace starling::broker {

inline constexpr int32_t kNoAuthorizedOperations = INT32_MIN;  // "not requested" in Kafka

/// Starts a response frame: size placeholder, then header v0 (correlation id).
class Response {
 public:
  explicit Response(int32_t correlation_id) {
    size_at_ = w.reserve_i32();
    (void)size_at_;
    w.i32(correlation_id);
  }
  /// Writes a bytes field whose content becomes its own buffer.
  void bytes_by_move(Bytes data) {
    w.i32(static_cast<int32_t>(data.size()));
    if (data.empty()) return;
    size_ += w.size();
    parts_.push_back(w.take());
    w = Writer();
    size_ += data.size();
    parts_.push_back(std::move(data));
  }
  Reply done() {
    size_ += w.size();
    parts_.push_back(w.take());
    auto& first = parts_.front();
    store_be32(first.data(), static_cast<int32_t>(size_ - 4));
    return Reply{std::move(parts_)};
  }
  Writer w;

 private:
  size_t size_at_;
  size_t size_ = 0;
  std::vector<Bytes> parts_;
};

inline int16_t code(ErrorCode e) { return static_cast<int16_t>(e); }

}  // namespace starling::broker
