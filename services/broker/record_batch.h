#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "services/broker/error.h"
#include "services/broker/wire.h"

namespace starling::broker {

/// Byte layout of a Kafka record batch (magic v2). Batches are stored and
/// served verbatim; only ListOffsets by timestamp reads inside the records
/// (find_record_at_or_after).
namespace batch_layout {
inline constexpr size_t kBaseOffset = 0;
inline constexpr size_t kBatchLength = 8;
inline constexpr size_t kLeaderEpoch = 12;
inline constexpr size_t kMagic = 16;
inline constexpr size_t kCrc = 17;
inline constexpr size_t kAttributes = 21;
inline constexpr size_t kLastOffsetDelta = 23;
inline constexpr size_t kBaseTimestamp = 27;
inline constexpr size_t kMaxTimestamp = 35;
inline constexpr size_t kProducerId = 43;
inline constexpr size_t kProducerEpoch = 51;
inline constexpr size_t kBaseSequence = 53;
inline constexpr size_t kRecordCount = 57;
inline constexpr size_t kHeaderSize = 61;
/// baseOffset + batchLength precede the part counted by batchLength.
inline constexpr size_t kLogOverhead = 12;
}  // namespace batch_layout

/// The fields of a batch header the broker needs.
struct BatchHeader {
  int64_t base_offset = 0;
  int32_t batch_length = 0;  // bytes after the length field
  int8_t magic = 0;
  uint32_t crc = 0;
  int16_t attributes = 0;
  int32_t last_offset_delta = 0;
  int64_t base_timestamp = 0;
  int64_t max_timestamp = 0;
  int64_t producer_id = -1;
  int16_t producer_epoch = -1;
  int32_t base_sequence = -1;
  int32_t record_count = 0;

  size_t total_size() const { return batch_layout::kLogOverhead + static_cast<size_t>(batch_length); }
  int64_t last_offset() const { return base_offset + last_offset_delta; }
  int32_t last_sequence() const;
  bool is_transactional() const { return (attributes & 0x10) != 0; }
  bool is_control() const { return (attributes & 0x20) != 0; }
  /// Timestamp type LogAppendTime: the batch's max timestamp (the append
  /// time) is every record's timestamp, whatever their deltas say.
  bool is_log_append_time() const { return (attributes & 0x08) != 0; }
  bool is_compressed() const { return (attributes & 0x07) != 0; }
  bool is_idempotent() const { return producer_id >= 0; }
};

/// Parses a header from at least kHeaderSize bytes; no CRC check.
Result<BatchHeader> parse_batch_header(ByteView data);

/// A batch inside a produce request's record set.
struct IncomingBatch {
  BatchHeader header;
  size_t position = 0;  // offset inside the record set
};

/// Splits a produce record set into v2 batches, verifying magic, lengths and
/// the CRC-32C of each one. Any defect rejects the whole set: a partial append
/// would break the producer's sequence accounting.
Result<std::vector<IncomingBatch>> validate_record_set(ByteView records, size_t max_batch_bytes);

/// True when the CRC-32C stored in the batch matches its contents.
bool batch_crc_ok(ByteView batch);

/// A record's offset and timestamp, as ListOffsets answers them (-1: none).
struct TimestampOffset {
  int64_t timestamp = -1;
  int64_t offset = -1;
};

/// The first record of the whole batch `batch` whose timestamp is >= `ts`, as
/// Kafka's FileRecords.searchForTimestamp; nullopt when no record is (a
/// header whose max timestamp lies). A LogAppendTime batch needs no decoding:
/// its first record, stamped with the max timestamp. The records of a
/// compressed CreateTime batch cannot be read here (the broker has no codecs),
/// so the batch's first record stands in for them: the offset returned is at
/// or before the exact one, never after it. The records come from clients:
/// every length, varint and delta is bounds-checked, and a malformed record
/// is an error. Records below `min_offset` (a log start offset that
/// DeleteRecords moved into the batch) are not considered.
Result<std::optional<TimestampOffset>> find_record_at_or_after(ByteView batch, int64_t ts,
                                                               int64_t min_offset = INT64_MIN);

/// Overwrites baseOffset in place; the CRC does not cover it.
void set_base_offset(uint8_t* batch, int64_t base_offset);

}  // namespace starling::broker
