#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "services/broker/asio.h"
#include "services/broker/broker_metrics.h"
#include "services/broker/error.h"
#include "services/broker/flusher.h"
#include "services/broker/group_coordinator.h"
#include "services/broker/messages.h"
#include "services/broker/metadata_store.h"
#include "services/broker/partition_log.h"
#include "services/broker/topic_config.h"

namespace starling::broker {

struct BrokerConfig {
  std::filesystem::path data_dir;
  std::string advertised_host = "127.0.0.1";
  uint16_t advertised_port = 0;
  int32_t node_id = 0;
  std::string cluster_id = "starling-broker";
  int32_t default_partitions = 1;
  bool auto_create_topics = true;
  /// 0: fsync every batch before acknowledging; otherwise flush every N ms.
  int64_t flush_interval_ms = 0;
  LogConfig log;
  /// Kafka's message.max.bytes: the largest record batch (whole, as stored,
  /// after compression) a Produce may append; a topic's max.message.bytes
  /// overrides it. Kafka's default, 1 MiB plus the 12-byte log overhead.
  int32_t message_max_bytes = 1048588;
  GroupConfig groups;
  /// Read descriptors of closed segments kept open across all partitions
  /// (FileCache); 0: default_max_open_segment_files().
  size_t max_open_segment_files = 0;
};

/// What the server should do after a request.
struct Reply {
  /// The response frame as consecutive buffers (record sets are their own
  /// buffers, so fetched data is never copied into the frame). Empty: no
  /// response (acks=0).
  std::vector<Bytes> buffers;
};

/// What the Server asks of the broker: a request frame in, a reply out. The
/// seam where server tests put a fake.
class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  /// Handles one request frame (without its 4-byte size). An error means the
  /// request could not be decoded: the server logs it and closes the connection.
  virtual asio::awaitable<Result<Reply>> handle(Bytes frame, std::string client_host) = 0;
};

/// All broker state and the request handlers. One instance per process.
///
/// Threading: everything runs on one strand-free io_context thread; handlers
/// are coroutines that may park (Fetch long-poll, JoinGroup, SyncGroup).
class Broker : public RequestHandler {
 public:
  /// Opens the data directory (topics, logs, offsets). Throws on startup errors.
  Broker(asio::any_io_executor ex, BrokerConfig config);
  ~Broker() override;

  /// Starts the periodic tasks: group timers, interval flush, retention.
  void start();
  /// Flushes every log (used at shutdown).
  void flush_all();

  asio::awaitable<Result<Reply>> handle(Bytes frame, std::string client_host) override;

  BrokerConfig& config() { return config_; }
  /// Sets the gauges read from state (log offsets per partition, committed
  /// offsets and lag per group and partition), dropping those of deleted
  /// topics and groups. Runs on the broker's thread: a scrape posts it there.
  void refresh_metrics();
  /// For tests: the log of a partition or nullptr.
  PartitionLog* log(const std::string& topic, int32_t partition);
  /// For tests: partition reads done by Fetch handlers so far.
  uint64_t fetch_partition_reads() const { return fetch_partition_reads_; }

 private:
  struct Topic {
    std::vector<std::unique_ptr<PartitionLog>> partitions;
    TopicConfig config;
  };
  /// A CreateTopics topic that passed every check: what create_topic needs.
  struct NewTopic {
    int32_t partitions = 0;
    TopicConfig config;
  };
  struct FetchWaiter {
    std::set<std::pair<std::string, int32_t>> watched;
    std::shared_ptr<Pending<bool>> pending;
  };

  Result<void> create_topic(const std::string& name, int32_t partitions, const TopicConfig& config = {});
  /// Checks a CreateTopics topic as creating it would (name, existence,
  /// assignment, replication factor, partition count, configs), creating nothing.
  Result<NewTopic> check_new_topic(const CreateTopicsRequest::Topic& t) const;
  /// The largest record batch `topic` takes: its max.message.bytes, else --message-max-bytes.
  size_t max_message_bytes(const std::string& topic) const;
  Result<void> delete_topic(const std::string& name);
  /// The LogConfig of a topic's partitions: the broker's, with the topic's
  /// segment.bytes, retention.ms and retention.bytes where it sets them.
  LogConfig log_config(const TopicConfig& config) const;
  /// CreatePartitions of one topic: every check, then (unless validate_only)
  /// the new logs and the topic's record with the new count.
  Result<void> create_partitions(const CreatePartitionsRequest::Topic& t, bool validate_only);
  /// Stores `config` in the topic's record (synced), then applies it to the topic and its logs.
  Result<void> set_topic_config(const std::string& name, TopicConfig config);
  /// The broker configs DescribeConfigs reports (Kafka's names), by name.
  std::map<std::string, ConfigEntry> broker_configs() const;
  /// AlterConfigs (replace) and IncrementalAlterConfigs (change) of one resource.
  Result<void> alter_resource(const AlterConfigsRequest::Resource& res, bool incremental, bool validate_only);
  void notify_fetchers(const std::string& topic, int32_t partition);
  std::filesystem::path partition_dir(const std::string& topic, int32_t partition) const;

