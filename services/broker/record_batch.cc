#include "services/broker/record_batch.h"

#include <fmt/format.h>

#include <algorithm>
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

namespace {

/// Reads a zigzag varint of at most `max_bytes` bytes (5 for varint, 10 for
/// varlong) from data[pos, end); nullopt if it runs past `end` or is too long.
std::optional<int64_t> read_varint(ByteView data, size_t& pos, size_t end, size_t max_bytes) {
  uint64_t raw = 0;
  for (size_t i = 0; i < max_bytes && pos < end; ++i) {
    const uint8_t b = data[pos++];
    raw |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
    if ((b & 0x80) == 0) return static_cast<int64_t>(raw >> 1) ^ -static_cast<int64_t>(raw & 1);
  }
  return std::nullopt;
}

constexpr size_t kMaxVarintBytes = 5;
constexpr size_t kMaxVarlongBytes = 10;

}  // namespace

Result<std::optional<TimestampOffset>> find_record_at_or_after(ByteView batch, int64_t ts, int64_t min_offset) {
  auto h = parse_batch_header(batch);
  if (!h) return std::unexpected(h.error());
  if (h->total_size() > batch.size()) return fail(ErrorCode::kCorruptMessage, "record batch is cut short");
  if (h->max_timestamp < ts) return std::nullopt;
  if (h->last_offset() < min_offset) return std::nullopt;
  const int64_t first = std::max(h->base_offset, min_offset);
  if (h->is_log_append_time()) return TimestampOffset{h->max_timestamp, first};
  if (h->is_compressed()) return TimestampOffset{h->base_timestamp, first};
  const size_t end = h->total_size();
  size_t pos = bl::kHeaderSize;
  for (int32_t i = 0; i < h->record_count && pos < end; ++i) {
    auto length = read_varint(batch, pos, end, kMaxVarintBytes);
    if (!length || *length < 1 || static_cast<uint64_t>(*length) > end - pos)
      return fail(ErrorCode::kCorruptMessage, fmt::format("record {} has a bad length", i));
    const size_t record_end = pos + static_cast<size_t>(*length);
    ++pos;  // attributes
    auto timestamp_delta = read_varint(batch, pos, record_end, kMaxVarlongBytes);
    auto offset_delta = read_varint(batch, pos, record_end, kMaxVarintBytes);
    if (!timestamp_delta || !offset_delta || *offset_delta < 0 || *offset_delta > h->last_offset_delta)
      return fail(ErrorCode::kCorruptMessage, fmt::format("record {} has a bad timestamp or offset delta", i));
    int64_t timestamp = 0;
    if (__builtin_add_overflow(h->base_timestamp, *timestamp_delta, &timestamp))
      return fail(ErrorCode::kCorruptMessage, fmt::format("record {} timestamp overflows", i));
    if (timestamp >= ts && h->base_offset + *offset_delta >= min_offset)
      return TimestampOffset{timestamp, h->base_offset + *offset_delta};
    pos = record_end;
  }
  return std::nullopt;
}

void set_base_offset(uint8_t* batch, int64_t base_offset) { store_be64(batch + bl::kBaseOffset, base_offset); }

}  // namespace starling::broker
