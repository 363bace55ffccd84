#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "services/broker/asio.h"
#include "services/broker/error.h"
#include "services/broker/messages.h"
#include "services/broker/metadata_store.h"

namespace starling::broker {

struct GroupConfig {
  /// Kafka's group.initial.rebalance.delay.ms (same default). When an empty
  /// group gets its first member, the join round waits this long for more
  /// before it completes; a wait in which a new member joined is followed by
  /// another, and the round ends at the latest the members' rebalance timeout
  /// after it began (or after one delay, if that is longer). Consumers that
  /// start together then get one rebalance instead of one each. 0: the round
  /// completes as soon as every member has joined.
  std::chrono::milliseconds initial_rebalance_delay{3000};
};

/// The classic (pre-KIP-848) group membership protocol for one node that
/// coordinates every group: JoinGroup/SyncGroup rounds with generations,
/// leader election and protocol selection, heartbeats with session timeouts,
/// rebalance timeouts, and committed offsets persisted in the MetadataStore.
///
/// Threading: every method runs on the broker's single I/O thread. join() and
/// sync() are coroutines that park until the round completes.
class GroupCoordinator {
 public:
  enum class State { kEmpty, kPreparingRebalance, kCompletingRebalance, kStable, kDead };

  struct JoinedMember {
    std::string member_id;
    std::optional<std::string> group_instance_id;
    Bytes metadata;
  };
  struct JoinResult {
    ErrorCode error = ErrorCode::kNone;
    int32_t generation_id = -1;
    std::string protocol_name;
    std::string leader;
    std::string member_id;
    std::vector<JoinedMember> members;  // only for the leader
  };
  struct SyncResult {
    ErrorCode error = ErrorCode::kNone;
    Bytes assignment;
  };
  struct MemberDescription {
    std::string member_id;
    std::optional<std::string> group_instance_id;
    std::string client_id;
    std::string client_host;
    Bytes metadata;
    Bytes assignment;
  };
  struct GroupDescription {
    ErrorCode error = ErrorCode::kNone;
    std::string group_id;
    std::string state;
    std::string protocol_type;
    std::string protocol;
    std::vector<MemberDescription> members;
  };
  struct OffsetResult {
    std::string topic;
    int32_t partition = 0;
    CommittedOffset committed;
    ErrorCode error = ErrorCode::kNone;
  };

  using TopicExists = std::function<bool(const std::string& topic, int32_t partition)>;

  GroupCoordinator(asio::any_io_executor ex, MetadataStore& store, TopicExists topic_exists, GroupConfig config);

  asio::awaitable<JoinResult> join(JoinGroupRequest req, std::string client_id, std::string client_host);
  asio::awaitable<SyncResult> sync(SyncGroupRequest req);
  ErrorCode heartbeat(const HeartbeatRequest& req);
  /// One error per member in the request.
  std::vector<ErrorCode> leave(const LeaveGroupRequest& req);

  /// Returns one error per partition in request order (flattened). As in
  /// Kafka, a member of the current generation may commit while the group
  /// prepares a rebalance (consumers commit as they revoke their partitions),
  /// but gets REBALANCE_IN_PROGRESS while the new generation awaits its
  /// assignment (CompletingRebalance).
  std::vector<ErrorCode> commit(const OffsetCommitRequest& req);
  std::vector<OffsetResult> fetch_offsets(const OffsetFetchRequest& req) const;

  std::vector<std::pair<std::string, std::string>> list_groups() const;  // id, protocol type
  /// Every committed offset: group, topic, partition, offset (for /metrics).
  void for_each_committed(
      const std::function<void(const std::string&, const std::string&, int32_t, int64_t)>& fn) const;
  /// As Kafka's GroupMetadata.summary: a Stable group reports its protocol
  /// and each member's subscription and assignment; in other states those
  /// are empty (they are being renegotiated). An unknown group is "Dead".
  GroupDescription describe(const std::string& group_id) const;

  /// DeleteGroups: one error per id, in order. An Empty group (no members,
  /// or only committed offsets) loses its offsets (one synced RocksDB batch)
  /// and its state; a group with members is NON_EMPTY_GROUP, an unknown one
  /// GROUP_ID_NOT_FOUND, an empty id INVALID_GROUP_ID.
  std::vector<ErrorCode> delete_groups(const std::vector<std::string>& group_ids);

  /// Expires members past their session timeout and completes rebalances
  /// past their deadline. Called periodically by the server.
  void tick(Clock::time_point now);

  static const char* state_name(State s);

 private:
  struct Member {
    std::string id;
    std::optional<std::string> instance_id;
    std::string client_id;
    std::string client_host;
    std::chrono::milliseconds session_timeout{0};
    std::chrono::milliseconds rebalance_timeout{0};
    std::vector<JoinGroupRequest::Protocol> protocols;
    Bytes assignment;
    Clock::time_point last_seen;
    bool joined = false;  // rejoined in the current PreparingRebalance round
    std::shared_ptr<Pending<JoinResult>> join_waiter;
    std::shared_ptr<Pending<SyncResult>> sync_waiter;
  };
  struct Group {
    std::string id;
    State state = State::kEmpty;
    int32_t generation = 0;
    std::string protocol_type;
    std::string protocol;
    std::string leader;
    std::vector<std::unique_ptr<Member>> members;  // join order: the first is the default leader
    Clock::time_point rebalance_deadline;
    /// A round begun from Empty waits GroupConfig::initial_rebalance_delay:
    /// until delay_until, and again while new members come, up to delay_limit.
    bool delaying = false;
    bool joined_during_delay = false;
    Clock::time_point delay_until;
    Clock::time_point delay_limit;
  };

  Member* find_member(Group& g, const std::string& id);
  /// The member holding a static `group.instance.id` (KIP-345), if any.
  static Member* find_static(Group& g, const std::string& instance_id);
  /// Kafka's validateCurrentMember: with an instance id, it must belong to
  /// `member_id` (else FENCED_INSTANCE_ID; UNKNOWN_MEMBER_ID when no member
  /// holds it); without one, the member id must be in the group.
  ErrorCode check_member(Group& g, const std::string& member_id, const std::optional<std::string>& instance_id);
  std::string new_member_id(const std::string& client_id, const std::optional<std::string>& instance_id);
  void prepare_rebalance(Group& g, const char* reason);
  void maybe_complete_join(Group& g);
  void complete_join(Group& g);
  void remove_member(Group& g, const std::string& id, const char* reason);
  std::optional<std::string> select_protocol(const Group& g) const;
  static const Bytes* metadata_for(const Member& m, const std::string& protocol);

  asio::any_io_executor ex_;
  GroupConfig config_;
  MetadataStore& store_;
  TopicExists topic_exists_;
  std::map<std::string, std::unique_ptr<Group>> groups_;
  std::map<std::string, std::map<std::pair<std::string, int32_t>, CommittedOffset>> offsets_;
  uint64_t member_counter_ = 0;
};

}  // namespace starling::broker
