#include "services/broker/messages.h"

#include <fmt/format.h>

namespace starling::broker {

const std::vector<ApiRange>& supported_apis() {
  // Upper bounds stop at the last non-flexible version of each API
  // (the "flexibleVersions" field in apache/kafka's message JSON). Produce
  // starts at v0 though only v3+ are served: see kFirstServedProduceVersion.
  // Key, min, max, first flexible version. The upper bounds stop where a
  // version adds what this broker does not have: topic ids (Fetch v13),
  // batched groups or keys (OffsetFetch v8, FindCoordinator v4), listing by
  // max timestamp (ListOffsets v7), the configs CreateTopics v5 returns and
  // DescribeConfigs v4's flexible form, which no client prefers yet.
  static const std::vector<ApiRange> apis = {
      {ApiKey::kProduce, 0, 9, 9},
      {ApiKey::kFetch, 4, 12, 12},
      {ApiKey::kListOffsets, 1, 6, 6},
      {ApiKey::kMetadata, 0, 12, 9},
      {ApiKey::kOffsetCommit, 2, 8, 8},
      {ApiKey::kOffsetFetch, 1, 7, 6},
      {ApiKey::kFindCoordinator, 0, 3, 3},
      {ApiKey::kJoinGroup, 0, 6, 6},
      {ApiKey::kHeartbeat, 0, 4, 4},
      {ApiKey::kLeaveGroup, 0, 4, 4},
      {ApiKey::kSyncGroup, 0, 4, 4},
      {ApiKey::kDescribeGroups, 0, 5, 5},
      {ApiKey::kListGroups, 0, 3, 3},
      {ApiKey::kApiVersions, 0, 3, 3},
      {ApiKey::kCreateTopics, 0, 4, 5},
      {ApiKey::kDeleteTopics, 0, 4, 4},
      {ApiKey::kInitProducerId, 0, 2, 2},
      {ApiKey::kDeleteGroups, 0, 2, 2},
      {ApiKey::kDeleteRecords, 0, 2, 2},
      {ApiKey::kDescribeConfigs, 0, 3, 4},
      {ApiKey::kAlterConfigs, 0, 2, 2},
      {ApiKey::kCreatePartitions, 0, 2, 2},
      {ApiKey::kIncrementalAlterConfigs, 0, 1, 1},
  };
  return apis;
}

std::optional<ApiRange> find_api(int16_t api_key) {
  for (const auto& a : supported_apis()) {
    if (static_cast<int16_t>(a.key) == api_key) return a;
  }
  return std::nullopt;
}

namespace {

// Reads the body's closing tagged fields (flexible versions), then checks
// that the whole body was read.
template <class T>
Result<T> finish(Reader& r, T value, const char* what) {
  r.tags();
  if (!r.ok()) return fail(ErrorCode::kInvalidRequest, fmt::format("{} request is truncated or malformed", what));
  if (r.remaining() != 0) {
    return fail(ErrorCode::kInvalidRequest, fmt::format("{} request has {} trailing bytes", what, r.remaining()));
  }
  return value;
}

// The member fields that SyncGroup and Heartbeat start with (the instance id
// since v3, KIP-345).
template <class Request>
void read_member(Reader& r, int16_t v, Request& req) {
  req.group_id = r.string();
  req.generation_id = r.i32();
  req.member_id = r.string();
  if (v >= 3) req.group_instance_id = r.nullable_string();
}

// Runs `fn` once per element of an array, stopping early once the reader failed.
template <class Fn>
void each(Reader& r, Fn&& fn, size_t min_element_size = 2) {
  int32_t n = r.array_len(min_element_size);
  for (int32_t i = 0; i < n && r.ok(); ++i) fn();
}

// Like each(), but an array of more than `cap` elements fails the reader
// before any element is read (the group APIs' caps in messages.h).
template <class Fn>
void each_capped(Reader& r, int32_t cap, Fn&& fn, size_t min_element_size = 2) {
  int32_t n = r.array_len(min_element_size);
  if (n > cap) r.fail();
  for (int32_t i = 0; i < n && r.ok(); ++i) fn();
}

// Reads an array of topics, each a name and an array of partitions that
// `partition` reads one by one.
template <class Partition, class ReadPartition>
std::vector<TopicPartitions<Partition>> topics(Reader& r, size_t min_partition_size, ReadPartition&& partition) {
  std::vector<TopicPartitions<Partition>> out;
  each(r, [&] {
    TopicPartitions<Partition> t;
    t.name = r.string();
    each(
        r,
        [&] {
          t.partitions.push_back(partition());
          r.tags();
        },
        min_partition_size);
    r.tags();
    out.push_back(std::move(t));
  });
  return out;
}

// An array of at most kMaxAdminResources elements; more fail the reader.
template <class Fn>
void each_resource(Reader& r, Fn&& fn, size_t min_element_size) {
  int32_t n = r.array_len(min_element_size);
  if (n > kMaxAdminResources) r.fail();
  for (int32_t i = 0; i < n && r.ok(); ++i) fn();
}

// Replica ids of one assignment, the first kMaxKeptReplicas kept.
void read_replicas(Reader& r, CreateTopicsRequest::Assignment& a) {
  each(
      r,
      [&] {
        int32_t id = r.i32();
        if (a.replica_count++ < CreateTopicsRequest::kMaxKeptReplicas) a.broker_ids.push_back(id);
      },
      4);
  r.tags();
}

}  // namespace

Result<RequestHeader> decode_request_header(Reader& r) {
  RequestHeader h;
  h.api_key = r.i16();
  h.api_version = r.i16();
  h.correlation_id = r.i32();
  h.client_id = r.nullable_string();
  if (!r.ok()) return fail(ErrorCode::kInvalidRequest, "request header is truncated");
  return h;
}

Result<ProduceRequest> decode_produce(Reader& r, int16_t v) {
  ProduceRequest req;
  if (v >= 3) req.transactional_id = r.nullable_string();
  req.acks = r.i16();
  req.timeout_ms = r.i32();
  req.topics = topics<ProduceRequest::Partition>(r, 8, [&] {
    ProduceRequest::Partition p;
    p.index = r.i32();
    p.records = r.nullable_bytes();
    return p;
  });
  return finish(r, std::move(req), "Produce");
}

Result<FetchRequest> decode_fetch(Reader& r, int16_t v) {
  FetchRequest req;
  req.replica_id = r.i32();
  req.max_wait_ms = r.i32();
  req.min_bytes = r.i32();
  if (v >= 3) req.max_bytes = r.i32();
  if (v >= 4) req.isolation_level = r.i8();
  if (v >= 7) {
    req.session_id = r.i32();
    req.session_epoch = r.i32();
  }
  req.topics = topics<FetchRequest::Partition>(r, 16, [&] {
    FetchRequest::Partition p;
    p.index = r.i32();
    if (v >= 9) p.current_leader_epoch = r.i32();
    p.fetch_offset = r.i64();
    if (v >= 12) r.i32();  // last_fetched_epoch: followers only
    if (v >= 5) p.log_start_offset = r.i64();
    p.partition_max_bytes = r.i32();
    return p;
  });
  if (v >= 7) {
    // Forgotten topics only matter for incremental fetch sessions, which this
    // broker never creates (it always answers session id 0).
    each(r, [&] {
      r.string();
      each(
          r, [&] { r.i32(); }, 4);
      r.tags();
    });
  }
  if (v >= 11) r.string();  // rack_id
  return finish(r, std::move(req), "Fetch");
}

Result<ListOffsetsRequest> decode_list_offsets(Reader& r, int16_t v) {
  ListOffsetsRequest req;
  req.replica_id = r.i32();
  if (v >= 2) req.isolation_level = r.i8();
  req.topics = topics<ListOffsetsRequest::Partition>(r, 12, [&] {
    ListOffsetsRequest::Partition p;
    p.index = r.i32();
    if (v >= 4) p.current_leader_epoch = r.i32();
    p.timestamp = r.i64();
    if (v == 0) r.i32();  // max_num_offsets
    return p;
  });
  return finish(r, std::move(req), "ListOffsets");
}

Result<MetadataRequest> decode_metadata(Reader& r, int16_t v) {
  MetadataRequest req;
  // librdkafka 2.x (through 2.15 at least, its issue #5049) asks for every
  // topic at v9+ with the classic 4-byte null placeholder it never shrinks
  // to the 1-byte compact null: 00 00 00 00, then the real fields. Kafka
  // reads the first byte as null and ignores the bytes left over; here the
  // three padding bytes are skipped, so the client's own flags are read. A
  // well-formed body with a null array is 3 bytes shorter, so the exact
  // length tells the two apart.
  const size_t fields_after_topics = (v >= 4 ? 1 : 0) + (v >= 8 && v <= 10 ? 1 : 0) + (v >= 8 ? 1 : 0) + 1;
  if (v >= 9 && r.remaining() == 4 + fields_after_topics && r.peek_zeros(4)) {
    for (int i = 0; i < 3; ++i) r.i8();
  }
  int32_t n = r.array_len(v >= 10 ? 18 : 2);
  if (n >= 0) {
    std::vector<std::string> names;
    for (int32_t i = 0; i < n && r.ok(); ++i) {
      if (v >= 10) {
        // A topic id (v10+) names nothing here: this broker has no topic
        // ids, and clients send the zero id with a name. A topic asked for
        // by id alone (null name, v12) is unknown.
        for (int b = 0; b < 16; ++b) r.i8();
      }
      auto name = v >= 12 ? r.nullable_string() : std::optional<std::string>(r.string());
      names.push_back(name.value_or(""));
      r.tags();
    }
    // v0 has no null array: an empty list means every topic.
    if (!(v == 0 && names.empty())) req.topics = std::move(names);
  }
  if (v >= 4) req.allow_auto_topic_creation = r.boolean();
  if (v >= 8 && v <= 10) r.boolean();  // include_cluster_authorized_operations
  if (v >= 8) r.boolean();             // include_topic_authorized_operations
  return finish(r, std::move(req), "Metadata");
}

Result<CreateTopicsRequest> decode_create_topics(Reader& r, int16_t v) {
  using Req = CreateTopicsRequest;
  Req req;
  // A topic takes at least 16 bytes: name, counts and two arrays.
  each(
      r,
      [&] {
        Req::Topic t;
        t.name = r.string();
        t.num_partitions = r.i32();
        t.replication_factor = r.i16();
        each(
            r,
            [&] {
              Req::Assignment a;
              a.partition = r.i32();
              read_replicas(r, a);  // and the assignment's tags
              if (t.assignment_count++ < Req::kMaxKeptAssignments) t.assignments.push_back(std::move(a));
            },
            8);
        each(
            r,
            [&] {
              std::string name = r.string();
              std::optional<std::string> value = r.nullable_string();
              if (t.config_count++ < Req::kMaxKeptConfigs) t.configs.emplace_back(std::move(name), std::move(value));
              r.tags();
            },
            4);
        r.tags();
        req.topics.push_back(std::move(t));
      },
      16);
  req.timeout_ms = r.i32();
  if (v >= 1) req.validate_only = r.boolean();
  return finish(r, std::move(req), "CreateTopics");
}

Result<DeleteTopicsRequest> decode_delete_topics(Reader& r, int16_t v) {
  DeleteTopicsRequest req;
  each(r, [&] { req.names.push_back(r.string()); });
  req.timeout_ms = r.i32();
  return finish(r, std::move(req), "DeleteTopics");
}

Result<InitProducerIdRequest> decode_init_producer_id(Reader& r, int16_t v) {
  InitProducerIdRequest req;
  req.transactional_id = r.nullable_string();
  req.transaction_timeout_ms = r.i32();
  return finish(r, std::move(req), "InitProducerId");
}

Result<FindCoordinatorRequest> decode_find_coordinator(Reader& r, int16_t v) {
  FindCoordinatorRequest req;
  req.key = r.string();
  if (v >= 1) req.key_type = r.i8();
  return finish(r, std::move(req), "FindCoordinator");
}

Result<JoinGroupRequest> decode_join_group(Reader& r, int16_t v) {
  JoinGroupRequest req;
  req.group_id = r.string();
  req.session_timeout_ms = r.i32();
  req.rebalance_timeout_ms = v >= 1 ? r.i32() : req.session_timeout_ms;
  req.member_id = r.string();
  if (v >= 5) req.group_instance_id = r.nullable_string();
  req.protocol_type = r.string();
  each_capped(
      r, kMaxProtocolsPerJoin,
      [&] {
        JoinGroupRequest::Protocol p;
        p.name = r.string();
        p.metadata = r.bytes();
        r.tags();
        req.protocols.push_back(std::move(p));
      },
      6);
  return finish(r, std::move(req), "JoinGroup");
}

Result<SyncGroupRequest> decode_sync_group(Reader& r, int16_t v) {
  SyncGroupRequest req;
  read_member(r, v, req);
  each_capped(
      r, kMaxMembersPerRequest,
      [&] {
        SyncGroupRequest::Assignment a;
        a.member_id = r.string();
        a.assignment = r.bytes();
        r.tags();
        req.assignments.push_back(std::move(a));
      },
      6);
  return finish(r, std::move(req), "SyncGroup");
}

Result<HeartbeatRequest> decode_heartbeat(Reader& r, int16_t v) {
  HeartbeatRequest req;
  read_member(r, v, req);
  return finish(r, std::move(req), "Heartbeat");
}

Result<LeaveGroupRequest> decode_leave_group(Reader& r, int16_t v) {
  LeaveGroupRequest req;
  req.group_id = r.string();
  if (v <= 2) {
    req.members.push_back({r.string(), std::nullopt});
  } else {
    each_capped(
        r, kMaxMembersPerRequest,
        [&] {
          LeaveGroupRequest::Member m;
          m.member_id = r.string();
          m.group_instance_id = r.nullable_string();
          r.tags();
          req.members.push_back(std::move(m));
        },
        4);
  }
  return finish(r, std::move(req), "LeaveGroup");
}

Result<OffsetCommitRequest> decode_offset_commit(Reader& r, int16_t v) {
  OffsetCommitRequest req;
  req.group_id = r.string();
  if (v >= 1) {
    req.generation_id = r.i32();
    req.member_id = r.string();
  }
  if (v >= 7) req.group_instance_id = r.nullable_string();
  if (v >= 2 && v <= 4) r.i64();  // retention_time_ms: offsets are kept until the group is deleted
  req.topics = topics<OffsetCommitRequest::Partition>(r, 14, [&] {
    OffsetCommitRequest::Partition p;
    p.index = r.i32();
    p.offset = r.i64();
    if (v >= 6) p.leader_epoch = r.i32();
    if (v == 1) r.i64();  // commit_timestamp
    p.metadata = r.nullable_string();
    return p;
  });
  return finish(r, std::move(req), "OffsetCommit");
}

Result<OffsetFetchRequest> decode_offset_fetch(Reader& r, int16_t v) {
  OffsetFetchRequest req;
  req.group_id = r.string();
  int32_t n = r.array_len(6);
  if (n == -1 && v < 2) r.fail();  // null means "all topics" only from v2
  if (n >= 0) {
    std::vector<OffsetFetchRequest::Topic> topics;
    for (int32_t i = 0; i < n && r.ok(); ++i) {
      OffsetFetchRequest::Topic t;
      t.name = r.string();
      each(
          r, [&] { t.partitions.push_back(r.i32()); }, 4);
      r.tags();
      topics.push_back(std::move(t));
    }
    req.topics = std::move(topics);
  }
  if (v >= 7) req.require_stable = r.boolean();
  return finish(r, std::move(req), "OffsetFetch");
}

Result<ListGroupsRequest> decode_list_groups(Reader& r, int16_t /*v*/) {
  return finish(r, ListGroupsRequest{}, "ListGroups");  // v0-3: no field but v3's tags
}

Result<DescribeGroupsRequest> decode_describe_groups(Reader& r, int16_t v) {
  DescribeGroupsRequest req;
  each_capped(r, kMaxGroupsPerRequest, [&] { req.groups.push_back(r.string()); });
  if (v >= 3) req.include_authorized_operations = r.boolean();
  return finish(r, std::move(req), "DescribeGroups");
}

Result<CreatePartitionsRequest> decode_create_partitions(Reader& r, int16_t /*v*/) {
  CreatePartitionsRequest req;
  // A topic takes at least 10 bytes: name, count and the assignments' length.
  each_resource(
      r,
      [&] {
        CreatePartitionsRequest::Topic t;
        t.name = r.string();
        t.count = r.i32();
        int32_t n = r.array_len(4);
        if (n >= 0) t.assignment_count = n;
        for (int32_t i = 0; i < n && r.ok(); ++i) {
          CreateTopicsRequest::Assignment a;
          a.partition = i;
          read_replicas(r, a);
          if (i < CreateTopicsRequest::kMaxKeptAssignments) t.assignments.push_back(std::move(a));
        }
        r.tags();
        req.topics.push_back(std::move(t));
      },
      10);
  req.timeout_ms = r.i32();
  req.validate_only = r.boolean();
  return finish(r, std::move(req), "CreatePartitions");
}

Result<DeleteRecordsRequest> decode_delete_records(Reader& r, int16_t /*v*/) {
  DeleteRecordsRequest req;
  each_resource(
      r,
      [&] {
        DeleteRecordsRequest::Topic t;
        t.name = r.string();
        each(
            r,
            [&] {
              DeleteRecordsRequest::Partition p;
              p.index = r.i32();
              p.offset = r.i64();
              r.tags();
              t.partitions.push_back(p);
            },
            12);
        r.tags();
        req.topics.push_back(std::move(t));
      },
      6);
  req.timeout_ms = r.i32();
  return finish(r, std::move(req), "DeleteRecords");
}

Result<DescribeConfigsRequest> decode_describe_configs(Reader& r, int16_t v) {
  DescribeConfigsRequest req;
  // A resource takes at least 7 bytes: type, name and the names' length.
  each_resource(
      r,
      [&] {
        DescribeConfigsRequest::Resource res;
        res.type = r.i8();
        res.name = r.string();
        int32_t n = r.array_len(2);
        res.all = n == -1;
        for (int32_t i = 0; i < n && r.ok(); ++i) {
          std::string name = r.string();
          if (res.name_count++ < CreateTopicsRequest::kMaxKeptConfigs) res.names.push_back(std::move(name));
        }
        r.tags();
        req.resources.push_back(std::move(res));
      },
      7);
  if (v >= 1) req.include_synonyms = r.boolean();
  if (v >= 3) req.include_documentation = r.boolean();
  return finish(r, std::move(req), "DescribeConfigs");
}

namespace {

Result<AlterConfigsRequest> decode_alter(Reader& r, bool incremental, const char* what) {
  AlterConfigsRequest req;
  each_resource(
      r,
      [&] {
        AlterConfigsRequest::Resource res;
        res.type = r.i8();
        res.name = r.string();
        each(
            r,
            [&] {
              AlterConfigsRequest::Config c;
              c.name = r.string();
              if (incremental) c.op = r.i8();
              c.value = r.nullable_string();
              r.tags();
              if (res.config_count++ < CreateTopicsRequest::kMaxKeptConfigs) res.configs.push_back(std::move(c));
            },
            incremental ? 5 : 4);
        r.tags();
        req.resources.push_back(std::move(res));
      },
      7);
  req.validate_only = r.boolean();
  return finish(r, std::move(req), what);
}

}  // namespace

Result<AlterConfigsRequest> decode_alter_configs(Reader& r, int16_t /*v*/) {
  return decode_alter(r, false, "AlterConfigs");
}

Result<AlterConfigsRequest> decode_incremental_alter_configs(Reader& r, int16_t /*v*/) {
  return decode_alter(r, true, "IncrementalAlterConfigs");
}

Result<DeleteGroupsRequest> decode_delete_groups(Reader& r, int16_t /*v*/) {
  DeleteGroupsRequest req;  // v0 and v1 are the same
  each_capped(r, kMaxGroupsPerRequest, [&] { req.groups.push_back(r.string()); });
  return finish(r, std::move(req), "DeleteGroups");
}

}  // namespace starling::broker
