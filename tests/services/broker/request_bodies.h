#pragma once

// Request bodies (after the request header) that several broker tests send,
// written field by field for a given version as in apache/kafka's message
// JSON. Each names the one topic partition (0) or group it is about.
#include <cstdint>
#include <optional>
#include <string>

#include "services/broker/wire.h"

namespace starling::broker::testing {

/// Produce v3-7 (the same fields in each): one record set for partition 0.
inline Bytes produce_body(const std::string& topic, const Bytes& records, int16_t acks = -1) {
  Writer w;
  w.nullable_string(std::nullopt);  // transactional id
  w.i16(acks);
  w.i32(5000);  // timeout ms
  w.array_len(1);
  w.string(topic);
  w.array_len(1);
  w.i32(0);
  w.bytes(records);
  return w.take();
}

/// Fetch v4-11 of partition 0 from `offset`, at most 1 MiB.
inline Bytes fetch_body(int16_t v, const std::string& topic, int64_t offset = 0, int32_t max_wait_ms = 0,
                        int32_t min_bytes = 1) {
  Writer w;
  w.i32(-1);  // replica id: a consumer
  w.i32(max_wait_ms);
  w.i32(min_bytes);
  w.i32(1 << 20);  // max bytes
  w.i8(0);         // isolation level
  if (v >= 7) {
    w.i32(0);   // session id
    w.i32(-1);  // session epoch: no session
  }
  w.array_len(1);
  w.string(topic);
  w.array_len(1);
  w.i32(0);
  if (v >= 9) w.i32(-1);  // current leader epoch
  w.i64(offset);
  if (v >= 5) w.i64(-1);       // log start offset
  w.i32(1 << 20);              // partition max bytes
  if (v >= 7) w.array_len(0);  // forgotten topics
  if (v >= 11) w.string("rack");
  return w.take();
}

/// ListOffsets v1-5 of partition 0 at `timestamp` (-1 latest, -2 earliest).
inline Bytes list_offsets_body(int16_t v, const std::string& topic, int64_t timestamp) {
  Writer w;
  w.i32(-1);            // replica id: a consumer
  if (v >= 2) w.i8(0);  // isolation level: read uncommitted
  w.array_len(1);
  w.string(topic);
  w.array_len(1);
  w.i32(0);
  if (v >= 4) w.i32(-1);  // current leader epoch: unknown
  w.i64(timestamp);
  return w.take();
}

/// Metadata v0-8 for one topic.
inline Bytes metadata_body(int16_t v, const std::string& topic, bool allow_auto_topic_creation) {
  Writer w;
  w.array_len(1);
  w.string(topic);
  if (v >= 4) w.boolean(allow_auto_topic_creation);
  if (v >= 8) {
    w.boolean(false);  // include cluster authorized operations
    w.boolean(false);  // include topic authorized operations
  }
  return w.take();
}

/// JoinGroup v0-5 of a new member offering one "range" consumer protocol.
inline Bytes join_group_body(int16_t v, const std::string& group) {
  Writer w;
  w.string(group);
  w.i32(6000);              // session timeout ms
  if (v >= 1) w.i32(6000);  // rebalance timeout ms
  w.string("");             // member id: none yet
  if (v >= 5) w.nullable_string(std::nullopt);
  w.string("consumer");
  w.array_len(1);
  w.string("range");
  w.bytes(Bytes{0, 1});
  return w.take();
}

/// SyncGroup v0-3 in which `member` assigns `assignment` to itself.
inline Bytes sync_group_body(int16_t v, const std::string& group, int32_t generation, const std::string& member,
                             const Bytes& assignment) {
  Writer w;
  w.string(group);
  w.i32(generation);
  w.string(member);
  if (v >= 3) w.nullable_string(std::nullopt);
  w.array_len(1);
  w.string(member);
  w.bytes(assignment);
  return w.take();
}

/// OffsetCommit v2-7 of `offset` with metadata "m" for partition 0.
inline Bytes offset_commit_body(int16_t v, const std::string& group, int32_t generation, const std::string& member,
                                const std::string& topic, int64_t offset) {
  Writer w;
  w.string(group);
  w.i32(generation);
  w.string(member);
  if (v >= 7) w.nullable_string(std::nullopt);
  if (v <= 4) w.i64(-1);  // retention time ms
  w.array_len(1);
  w.string(topic);
  w.array_len(1);
  w.i32(0);
  w.i64(offset);
  if (v >= 6) w.i32(-1);  // leader epoch
  w.nullable_string(std::string("m"));
  return w.take();
}

}  // namespace starling::broker::testing
