// Broker handlers of the consumer group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
// OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups.
#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "services/broker/broker.h"
#include "services/broker/response.h"

namespace starling::broker {

Reply Broker::handle_find_coordinator(const RequestHeader& h, const FindCoordinatorRequest& req) {
  const int16_t v = h.api_version;
  Response resp(h);
  auto& w = resp.w;
  if (v >= 1) w.i32(0);
  bool ok = req.key_type == 0;  // groups only; transaction coordinators do not exist here
  w.i16(code(ok ? ErrorCode::kNone : ErrorCode::kCoordinatorNotAvailable));
  if (v >= 1) w.nullable_string(ok ? std::nullopt : std::optional<std::string>("transactions are not supported"));
  w.i32(ok ? config_.node_id : -1);
  w.string(ok ? config_.advertised_host : "");
  w.i32(ok ? config_.advertised_port : -1);
  w.tags();
  return resp.done();
}

asio::awaitable<Reply> Broker::handle_join_group(const RequestHeader& h, JoinGroupRequest req, std::string host) {
  const int16_t v = h.api_version;
  // DescribeGroups reports the host as Kafka does (Java's InetAddress.toString).
  auto r = co_await groups_->join(std::move(req), h.client_id.value_or(""), "/" + host);
  Response resp(h);
  auto& w = resp.w;
  if (v >= 2) w.i32(0);
  w.i16(code(r.error));
  w.i32(r.generation_id);
  w.string(r.protocol_name);
  w.string(r.leader);
  w.string(r.member_id);
  w.array_len(r.members.size());
  for (const auto& m : r.members) {
    w.string(m.member_id);
    if (v >= 5) w.nullable_string(m.group_instance_id);
    w.bytes(m.metadata);
    w.tags();
  }
  w.tags();
  co_return resp.done();
}

asio::awaitable<Reply> Broker::handle_sync_group(const RequestHeader& h, SyncGroupRequest req) {
  auto r = co_await groups_->sync(std::move(req));
  Response resp(h);
  auto& w = resp.w;
  if (h.api_version >= 1) w.i32(0);
  w.i16(code(r.error));
  w.bytes(r.assignment);
  w.tags();
  co_return resp.done();
}

Reply Broker::handle_heartbeat(const RequestHeader& h, const HeartbeatRequest& req) {
  Response resp(h);
  auto& w = resp.w;
  if (h.api_version >= 1) w.i32(0);
  w.i16(code(groups_->heartbeat(req)));
  w.tags();
  return resp.done();
}

Reply Broker::handle_leave_group(const RequestHeader& h, const LeaveGroupRequest& req) {
  auto errors = groups_->leave(req);
  Response resp(h);
  auto& w = resp.w;
  if (h.api_version >= 1) w.i32(0);
  if (h.api_version <= 2) {
    w.i16(code(errors.empty() ? ErrorCode::kNone : errors.front()));
  } else {
    w.i16(0);
    w.array_len(errors.size());
    for (size_t i = 0; i < errors.size(); ++i) {
      w.string(req.members[i].member_id);
      w.nullable_string(req.members[i].group_instance_id);
      w.i16(code(errors[i]));
      w.tags();
    }
  }
  w.tags();
  return resp.done();
}

Reply Broker::handle_offset_commit(const RequestHeader& h, const OffsetCommitRequest& req) {
  auto errors = groups_->commit(req);
  Response resp(h);
  auto& w = resp.w;
  if (h.api_version >= 3) w.i32(0);
  w.array_len(req.topics.size());
  size_t i = 0;
  for (const auto& t : req.topics) {
    w.string(t.name);
    w.array_len(t.partitions.size());
    for (const auto& p : t.partitions) {
      w.i32(p.index);
      w.i16(code(errors[i++]));
      w.tags();
    }
    w.tags();
  }
  w.tags();
  return resp.done();
}

Reply Broker::handle_offset_fetch(const RequestHeader& h, const OffsetFetchRequest& req) {
  const int16_t v = h.api_version;
  auto results = groups_->fetch_offsets(req);
  // Group by topic, keeping first-seen order.
  std::vector<std::pair<std::string, std::vector<const GroupCoordinator::OffsetResult*>>> by_topic;
  for (const auto& r : results) {
    auto it = std::find_if(by_topic.begin(), by_topic.end(), [&](const auto& e) { return e.first == r.topic; });
    if (it == by_topic.end()) {
      by_topic.push_back({r.topic, {}});
      it = by_topic.end() - 1;
    }
    it->second.push_back(&r);
  }
  Response resp(h);
  auto& w = resp.w;
  if (v >= 3) w.i32(0);
  w.array_len(by_topic.size());
  for (const auto& [name, parts] : by_topic) {
    w.string(name);
    w.array_len(parts.size());
    for (const auto* p : parts) {
      w.i32(p->partition);
      w.i64(p->committed.offset);
      if (v >= 5) w.i32(p->committed.leader_epoch);
      w.nullable_string(p->committed.metadata);
      w.i16(code(p->error));
      w.tags();
    }
    w.tags();
  }
  if (v >= 2) w.i16(0);
  w.tags();
  return resp.done();
}

Reply Broker::handle_list_groups(const RequestHeader& h, const ListGroupsRequest& /*req*/) {
  auto groups = groups_->list_groups();
  Response resp(h);
  auto& w = resp.w;
  if (h.api_version >= 1) w.i32(0);
  w.i16(0);
  w.array_len(groups.size());
  for (const auto& [id, type] : groups) {
    w.string(id);
    w.string(type);
    w.tags();
  }
  w.tags();
  return resp.done();
}

Reply Broker::handle_describe_groups(const RequestHeader& h, const DescribeGroupsRequest& req) {
  const int16_t v = h.api_version;
  Response resp(h);
  auto& w = resp.w;
  if (v >= 1) w.i32(0);
  w.array_len(req.groups.size());
  for (const auto& id : req.groups) {
    auto d = groups_->describe(id);
    w.i16(code(d.error));
    w.string(d.group_id);
    w.string(d.state);
    w.string(d.protocol_type);
    w.string(d.protocol);
    w.array_len(d.members.size());
    for (const auto& m : d.members) {
      w.string(m.member_id);
      if (v >= 4) w.nullable_string(m.group_instance_id);
      w.string(m.client_id);
      w.string(m.client_host);
      w.bytes(m.metadata);
      w.bytes(m.assignment);
      w.tags();
    }
    if (v >= 3) w.i32(kNoAuthorizedOperations);
    w.tags();
  }
  w.tags();
  return resp.done();
}

Reply Broker::handle_delete_groups(const RequestHeader& h, const DeleteGroupsRequest& req) {
  auto errors = groups_->delete_groups(req.groups);
  Response resp(h);
  auto& w = resp.w;
  w.i32(0);  // throttle time
  w.array_len(req.groups.size());
  for (size_t i = 0; i < req.groups.size(); ++i) {
    w.string(req.groups[i]);
    w.i16(code(errors[i]));
    w.tags();
  }
  w.tags();
  return resp.done();
}

}  // namespace starling::broker
