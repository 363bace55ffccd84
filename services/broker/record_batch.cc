#include "services/broker/record_batch.h"

#include <fmt/format.h>

#include <limits>

#include "services/broker/crc32c.h"

namespace starling::broker {

namespace bl = batch_layout;

int32_t BatchHeader::last_sequence() const {
  if (base_sequence < 0) return -1;
  // Sequences wrap at INT32_MAX (Kafka DefaultRecordBatch.incrementSequence).
  int64_t last = int64_t{base_sequence} + last_offset_delta;
  if (last > std::numeric_limits<int32_t>::max()) last -= int64_t{std::numeric_limits<int32_t>::max()} + 1;
  return static_cast<int32_t>(last);
}

Result<BatchHeader> parse_batch_header(ByteView d) {
  if (d.size() < bl::kHeaderSize) return fail(ErrorCode::kCorruptMessage, "record batch shorter than its header");
  BatchHeader h;
  h.base_offset = load_be64(&d[bl::kBaseOffset]);
  h.batch_length = load_be32(&d[bl::kBatchLength]);
  h.magic = static_cast<int8_t>(d[bl::kMagic]);
  h.crc = static_cast<uint32_t>(load_be32(&d[bl::kCrc]));
  h.attributes = load_be16(&d[bl::kAttributes]);
  h.last_offset_delta = load_be32(&d[bl::kLastOffsetDelta]);
  h.base_timestamp = load_be64(&d[bl::kBaseTimestamp]);
  h.max_timestamp = load_be64(&d[bl::kMaxTimestamp]);
  h.producer_id = load_be64(&d[bl::kProducerId]);
  h.producer_epoch = load_be16(&d[bl::kProducerEpoch]);
  h.base_sequence = load_be32(&d[bl::kBaseSequence]);
  h.record_count = load_be32(&d[bl::kRecordCount]);
  if (h.magic != 2) {
    return fail(ErrorCode::kUnsupportedForMessageFormat,
                fmt::format("record batch magic {} (only v2 is supported)", h.magic));
  }
  if (h.batch_length < static_cast<int32_t>(bl::kHeaderSize - bl::kLogOverhead)) {
    return fail(ErrorCode::kCorruptMessage, fmt::format("record batch length {} is too small", h.batch_length));
  }
  if (h.last_offset_delta < 0) return fail(ErrorCode::kCorruptMessage, "negative lastOffsetDelta");
  return h;
}

bool batch_crc_ok(ByteView batch) {
  if (batch.size() < bl::kHeaderSize) return false;
  auto stored = static_cast<uint32_t>(load_be32(&batch[bl::kCrc]));
  return crc32c(batch.data() + bl::kAttributes, batch.size() - bl::kAttributes) == stored;
}

Result<std::vector<IncomingBatch>> validate_record_set(ByteView records, size_t max_batch_bytes) {
  std::vector<IncomingBatch> out;
  size_t pos = 0;
  while (pos < records.size()) {
    auto h = parse_batch_header(records.subspan(pos));
    if (!h) return std::unexpected(h.error());
    size_t size = h->total_size();
    if (size > records.size() - pos)
      return fail(ErrorCode::kCorruptMessage, "record batch extends past the record set");
    if (size > max_batch_bytes) {
      return fail(ErrorCode::kMessageTooLarge,
                  fmt::format("record batch of {} bytes exceeds {}", size, max_batch_bytes));
    }
    if (!batch_crc_ok(records.subspan(pos, size)))
      return fail(ErrorCode::kCorruptMessage, "record batch CRC-32C mismatch");
    // In 64 bits: a client's lastOffsetDelta of INT32_MAX must not overflow.
    if (static_cast<int64_t>(h->record_count) != static_cast<int64_t>(h->last_offset_delta) + 1) {
      return fail(ErrorCode::kInvalidRecord, "record count does not match lastOffsetDelta");
    }
    out.push_back({*h, pos});
    pos += size;
  }
  if (out.empty()) return fail(ErrorCode::kCorruptMessage, "empty record set");
  return out;
}

void set_base_offset(uint8_t* batch, int64_t base_offset) { store_be64(batch + bl::kBaseOffset, base_offset); }

}  // namespace starling::broker
