#pragma once

// Request bodies (after the request header) that several broker tests send,
// written field by field for a given version as in apache/kafka's message
// JSON. Each names the one topic partition (0) or group it is about. At a
// flexible version (each helper knows its API's first one, from the JSON's
// "flexibleVersions") the body takes the compact forms and tagged fields.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "services/broker/wire.h"

namespace starling::broker::testing {

/// A writer in flexible mode from `first_flexible` on.
inline Writer body_writer(int16_t v, int16_t first_flexible) {
  Writer w;
  w.set_flexible(v >= first_flexible);
  return w;
}

/// Produce v3-9 (the same fields in each, v9 flexible): one record set for partition 0.
inline Bytes produce_body(const std::string& topic, const Bytes& records, int16_t acks = -1, int16_t v = 7) {
  Writer w = body_writer(v, 9);
  w.nullable_string(std::nullopt);  // transactional id
  w.i16(acks);
  w.i32(5000);  // timeout ms
  w.array_len(1);
  w.string(topic);
  w.array_len(1);
  w.i32(0);
  w.bytes(records);
  w.tags();  // partition
  w.tags();  // topic
  w.tags();
  return w.take();
}

/// Produce v0-2 (no transactional id): one record set for partition 0.
inline Bytes produce_body_v0_2(const std::string& topic, const Bytes& records, int16_t acks = -1) {
  Writer w;
  w.i16(acks);
  w.i32(5000);  // timeout ms
  w.array_len(1);
  w.string(topic);
  w.array_len(1);
  w.i32(0);
  w.bytes(records);
  return w.take();
}

/// A message set of message format v1 (magic 1, KIP-32), what Produce v2
/// carries: one message per value, no key, uncompressed.
inline Bytes message_set_v1(const std::vector<std::string>& values, int64_t timestamp = 1'700'000'000'000) {
  auto crc32 = [](const uint8_t* p, size_t n) {  // CRC-32 (IEEE), as message formats v0/v1 use
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; ++i) {
      c ^= p[i];
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return ~c;
  };
  Writer w;
  for (size_t i = 0; i < values.size(); ++i) {
    Writer m;  // magic..value, what the CRC covers
    m.i8(1);   // magic
    m.i8(0);   // attributes: no compression, CreateTime
    m.i64(timestamp);
    m.null_bytes();  // key
    m.bytes(Bytes(values[i].begin(), values[i].end()));
    Bytes body = m.take();
    w.i64(static_cast<int64_t>(i));  // offset
    w.i32(static_cast<int32_t>(body.size() + 4));
    w.i32(static_cast<int32_t>(crc32(body.data(), body.size())));
    w.raw(body.data(), body.size());
  }
  return w.take();
}

/// Fetch v4-12 of partition 0 from `offset`, at most 1 MiB.
inline Bytes fetch_body(int16_t v, const std::string& topic, int64_t offset = 0, int32_t max_wait_ms = 0,
                        int32_t min_bytes = 1) {
  Writer w = body_writer(v, 12);
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
  if (v >= 12) w.i32(-1);      // last fetched epoch
  if (v >= 5) w.i64(-1);       // log start offset
  w.i32(1 << 20);              // partition max bytes
  w.tags();                    // partition
  w.tags();                    // topic
  if (v >= 7) w.array_len(0);  // forgotten topics
  if (v >= 11) w.string("rack");
  w.tags();
  return w.take();
}

/// ListOffsets v1-6 of partition 0 at `timestamp` (-1 latest, -2 earliest).
inline Bytes list_offsets_body(int16_t v, const std::string& topic, int64_t timestamp) {
  Writer w = body_writer(v, 6);
  w.i32(-1);            // replica id: a consumer
  if (v >= 2) w.i8(0);  // isolation level: read uncommitted
  w.array_len(1);
  w.string(topic);
  w.array_len(1);
  w.i32(0);
  if (v >= 4) w.i32(-1);  // current leader epoch: unknown
  w.i64(timestamp);
  w.tags();  // partition
  w.tags();  // topic
  w.tags();
  return w.take();
}

/// Metadata v0-12 for one topic (by name; from v10 with the zero topic id).
inline Bytes metadata_body(int16_t v, const std::string& topic, bool allow_auto_topic_creation) {
  Writer w = body_writer(v, 9);
  w.array_len(1);
  if (v >= 10) w.raw(Bytes(16, 0).data(), 16);  // topic id: none
  w.string(topic);
  w.tags();
  if (v >= 4) w.boolean(allow_auto_topic_creation);
  if (v >= 8 && v <= 10) w.boolean(false);  // include cluster authorized operations
  if (v >= 8) w.boolean(false);             // include topic authorized operations
  w.tags();
  return w.take();
}

/// One topic of a CreateTopics request.
struct NewTopicSpec {
  std::string name;
  int32_t num_partitions = 1;
  int16_t replication_factor = 1;
  /// Replica broker ids of partition 0, 1, ... (num_partitions and
  /// replication_factor must then be -1).
  std::vector<std::vector<int32_t>> assignments;
  std::vector<std::pair<std::string, std::optional<std::string>>> configs;
};

/// CreateTopics v0-4 of one topic.
inline Bytes create_topics_body(int16_t v, const NewTopicSpec& t, bool validate_only = false) {
  Writer w;
  w.array_len(1);
  w.string(t.name);
  w.i32(t.num_partitions);
  w.i16(t.replication_factor);
  w.array_len(t.assignments.size());
  for (size_t p = 0; p < t.assignments.size(); ++p) {
    w.i32(static_cast<int32_t>(p));
    w.array_len(t.assignments[p].size());
    for (int32_t id : t.assignments[p]) w.i32(id);
  }
  w.array_len(t.configs.size());
  for (const auto& [name, value] : t.configs) {
    w.string(name);
    w.nullable_string(value);
  }
  w.i32(5000);  // timeout ms
  if (v >= 1) w.boolean(validate_only);
  return w.take();
}

/// JoinGroup v0-6 of a new member offering one "range" consumer protocol.
inline Bytes join_group_body(int16_t v, const std::string& group) {
  Writer w = body_writer(v, 6);
  w.string(group);
  w.i32(6000);              // session timeout ms
  if (v >= 1) w.i32(6000);  // rebalance timeout ms
  w.string("");             // member id: none yet
  if (v >= 5) w.nullable_string(std::nullopt);
  w.string("consumer");
  w.array_len(1);
  w.string("range");
  w.bytes(Bytes{0, 1});
  w.tags();  // protocol
  w.tags();
  return w.take();
}

/// SyncGroup v0-4 in which `member` assigns `assignment` to itself.
inline Bytes sync_group_body(int16_t v, const std::string& group, int32_t generation, const std::string& member,
                             const Bytes& assignment) {
  Writer w = body_writer(v, 4);
  w.string(group);
  w.i32(generation);
  w.string(member);
  if (v >= 3) w.nullable_string(std::nullopt);
  w.array_len(1);
  w.string(member);
  w.bytes(assignment);
  w.tags();  // assignment
  w.tags();
  return w.take();
}

/// OffsetCommit v2-8 of `offset` with metadata "m" for partition 0.
inline Bytes offset_commit_body(int16_t v, const std::string& group, int32_t generation, const std::string& member,
                                const std::string& topic, int64_t offset,
                                const std::optional<std::string>& instance = std::nullopt) {
  Writer w = body_writer(v, 8);
  w.string(group);
  w.i32(generation);
  w.string(member);
  if (v >= 7) w.nullable_string(instance);
  if (v <= 4) w.i64(-1);  // retention time ms
  w.array_len(1);
  w.string(topic);
  w.array_len(1);
  w.i32(0);
  w.i64(offset);
  if (v >= 6) w.i32(-1);  // leader epoch
  w.nullable_string(std::string("m"));
  w.tags();  // partition
  w.tags();  // topic
  w.tags();
  return w.take();
}

/// CreatePartitions v0-1 (the same fields) growing one topic to `count`
/// partitions; `assignments` (replica ids of each new partition) null: the
/// broker places them.
inline Bytes create_partitions_body(const std::string& topic, int32_t count,
                                    const std::optional<std::vector<std::vector<int32_t>>>& assignments = std::nullopt,
                                    bool validate_only = false) {
  Writer w;
  w.array_len(1);
  w.string(topic);
  w.i32(count);
  if (!assignments) {
    w.i32(-1);
  } else {
    w.array_len(assignments->size());
    for (const auto& ids : *assignments) {
      w.array_len(ids.size());
      for (int32_t id : ids) w.i32(id);
    }
  }
  w.i32(5000);  // timeout ms
  w.boolean(validate_only);
  return w.take();
}

/// DeleteRecords v0-1 (the same fields): records of one partition before `offset`.
inline Bytes delete_records_body(const std::string& topic, int32_t partition, int64_t offset) {
  Writer w;
  w.array_len(1);
  w.string(topic);
  w.array_len(1);
  w.i32(partition);
  w.i64(offset);
  w.i32(5000);  // timeout ms
  return w.take();
}

/// A resource of DescribeConfigs / AlterConfigs: 2 topic, 4 broker.
struct ConfigResource {
  int8_t type = 2;
  std::string name;
  std::optional<std::vector<std::string>> names;  // DescribeConfigs: null = every config
};

/// DescribeConfigs v0-3, synonyms asked for from v1 (documentation from v3).
inline Bytes describe_configs_body(int16_t v, const std::vector<ConfigResource>& resources) {
  Writer w;
  w.array_len(resources.size());
  for (const auto& r : resources) {
    w.i8(r.type);
    w.string(r.name);
    if (!r.names) {
      w.i32(-1);
    } else {
      w.array_len(r.names->size());
      for (const auto& n : *r.names) w.string(n);
    }
  }
  if (v >= 1) w.boolean(true);  // include synonyms
  if (v >= 3) w.boolean(true);  // include documentation
  return w.take();
}

using ConfigValues = std::vector<std::pair<std::string, std::optional<std::string>>>;

/// AlterConfigs v0-1 (the same fields) of one resource.
inline Bytes alter_configs_body(int8_t type, const std::string& name, const ConfigValues& configs,
                                bool validate_only = false) {
  Writer w;
  w.array_len(1);
  w.i8(type);
  w.string(name);
  w.array_len(configs.size());
  for (const auto& [k, v] : configs) {
    w.string(k);
    w.nullable_string(v);
  }
  w.boolean(validate_only);
  return w.take();
}

/// One operation of IncrementalAlterConfigs: 0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT.
struct ConfigOperation {
  std::string name;
  int8_t op = 0;
  std::optional<std::string> value;
};

/// IncrementalAlterConfigs v0 of one resource.
inline Bytes incremental_alter_configs_body(int8_t type, const std::string& name,
                                            const std::vector<ConfigOperation>& ops, bool validate_only = false) {
  Writer w;
  w.array_len(1);
  w.i8(type);
  w.string(name);
  w.array_len(ops.size());
  for (const auto& o : ops) {
    w.string(o.name);
    w.i8(o.op);
    w.nullable_string(o.value);
  }
  w.boolean(validate_only);
  return w.take();
}

/// JoinGroup v5 of `member` ("" for a new one) with a static instance id
/// (or none) offering the "range" protocol with `metadata`.
inline Bytes join_group_v5_body(const std::string& group, const std::string& member,
                                const std::optional<std::string>& instance, const Bytes& metadata,
                                int32_t session_timeout_ms = 6000) {
  Writer w;
  w.string(group);
  w.i32(session_timeout_ms);
  w.i32(6000);  // rebalance timeout ms
  w.string(member);
  w.nullable_string(instance);
  w.string("consumer");
  w.array_len(1);
  w.string("range");
  w.bytes(metadata);
  return w.take();
}

/// Heartbeat v0-4.
inline Bytes heartbeat_body(int16_t v, const std::string& group, int32_t generation, const std::string& member,
                            const std::optional<std::string>& instance = std::nullopt) {
  Writer w = body_writer(v, 4);
  w.string(group);
  w.i32(generation);
  w.string(member);
  if (v >= 3) w.nullable_string(instance);
  w.tags();
  return w.take();
}

/// SyncGroup v3 of `member` with the given assignments (member id, bytes).
inline Bytes sync_group_v3_body(const std::string& group, int32_t generation, const std::string& member,
                                const std::optional<std::string>& instance,
                                const std::vector<std::pair<std::string, Bytes>>& assignments) {
  Writer w;
  w.string(group);
  w.i32(generation);
  w.string(member);
  w.nullable_string(instance);
  w.array_len(assignments.size());
  for (const auto& [id, bytes] : assignments) {
    w.string(id);
    w.bytes(bytes);
  }
  return w.take();
}

/// LeaveGroup v3 of members (member id, instance id).
inline Bytes leave_group_v3_body(const std::string& group,
                                 const std::vector<std::pair<std::string, std::optional<std::string>>>& members) {
  Writer w;
  w.string(group);
  w.array_len(members.size());
  for (const auto& [id, instance] : members) {
    w.string(id);
    w.nullable_string(instance);
  }
  return w.take();
}

/// DescribeGroups v0-5 (authorized operations not asked) or DeleteGroups
/// v0-2 (`api` 42: the list alone) of these group ids.
inline Bytes groups_body(int16_t api, int16_t v, const std::vector<std::string>& groups) {
  Writer w = body_writer(v, api == 15 ? 5 : 2);
  w.array_len(groups.size());
  for (const auto& g : groups) w.string(g);
  if (api == 15 && v >= 3) w.boolean(false);
  w.tags();
  return w.take();
}

}  // namespace starling::broker::testing
