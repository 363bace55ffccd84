#pragma once

// The response side shared by the Broker's request handlers (broker_*.cc).
#include <cstdint>
#include <utility>
#include <vector>

#include "services/broker/broker.h"
#include "services/broker/error.h"
#include "services/broker/messages.h"
#include "services/broker/wire.h"

namespace starling::broker {

inline constexpr int32_t kNoAuthorizedOperations = INT32_MIN;  // "not requested" in Kafka

/// Starts a response frame: size placeholder, then the response header: v0
/// (the correlation id), or v1 (and an empty tagged-field section) when the
/// request's version is flexible. The body's writer is in the request's
/// mode. ApiVersions always answers with header v0 (KIP-511: a client that
/// does not know the broker's versions yet must be able to read it).
class Response {
 public:
  explicit Response(const RequestHeader& h) : flexible_(h.flexible) {
    w.i32(0);  // the frame size, set by done()
    w.i32(h.correlation_id);
    w.set_flexible(flexible_);
    if (h.api_key != static_cast<int16_t>(ApiKey::kApiVersions)) w.tags();
  }
  /// Writes a bytes field whose content becomes its own buffer.
  void bytes_by_move(Bytes data) {
    w.bytes_len(data.size());
    if (data.empty()) return;
    size_ += w.size();
    parts_.push_back(w.take());
    w = Writer();
    w.set_flexible(flexible_);
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
  bool flexible_;
  size_t size_ = 0;
  std::vector<Bytes> parts_;
};

inline int16_t code(ErrorCode e) { return static_cast<int16_t>(e); }

}  // namespace starling::broker
