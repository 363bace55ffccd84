#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "services/broker/error.h"
#include "services/broker/wire.h"

namespace starling::broker {

enum class ApiKey : int16_t {
  kProduce = 0,
  kFetch = 1,
  kListOffsets = 2,
  kMetadata = 3,
  kOffsetCommit = 8,
  kOffsetFetch = 9,
  kFindCoordinator = 10,
  kJoinGroup = 11,
  kHeartbeat = 12,
  kLeaveGroup = 13,
  kSyncGroup = 14,
  kDescribeGroups = 15,
  kListGroups = 16,
  kApiVersions = 18,
  kCreateTopics = 19,
  kDeleteTopics = 20,
  kInitProducerId = 22,
  // Admin APIs on data and configs (broker_admin.cc, broker_data.cc, broker_configs.cc).
  kDeleteRecords = 21,
  kDescribeConfigs = 32,
  kAlterConfigs = 33,
  kCreatePartitions = 37,
  kIncrementalAlterConfigs = 44,
  kDeleteGroups = 42,
};

struct ApiRange {
  ApiKey key;
  int16_t min_version;
  int16_t max_version;
  /// The first flexible version (KIP-482: compact fields, tagged fields,
  /// request header v2, response header v1), from the "flexibleVersions" of
  /// the API's JSON in apache/kafka; above max_version when none is served.
  int16_t first_flexible;
  bool flexible(int16_t version) const { return version >= first_flexible; }
};

/// Produce v0-2 are advertised but not served, as in Kafka 4.0 (KAFKA-18659):
/// librdkafka up to 2.0.2 compresses with gzip, snappy or lz4 only when the
/// broker's Produce range includes v0 (its msgset writer asks for Produce
/// v0..0 before it compresses with them), and otherwise sends those batches
/// uncompressed. Clients take the highest common version, so no client that
/// speaks v3 sends less. A Produce below this version is answered with
/// UNSUPPORTED_VERSION for each partition, and nothing is stored.
inline constexpr int16_t kFirstServedProduceVersion = 3;

/// Every API and version range this broker implements; clients pick the
/// highest common version from this list.
const std::vector<ApiRange>& supported_apis();
/// nullopt when the key is unknown.
std::optional<ApiRange> find_api(int16_t api_key);

struct RequestHeader {
  int16_t api_key = 0;
  int16_t api_version = 0;
  int32_t correlation_id = 0;
  std::optional<std::string> client_id;
  /// The version is flexible: the header was v2 (its tagged fields read),
  /// the body and the response are in flexible mode.
  bool flexible = false;
};

/// Decodes request header v1, the part every version shares. For a flexible
/// version the caller reads the header's tagged fields (Reader::tags() in
/// flexible mode): the client id stays a classic nullable string in v2.
/// The reader is left at the start of the body.
Result<RequestHeader> decode_request_header(Reader& r);

// ---- Request bodies. Views (ByteView) point into the request frame. ----

/// A topic and its partitions, the nested array that most requests carry.
template <class Partition>
struct TopicPartitions {
  std::string name;
  std::vector<Partition> partitions;
};

struct ProduceRequest {
  std::optional<std::string> transactional_id;
  int16_t acks = 0;
  int32_t timeout_ms = 0;
  struct Partition {
    int32_t index = 0;
    std::optional<ByteView> records;
  };
  using Topic = TopicPartitions<Partition>;
  std::vector<Topic> topics;
};

struct FetchRequest {
  int32_t replica_id = -1;
  int32_t max_wait_ms = 0;
  int32_t min_bytes = 0;
  int32_t max_bytes = 0x7fffffff;
  int8_t isolation_level = 0;
  int32_t session_id = 0;
  int32_t session_epoch = -1;
  struct Partition {
    int32_t index = 0;
    int32_t current_leader_epoch = -1;
    int64_t fetch_offset = 0;
    int64_t log_start_offset = -1;
    int32_t partition_max_bytes = 0;
  };
  using Topic = TopicPartitions<Partition>;
  std::vector<Topic> topics;
};

struct ListOffsetsRequest {
  int32_t replica_id = -1;
  int8_t isolation_level = 0;
  struct Partition {
    int32_t index = 0;
    int32_t current_leader_epoch = -1;
    int64_t timestamp = 0;
  };
  using Topic = TopicPartitions<Partition>;
  std::vector<Topic> topics;
};

struct MetadataRequest {
  std::optional<std::vector<std::string>> topics;  // nullopt: all topics
  bool allow_auto_topic_creation = true;
};

struct CreateTopicsRequest {
  // Per topic the decoder keeps at most these many assignments, replica ids
  // and configs; the rest are read and counted only. A frame of tiny
  // elements cannot make it allocate many times the frame, and a topic over
  // a cap is refused anyway (1000 partitions, one replica).
  static constexpr int32_t kMaxKeptAssignments = 1000;
  static constexpr int32_t kMaxKeptReplicas = 16;
  static constexpr int32_t kMaxKeptConfigs = 64;
  struct Assignment {
    int32_t partition = 0;
    int32_t replica_count = 0;        // as sent
    std::vector<int32_t> broker_ids;  // the first kMaxKeptReplicas
  };
  struct Topic {
    std::string name;
    int32_t num_partitions = -1;
    int16_t replication_factor = -1;
    int32_t assignment_count = 0;         // as sent
    std::vector<Assignment> assignments;  // the first kMaxKeptAssignments
    int32_t config_count = 0;             // as sent
    /// Name and value (null: the default), the first kMaxKeptConfigs.
    std::vector<std::pair<std::string, std::optional<std::string>>> configs;
  };
  std::vector<Topic> topics;
  int32_t timeout_ms = 0;
  bool validate_only = false;
};

struct DeleteTopicsRequest {
  std::vector<std::string> names;
  int32_t timeout_ms = 0;
};

struct InitProducerIdRequest {
  std::optional<std::string> transactional_id;
  int32_t transaction_timeout_ms = 0;
};

struct FindCoordinatorRequest {
  std::string key;
  int8_t key_type = 0;
};

struct JoinGroupRequest {
  std::string group_id;
  int32_t session_timeout_ms = 0;
  int32_t rebalance_timeout_ms = -1;
  std::string member_id;
  std::optional<std::string> group_instance_id;
  std::string protocol_type;
  struct Protocol {
    std::string name;
    Bytes metadata;
  };
  std::vector<Protocol> protocols;
};

struct SyncGroupRequest {
  std::string group_id;
  int32_t generation_id = 0;
  std::string member_id;
  std::optional<std::string> group_instance_id;
  struct Assignment {
    std::string member_id;
    Bytes assignment;
  };
  std::vector<Assignment> assignments;
};

struct HeartbeatRequest {
  std::string group_id;
  int32_t generation_id = 0;
  std::string member_id;
  std::optional<std::string> group_instance_id;
};

struct LeaveGroupRequest {
  std::string group_id;
  struct Member {
    std::string member_id;
    std::optional<std::string> group_instance_id;
  };
  std::vector<Member> members;
};

struct OffsetCommitRequest {
  std::string group_id;
  int32_t generation_id = -1;
  std::string member_id;
  std::optional<std::string> group_instance_id;
  struct Partition {
    int32_t index = 0;
    int64_t offset = 0;
    int32_t leader_epoch = -1;
    std::optional<std::string> metadata;
  };
  using Topic = TopicPartitions<Partition>;
  std::vector<Topic> topics;
};

struct OffsetFetchRequest {
  std::string group_id;
  using Topic = TopicPartitions<int32_t>;
  std::optional<std::vector<Topic>> topics;  // nullopt: every committed offset
  /// v7 (KIP-447): wait for pending transactional offsets. This broker has
  /// no transactions, so every committed offset is stable.
  bool require_stable = false;
};

struct ListGroupsRequest {};  // v0-2 have an empty body

/// Decoder caps on the group APIs' arrays (README "Limits"): a request over
/// one is refused (INVALID_REQUEST, the connection is closed) before anything
/// is kept, so a frame of tiny elements cannot make the decoder allocate many
/// times the frame. Each is far above what a client sends.
inline constexpr int32_t kMaxGroupsPerRequest = 1000;   // DescribeGroups, DeleteGroups
inline constexpr int32_t kMaxMembersPerRequest = 1000;  // LeaveGroup v3 members, SyncGroup assignments
inline constexpr int32_t kMaxProtocolsPerJoin = 64;     // JoinGroup protocols (assignors)

struct DescribeGroupsRequest {
  std::vector<std::string> groups;
  bool include_authorized_operations = false;
};

/// The admin decoders below fail a request with more top-level topics or
/// resources than this (the connection is closed as for any malformed
/// request), and keep at most kMaxKeptConfigs configs (config names) per
/// resource, counting the rest: a frame of tiny elements cannot make them
/// allocate many times the frame.
inline constexpr int32_t kMaxAdminResources = 1000;

struct CreatePartitionsRequest {
  struct Topic {
    std::string name;
    int32_t count = 0;
    /// nullopt: null (the broker places the new partitions). Otherwise as
    /// in CreateTopics, the partition of each is count-before + its index
    /// (set by the handler, which knows the count before).
    std::optional<int32_t> assignment_count;
    std::vector<CreateTopicsRequest::Assignment> assignments;  // the first kMaxKeptAssignments
  };
  std::vector<Topic> topics;
  int32_t timeout_ms = 0;
  bool validate_only = false;
};

struct DeleteRecordsRequest {
  struct Partition {
    int32_t index = 0;
    int64_t offset = 0;  // -1: the high watermark
  };
  using Topic = TopicPartitions<Partition>;
  std::vector<Topic> topics;
  int32_t timeout_ms = 0;
};

/// Kafka's resource types of the config APIs.
enum class ResourceType : int8_t { kTopic = 2, kBroker = 4 };

struct DescribeConfigsRequest {
  struct Resource {
    int8_t type = 0;
    std::string name;
    bool all = true;                 // the names were null: every config
    int32_t name_count = 0;          // as sent
    std::vector<std::string> names;  // the first kMaxKeptConfigs
  };
  std::vector<Resource> resources;
  bool include_synonyms = false;
  bool include_documentation = false;
};

/// AlterConfigs and IncrementalAlterConfigs (which adds an operation per config).
struct AlterConfigsRequest {
  struct Config {
    std::string name;
    int8_t op = 0;  // IncrementalAlterConfigs: 0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT
    std::optional<std::string> value;
  };
  struct Resource {
    int8_t type = 0;
    std::string name;
    int32_t config_count = 0;     // as sent
    std::vector<Config> configs;  // the first kMaxKeptConfigs
  };
  std::vector<Resource> resources;
  bool validate_only = false;
};

struct DeleteGroupsRequest {
  std::vector<std::string> groups;
};

// Each decoder reads the body of its API at `version` (which the caller has
// checked against supported_apis()) and fails on truncation or trailing bytes.
Result<ProduceRequest> decode_produce(Reader& r, int16_t version);
Result<FetchRequest> decode_fetch(Reader& r, int16_t version);
Result<ListOffsetsRequest> decode_list_offsets(Reader& r, int16_t version);
Result<MetadataRequest> decode_metadata(Reader& r, int16_t version);
Result<CreateTopicsRequest> decode_create_topics(Reader& r, int16_t version);
Result<DeleteTopicsRequest> decode_delete_topics(Reader& r, int16_t version);
Result<InitProducerIdRequest> decode_init_producer_id(Reader& r, int16_t version);
Result<FindCoordinatorRequest> decode_find_coordinator(Reader& r, int16_t version);
Result<JoinGroupRequest> decode_join_group(Reader& r, int16_t version);
Result<SyncGroupRequest> decode_sync_group(Reader& r, int16_t version);
Result<HeartbeatRequest> decode_heartbeat(Reader& r, int16_t version);
Result<LeaveGroupRequest> decode_leave_group(Reader& r, int16_t version);
Result<OffsetCommitRequest> decode_offset_commit(Reader& r, int16_t version);
Result<OffsetFetchRequest> decode_offset_fetch(Reader& r, int16_t version);
Result<ListGroupsRequest> decode_list_groups(Reader& r, int16_t version);
Result<DescribeGroupsRequest> decode_describe_groups(Reader& r, int16_t version);
Result<CreatePartitionsRequest> decode_create_partitions(Reader& r, int16_t version);
Result<DeleteRecordsRequest> decode_delete_records(Reader& r, int16_t version);
Result<DescribeConfigsRequest> decode_describe_configs(Reader& r, int16_t version);
Result<AlterConfigsRequest> decode_alter_configs(Reader& r, int16_t version);
Result<AlterConfigsRequest> decode_incremental_alter_configs(Reader& r, int16_t version);
Result<DeleteGroupsRequest> decode_delete_groups(Reader& r, int16_t version);

}  // namespace starling::broker