  /// Decodes the body of `h`'s API with `decode` and answers it with `handler`,
  /// which may reply at once or be a coroutine. A body that does not decode is
  /// the request's error.
  template <auto decode, auto handler>
  asio::awaitable<Result<Reply>> serve(const RequestHeader& h, Reader& r, const std::string& client_host);
  using Serve = asio::awaitable<Result<Reply>> (Broker::*)(const RequestHeader&, Reader&, const std::string&);
  /// The serve<decoder, handler> of an API; nullptr for ApiVersions.
  static Serve route(ApiKey key);

  // Request handlers, one per API: broker_admin.cc, broker_data.cc, broker_groups.cc.
  asio::awaitable<Reply> handle_api_versions(const RequestHeader& h, Reader& body);
  Reply handle_metadata(const RequestHeader& h, const MetadataRequest& req);
  asio::awaitable<Result<Reply>> handle_produce(const RequestHeader& h, const ProduceRequest& req);
  Result<Reply> refuse_old_produce(const RequestHeader& h, const ProduceRequest& req);
  asio::awaitable<Reply> handle_fetch(const RequestHeader& h, const FetchRequest& req);
  Reply handle_list_offsets(const RequestHeader& h, const ListOffsetsRequest& req);
  Reply handle_create_topics(const RequestHeader& h, const CreateTopicsRequest& req);
  Reply handle_delete_topics(const RequestHeader& h, const DeleteTopicsRequest& req);
  Reply handle_init_producer_id(const RequestHeader& h, const InitProducerIdRequest& req);
  Reply handle_find_coordinator(const RequestHeader& h, const FindCoordinatorRequest& req);
  asio::awaitable<Reply> handle_join_group(const RequestHeader& h, JoinGroupRequest req, std::string host);
  asio::awaitable<Reply> handle_sync_group(const RequestHeader& h, SyncGroupRequest req);
  Reply handle_heartbeat(const RequestHeader& h, const HeartbeatRequest& req);
  Reply handle_leave_group(const RequestHeader& h, const LeaveGroupRequest& req);
  Reply handle_offset_commit(const RequestHeader& h, const OffsetCommitRequest& req);
  Reply handle_offset_fetch(const RequestHeader& h, const OffsetFetchRequest& req);
  Reply handle_list_groups(const RequestHeader& h, const ListGroupsRequest& req);
  Reply handle_describe_groups(const RequestHeader& h, const DescribeGroupsRequest& req);
  // Admin APIs on data and configs: broker_admin.cc, broker_data.cc, broker_configs.cc.
  Reply handle_create_partitions(const RequestHeader& h, const CreatePartitionsRequest& req);
  Reply handle_delete_records(const RequestHeader& h, const DeleteRecordsRequest& req);
  Reply handle_describe_configs(const RequestHeader& h, const DescribeConfigsRequest& req);
  Reply handle_alter_configs(const RequestHeader& h, const AlterConfigsRequest& req);
  Reply handle_incremental_alter_configs(const RequestHeader& h, const AlterConfigsRequest& req);
  Reply handle_delete_groups(const RequestHeader& h, const DeleteGroupsRequest& req);

  asio::awaitable<void> maintenance_loop();
  /// handle() without its timing: sets `api_key` once the header is read.
  asio::awaitable<Result<Reply>> dispatch(Bytes frame, std::string client_host, int16_t& api_key, int16_t& api_version);

  asio::any_io_executor ex_;
  BrokerConfig config_;
  std::unique_ptr<Flusher> flusher_;
  std::unique_ptr<MetadataStore> store_;
  std::unique_ptr<GroupCoordinator> groups_;
  std::map<std::string, Topic> topics_;
  std::vector<FetchWaiter*> fetch_waiters_;
  uint64_t fetch_partition_reads_ = 0;
  BrokerMetrics metrics_;
  Clock::time_point last_flush_;
  Clock::time_point last_retention_;
};

/// Topic names Kafka accepts: 1-249 of [a-zA-Z0-9._-], not "." or "..".
bool valid_topic_name(const std::string& name);

}  // namespace starling::broker
