#pragma once

// Builds real v2 record batches for tests, so storage and idempotence tests
// exercise the same bytes librdkafka sends.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "services/broker/crc32c.h"
#include "services/broker/record_batch.h"
#include "services/broker/wire.h"

namespace starling::broker::testing {

inline void put_varint(Bytes& out, int64_t v) {
  uint64_t z = (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
  while (z >= 0x80) {
    out.push_back(static_cast<uint8_t>(z | 0x80));
    z >>= 7;
  }
  out.push_back(static_cast<uint8_t>(z));
}

struct BatchSpec {
  std::vector<std::string> values = {"v"};
  int64_t timestamp = 1'700'000'000'000;
  int64_t producer_id = -1;
  int16_t producer_epoch = -1;
  int32_t base_sequence = -1;
  /// One CreateTime timestamp per record; empty: every record has `timestamp`.
  std::vector<int64_t> record_timestamps = {};
  /// >= 0: a LogAppendTime batch stamped with this (its max timestamp, which
  /// is every record's timestamp); the records keep their create-time deltas.
  int64_t log_append_time = -1;
};

inline Bytes make_batch(const BatchSpec& spec) {
  auto timestamp_of = [&](size_t i) {
    return i < spec.record_timestamps.size() ? spec.record_timestamps[i] : spec.timestamp;
  };
  const int64_t base_timestamp = timestamp_of(0);
  int64_t max_timestamp = base_timestamp;
  for (size_t i = 0; i < spec.values.size(); ++i) max_timestamp = std::max(max_timestamp, timestamp_of(i));
  if (spec.log_append_time >= 0) max_timestamp = spec.log_append_time;
  Bytes records;
  for (size_t i = 0; i < spec.values.size(); ++i) {
    Bytes rec;
    rec.push_back(0);                                   // attributes
    put_varint(rec, timestamp_of(i) - base_timestamp);  // timestamp delta
    put_varint(rec, static_cast<int64_t>(i));           // offset delta
    put_varint(rec, -1);                                // null key
    put_varint(rec, static_cast<int64_t>(spec.values[i].size()));
    rec.insert(rec.end(), spec.values[i].begin(), spec.values[i].end());
    put_varint(rec, 0);  // no headers
    put_varint(records, static_cast<int64_t>(rec.size()));
    records.insert(records.end(), rec.begin(), rec.end());
  }
  Writer w;
  w.i64(0);  // base offset, assigned by the broker
  size_t len_at = w.reserve_i32();
  w.i32(-1);  // partition leader epoch
  w.i8(2);    // magic
  size_t crc_at = w.reserve_i32();
  w.i16(spec.log_append_time >= 0 ? 0x08 : 0);  // attributes: timestamp type
  w.i32(static_cast<int32_t>(spec.values.size()) - 1);
  w.i64(base_timestamp);
  w.i64(max_timestamp);
  w.i64(spec.producer_id);
  w.i16(spec.producer_epoch);
  w.i32(spec.base_sequence);
  w.i32(static_cast<int32_t>(spec.values.size()));
  w.raw(records.data(), records.size());
  w.patch_i32(len_at, static_cast<int32_t>(w.size() - 12));
  auto& b = w.buffer();
  w.patch_i32(crc_at, static_cast<int32_t>(crc32c(b.data() + 21, b.size() - 21)));
  return w.take();
}

}  // namespace starling::broker::testing
