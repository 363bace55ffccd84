#include "services/broker/group_coordinator.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

namespace starling::broker {

using std::chrono::milliseconds;

namespace {
GroupCoordinator::JoinResult join_error(ErrorCode e, std::string member_id = {}) {
  GroupCoordinator::JoinResult r;
  r.error = e;
  r.member_id = std::move(member_id);
  return r;
}
// Kafka's group.min/max.session.timeout.ms defaults are 6 s and 30 min; the
// lower bound is relaxed so tests can expire members quickly.
constexpr milliseconds kMinSessionTimeout{500};
constexpr milliseconds kMaxSessionTimeout{30 * 60 * 1000};
}  // namespace

GroupCoordinator::GroupCoordinator(asio::any_io_executor ex, MetadataStore& store, TopicExists topic_exists,
                                   GroupConfig config)
    : ex_(std::move(ex)), config_(config), store_(store), topic_exists_(std::move(topic_exists)) {
  for (auto& [key, c] : store_.load_offsets()) {
    offsets_[std::get<0>(key)][{std::get<1>(key), std::get<2>(key)}] = c;
  }
}

const char* GroupCoordinator::state_name(State s) {
  switch (s) {
    case State::kEmpty:
      return "Empty";
    case State::kPreparingRebalance:
      return "PreparingRebalance";
    case State::kCompletingRebalance:
      return "CompletingRebalance";
    case State::kStable:
      return "Stable";
    case State::kDead:
      return "Dead";
  }
  return "Dead";
}

GroupCoordinator::Member* GroupCoordinator::find_member(Group& g, const std::string& id) {
  for (auto& m : g.members) {
    if (m->id == id) return m.get();
  }
  return nullptr;
}

GroupCoordinator::Member* GroupCoordinator::find_static(Group& g, const std::string& instance_id) {
  for (auto& m : g.members) {
    if (m->instance_id == instance_id) return m.get();
  }
  return nullptr;
}

ErrorCode GroupCoordinator::check_member(Group& g, const std::string& member_id,
                                         const std::optional<std::string>& instance_id) {
  if (instance_id) {
    const Member* holder = find_static(g, *instance_id);
    if (holder == nullptr) return ErrorCode::kUnknownMemberId;
    if (holder->id != member_id) {
      spdlog::info("group {}: member {} of instance {} is fenced by {}", g.id, member_id, *instance_id, holder->id);
      return ErrorCode::kFencedInstanceId;
    }
    return ErrorCode::kNone;
  }
  return find_member(g, member_id) != nullptr ? ErrorCode::kNone : ErrorCode::kUnknownMemberId;
}

std::string GroupCoordinator::new_member_id(const std::string& client_id,
                                            const std::optional<std::string>& instance_id) {
  // As Kafka: a static member's id starts with its instance id.
  std::string prefix = instance_id ? *instance_id : client_id.empty() ? std::string("member") : client_id;
  return fmt::format("{}-{}-{:08x}", prefix, ++member_counter_, std::random_device{}());
}

const Bytes* GroupCoordinator::metadata_for(const Member& m, const std::string& protocol) {
  for (const auto& p : m.protocols) {
    if (p.name == protocol) return &p.metadata;
  }
  return nullptr;
}

std::optional<std::string> GroupCoordinator::select_protocol(const Group& g) const {
  // Candidates are the protocols every member supports; each member votes for
  // its most preferred candidate (as Kafka's GroupMetadata.selectProtocol).
  if (g.members.empty()) return std::nullopt;
  std::vector<std::string> candidates;
  for (const auto& p : g.members.front()->protocols) {
    bool all = std::all_of(g.members.begin(), g.members.end(),
                           [&](const auto& m) { return metadata_for(*m, p.name) != nullptr; });
    if (all) candidates.push_back(p.name);
  }
  if (candidates.empty()) return std::nullopt;
  std::map<std::string, int> votes;
  for (const auto& m : g.members) {
    for (const auto& p : m->protocols) {
      if (std::find(candidates.begin(), candidates.end(), p.name) != candidates.end()) {
        ++votes[p.name];
        break;
      }
    }
  }
  std::string best = candidates.front();
  for (const auto& c : candidates) {
    if (votes[c] > votes[best]) best = c;
  }
  return best;
}

void GroupCoordinator::prepare_rebalance(Group& g, const char* reason) {
  if (g.state == State::kPreparingRebalance) return;
  spdlog::info("group {}: rebalance (generation {}): {}", g.id, g.generation, reason);
  const bool from_empty = g.state == State::kEmpty;
  g.state = State::kPreparingRebalance;
  milliseconds timeout{0};
  for (auto& m : g.members) {
    m->joined = m->join_waiter != nullptr;
    timeout = std::max(timeout, m->rebalance_timeout);
    // Members waiting for their assignment must rejoin instead.
    if (m->sync_waiter) {
      m->sync_waiter->complete({ErrorCode::kRebalanceInProgress, {}});
      m->sync_waiter.reset();
    }
  }
  const auto now = Clock::now();
  g.rebalance_deadline = now + timeout;
  g.delaying = from_empty && config_.initial_rebalance_delay.count() > 0;
  if (g.delaying) {
    // As Kafka's InitialDelayedJoin: tick() ends the wait.
    g.joined_during_delay = false;
    g.delay_until = now + config_.initial_rebalance_delay;
    g.delay_limit = now + std::max(timeout, config_.initial_rebalance_delay);
    g.rebalance_deadline = g.delay_limit;
  }
}

void GroupCoordinator::maybe_complete_join(Group& g) {
  if (g.state != State::kPreparingRebalance || g.delaying) return;
  bool all = std::all_of(g.members.begin(), g.members.end(), [](const auto& m) { return m->join_waiter != nullptr; });
  if (all) complete_join(g);
}

void GroupCoordinator::complete_join(Group& g) {
  g.delaying = false;
  // Members that did not rejoin within the rebalance timeout are dropped.
  for (size_t i = 0; i < g.members.size();) {
    if (!g.members[i]->join_waiter) {
      spdlog::info("group {}: member {} did not rejoin in time, removing", g.id, g.members[i]->id);
      g.members.erase(g.members.begin() + static_cast<long>(i));
    } else {
      ++i;
    }
  }
  ++g.generation;
  if (g.members.empty()) {
    g.state = State::kEmpty;
    g.protocol.clear();
    g.leader.clear();
    return;
  }
  auto protocol = select_protocol(g);
  if (!protocol) {
    // Cannot happen: join() refuses members without a common protocol.
    for (auto& m : g.members) m->join_waiter->complete(join_error(ErrorCode::kInconsistentGroupProtocol));
    g.members.clear();
    g.state = State::kEmpty;
    return;
  }
  g.protocol = *protocol;
  if (!find_member(g, g.leader)) g.leader = g.members.front()->id;
  g.state = State::kCompletingRebalance;
  spdlog::info("group {}: generation {} with {} members, protocol {}, leader {}", g.id, g.generation, g.members.size(),
               g.protocol, g.leader);
  auto now = Clock::now();
  for (auto& m : g.members) {
    JoinResult r;
    r.generation_id = g.generation;
    r.protocol_name = g.protocol;
    r.leader = g.leader;
    r.member_id = m->id;
    if (m->id == g.leader) {
      for (auto& o : g.members) r.members.push_back({o->id, o->instance_id, *metadata_for(*o, g.protocol)});
    }
    m->last_seen = now;
    m->joined = false;
    m->assignment.clear();
    auto w = std::move(m->join_waiter);
    w->complete(std::move(r));
  }
}

void GroupCoordinator::remove_member(Group& g, const std::string& id, const char* reason) {
  auto it = std::find_if(g.members.begin(), g.members.end(), [&](const auto& m) { return m->id == id; });
  if (it == g.members.end()) return;
  spdlog::info("group {}: removing member {}: {}", g.id, id, reason);
  if ((*it)->join_waiter) (*it)->join_waiter->complete(join_error(ErrorCode::kUnknownMemberId));
  if ((*it)->sync_waiter) (*it)->sync_waiter->complete({ErrorCode::kUnknownMemberId, {}});
  g.members.erase(it);
  if (g.members.empty()) {
    if (g.state != State::kEmpty) ++g.generation;
    g.state = State::kEmpty;
    g.delaying = false;
    g.protocol.clear();
    g.leader.clear();
    return;
  }
  if (g.state == State::kPreparingRebalance) {
    maybe_complete_join(g);
  } else {
    prepare_rebalance(g, reason);
  }
}

asio::awaitable<GroupCoordinator::JoinResult> GroupCoordinator::join(JoinGroupRequest req, std::string client_id,
                                                                     std::string client_host) {
  if (req.group_id.empty()) co_return join_error(ErrorCode::kInvalidGroupId);
  milliseconds session{req.session_timeout_ms};
  if (session < kMinSessionTimeout || session > kMaxSessionTimeout)
    co_return join_error(ErrorCode::kInvalidSessionTimeout);
  if (req.protocols.empty() || req.protocol_type.empty()) co_return join_error(ErrorCode::kInconsistentGroupProtocol);

  auto& slot = groups_[req.group_id];
  if (!slot) {
    slot = std::make_unique<Group>();
    slot->id = req.group_id;
  }
  Group& g = *slot;
  if (!g.members.empty() && g.protocol_type != req.protocol_type)
    co_return join_error(ErrorCode::kInconsistentGroupProtocol);
  // KIP-345: a known group.instance.id that joins without a member id is the
  // same consumer restarted; it takes the old member's place (below).
  Member* replaced = nullptr;
  if (req.member_id.empty() && req.group_instance_id) replaced = find_static(g, *req.group_instance_id);
  if (!req.member_id.empty() && req.group_instance_id) {
    // A static member rejoining with its id: the instance must still be its.
    if (auto e = check_member(g, req.member_id, req.group_instance_id); e != ErrorCode::kNone)
      co_return join_error(e, req.member_id);
  }
  // A newcomer must share at least one protocol with every current member.
  for (const auto& m : g.members) {
    if (m->id == req.member_id || m.get() == replaced) continue;
    bool shared = std::any_of(req.protocols.begin(), req.protocols.end(),
                              [&](const auto& p) { return metadata_for(*m, p.name) != nullptr; });
    if (!shared) co_return join_error(ErrorCode::kInconsistentGroupProtocol);
  }

  Member* m = nullptr;
  const std::string current_leader = g.leader;
  if (replaced != nullptr) {
    // The old member id is fenced: a request of it still parked is answered
    // FENCED_INSTANCE_ID, later ones with the instance id get the same. The
    // member keeps its place, its assignment and (if it led) the leadership.
    m = replaced;
    const std::string old_id = m->id;
    if (auto w = std::move(m->join_waiter)) w->complete(join_error(ErrorCode::kFencedInstanceId, old_id));
    if (auto w = std::move(m->sync_waiter)) w->complete({ErrorCode::kFencedInstanceId, {}});
    m->id = new_member_id(client_id, req.group_instance_id);
    if (g.leader == old_id) g.leader = m->id;
    spdlog::info("group {}: static member {} rejoined as {}, replacing {}", g.id, *req.group_instance_id, m->id,
                 old_id);
  } else if (req.member_id.empty()) {
    auto owned = std::make_unique<Member>();
    owned->id = new_member_id(client_id, req.group_instance_id);
    m = owned.get();
    g.members.push_back(std::move(owned));
    if (g.delaying) g.joined_during_delay = true;
  } else {
    m = find_member(g, req.member_id);
    if (m == nullptr) co_return join_error(ErrorCode::kUnknownMemberId, req.member_id);
  }
  bool changed = m->protocols.size() != req.protocols.size() ||
                 !std::equal(m->protocols.begin(), m->protocols.end(), req.protocols.begin(),
                             [](const auto& a, const auto& b) { return a.name == b.name && a.metadata == b.metadata; });
  m->instance_id = req.group_instance_id;
  m->client_id = client_id;
  m->client_host = client_host;
  m->session_timeout = session;
  m->rebalance_timeout = milliseconds{req.rebalance_timeout_ms > 0 ? req.rebalance_timeout_ms : req.session_timeout_ms};
  m->protocols = std::move(req.protocols);
  m->last_seen = Clock::now();
  g.protocol_type = req.protocol_type;

  if (replaced != nullptr && g.state == State::kStable && select_protocol(g) == g.protocol) {
    // No rebalance (Kafka's updateStaticMemberAndRebalance): the generation
    // and assignment stand. The leader returned is the one before the
    // replacement, so a restarted leader does not see itself as leader and
    // assign partitions that a Stable group would never hand out; its
    // SyncGroup gets the assignment it had.
    JoinResult r;
    r.generation_id = g.generation;
    r.protocol_name = g.protocol;
    r.leader = current_leader;
    r.member_id = m->id;
    co_return r;
  }
  if (replaced == nullptr && !changed && m->id != g.leader &&
      (g.state == State::kStable || g.state == State::kCompletingRebalance)) {
    // A follower that rejoins without changes just gets the current generation.
    JoinResult r;
    r.generation_id = g.generation;
    r.protocol_name = g.protocol;
    r.leader = g.leader;
    r.member_id = m->id;
    co_return r;
  }
  if (m->join_waiter) m->join_waiter->complete(join_error(ErrorCode::kUnknownMemberId));  // superseded request
  auto waiter = std::make_shared<Pending<JoinResult>>(ex_);
  m->join_waiter = waiter;
  m->joined = true;
  std::string member_id = m->id;
  prepare_rebalance(g, replaced != nullptr
                           ? "static member rejoined while completing a rebalance or with other protocols"
                       : changed ? "member joined or changed its protocols"
                                 : "leader rejoined");
  maybe_complete_join(g);
  auto deadline = g.rebalance_deadline + milliseconds(1000);
  co_await waiter->wait_until(deadline);
  if (auto& result = waiter->result) co_return std::move(*result);
  co_return join_error(ErrorCode::kRebalanceInProgress, member_id);
}

asio::awaitable<GroupCoordinator::SyncResult> GroupCoordinator::sync(SyncGroupRequest req) {
  auto it = groups_.find(req.group_id);
  if (it == groups_.end()) co_return SyncResult{ErrorCode::kUnknownMemberId, {}};
  Group& g = *it->second;
  if (auto e = check_member(g, req.member_id, req.group_instance_id); e != ErrorCode::kNone)
    co_return SyncResult{e, {}};
  Member* m = find_member(g, req.member_id);
  if (req.generation_id != g.generation) co_return SyncResult{ErrorCode::kIllegalGeneration, {}};
  m->last_seen = Clock::now();
  switch (g.state) {
    case State::kPreparingRebalance:
      co_return SyncResult{ErrorCode::kRebalanceInProgress, {}};
    case State::kStable:
      co_return SyncResult{ErrorCode::kNone, m->assignment};
    case State::kEmpty:
    case State::kDead:
      co_return SyncResult{ErrorCode::kUnknownMemberId, {}};
    case State::kCompletingRebalance:
      break;
  }
  if (m->id == g.leader) {
    for (auto& o : g.members) {
      o->assignment.clear();
      for (auto& a : req.assignments) {
        if (a.member_id == o->id) o->assignment = a.assignment;
      }
    }
    g.state = State::kStable;
    spdlog::info("group {}: generation {} is stable", g.id, g.generation);
    for (auto& o : g.members) {
      if (o->sync_waiter) {
        auto w = std::move(o->sync_waiter);
        w->complete({ErrorCode::kNone, o->assignment});
      }
    }
    co_return SyncResult{ErrorCode::kNone, m->assignment};
  }
  auto waiter = std::make_shared<Pending<SyncResult>>(ex_);
  if (m->sync_waiter) m->sync_waiter->complete({ErrorCode::kRebalanceInProgress, {}});
  m->sync_waiter = waiter;
  co_await waiter->wait_until(Clock::now() + std::max(m->rebalance_timeout, m->session_timeout));
  if (auto& result = waiter->result) co_return std::move(*result);
  // Leader never synced: a new round will be needed.
  co_return SyncResult{ErrorCode::kRebalanceInProgress, {}};
}

ErrorCode GroupCoordinator::heartbeat(const HeartbeatRequest& req) {
  auto it = groups_.find(req.group_id);
  if (it == groups_.end()) return ErrorCode::kUnknownMemberId;
  Group& g = *it->second;
  if (auto e = check_member(g, req.member_id, req.group_instance_id); e != ErrorCode::kNone) return e;
  Member* m = find_member(g, req.member_id);
  m->last_seen = Clock::now();
  if (g.state == State::kPreparingRebalance) return ErrorCode::kRebalanceInProgress;
  if (req.generation_id != g.generation) return ErrorCode::kIllegalGeneration;
  return ErrorCode::kNone;
}

std::vector<ErrorCode> GroupCoordinator::leave(const LeaveGroupRequest& req) {
  std::vector<ErrorCode> out;
  auto it = groups_.find(req.group_id);
  for (const auto& lm : req.members) {
    if (it == groups_.end()) {
      out.push_back(ErrorCode::kUnknownMemberId);
      continue;
    }
    Group& g = *it->second;
    std::string id = lm.member_id;
    if (id.empty() && lm.group_instance_id) {
      // v3+: an administrative removal names the instance only (KIP-345).
      const Member* holder = find_static(g, *lm.group_instance_id);
      if (holder == nullptr) {
        out.push_back(ErrorCode::kUnknownMemberId);
        continue;
      }
      id = holder->id;
    } else if (auto e = check_member(g, id, lm.group_instance_id); e != ErrorCode::kNone) {
      out.push_back(e);
      continue;
    }
    remove_member(g, id, "member left the group");
    out.push_back(ErrorCode::kNone);
  }
  return out;
}

std::vector<ErrorCode> GroupCoordinator::commit(const OffsetCommitRequest& req) {
  size_t count = 0;
  for (const auto& t : req.topics) count += t.partitions.size();
  auto all = [&](ErrorCode e) { return std::vector<ErrorCode>(count, e); };
  if (req.group_id.empty()) return all(ErrorCode::kInvalidGroupId);
  // generation -1 with no member id is a "simple" commit by a client that
  // manages its own assignment; anything else must match the live group.
  if (req.generation_id >= 0 || !req.member_id.empty() || req.group_instance_id) {
    auto it = groups_.find(req.group_id);
    if (it == groups_.end()) return all(ErrorCode::kIllegalGeneration);
    Group& g = *it->second;
    if (auto e = check_member(g, req.member_id, req.group_instance_id); e != ErrorCode::kNone) return all(e);
    Member* m = find_member(g, req.member_id);
    if (req.generation_id != g.generation) return all(ErrorCode::kIllegalGeneration);
    // In PreparingRebalance the generation is still the members' own: they
    // commit as they revoke, before rejoining (the heartbeat told them), and
    // refusing would lose those offsets. In CompletingRebalance the members
    // hold the new generation but not yet their assignment (Kafka's answer).
    if (g.state == State::kCompletingRebalance) return all(ErrorCode::kRebalanceInProgress);
    m->last_seen = Clock::now();
  }
  std::vector<ErrorCode> out;
  std::map<MetadataStore::OffsetKey, CommittedOffset> batch;
  for (const auto& t : req.topics) {
    for (const auto& p : t.partitions) {
      if (!topic_exists_(t.name, p.index)) {
        out.push_back(ErrorCode::kUnknownTopicOrPartition);
        continue;
      }
      out.push_back(ErrorCode::kNone);
      batch[{req.group_id, t.name, p.index}] = CommittedOffset{p.offset, p.leader_epoch, p.metadata};
    }
  }
  if (!batch.empty()) {
    if (auto r = store_.put_offsets(batch); !r) {
      spdlog::error("group {}: cannot persist offsets: {}", req.group_id, r.error().message);
      return all(ErrorCode::kUnknownServerError);
    }
    auto& mine = offsets_[req.group_id];
    for (auto& [k, c] : batch) mine[{std::get<1>(k), std::get<2>(k)}] = c;
  }
  return out;
}

std::vector<GroupCoordinator::OffsetResult> GroupCoordinator::fetch_offsets(const OffsetFetchRequest& req) const {
  std::vector<OffsetResult> out;
  auto git = offsets_.find(req.group_id);
  if (!req.topics) {
    if (git != offsets_.end()) {
      for (const auto& [tp, c] : git->second) out.push_back({tp.first, tp.second, c, ErrorCode::kNone});
    }
    return out;
  }
  for (const auto& t : *req.topics) {
    for (int32_t p : t.partitions) {
      OffsetResult r{t.name, p, CommittedOffset{-1, -1, std::string()}, ErrorCode::kNone};
      if (git != offsets_.end()) {
        auto it = git->second.find({t.name, p});
        if (it != git->second.end()) r.committed = it->second;
      }
      out.push_back(std::move(r));
    }
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> GroupCoordinator::list_groups() const {
  std::map<std::string, std::string> all;
  for (const auto& [id, c] : offsets_) all[id] = "consumer";
  for (const auto& [id, g] : groups_) all[id] = g->protocol_type;
  return {all.begin(), all.end()};
}

void GroupCoordinator::for_each_committed(
    const std::function<void(const std::string&, const std::string&, int32_t, int64_t)>& fn) const {
  for (const auto& [group, offsets] : offsets_) {
    for (const auto& [tp, committed] : offsets) fn(group, tp.first, tp.second, committed.offset);
  }
}

GroupCoordinator::GroupDescription GroupCoordinator::describe(const std::string& group_id) const {
  GroupDescription d;
  d.group_id = group_id;
  auto it = groups_.find(group_id);
  if (it == groups_.end()) {
    d.state = offsets_.count(group_id) != 0 ? "Empty" : "Dead";
    return d;
  }
  const Group& g = *it->second;
  d.state = state_name(g.state);
  d.protocol_type = g.protocol_type;
  const bool stable = g.state == State::kStable;
  if (stable) d.protocol = g.protocol;
  for (const auto& m : g.members) {
    MemberDescription md;
    md.member_id = m->id;
    md.group_instance_id = m->instance_id;
    md.client_id = m->client_id;
    md.client_host = m->client_host;
    if (stable) {
      md.assignment = m->assignment;
      if (const Bytes* meta = metadata_for(*m, g.protocol)) md.metadata = *meta;
    }
    d.members.push_back(std::move(md));
  }
  return d;
}

std::vector<ErrorCode> GroupCoordinator::delete_groups(const std::vector<std::string>& group_ids) {
  std::vector<ErrorCode> out;
  out.reserve(group_ids.size());
  for (const auto& id : group_ids) {
    if (id.empty()) {
      out.push_back(ErrorCode::kInvalidGroupId);
      continue;
    }
    auto git = groups_.find(id);
    const bool live = git != groups_.end();
    if (live && !git->second->members.empty()) {
      out.push_back(ErrorCode::kNonEmptyGroup);
      continue;
    }
    if (!live && offsets_.count(id) == 0) {
      out.push_back(ErrorCode::kGroupIdNotFound);
      continue;
    }
    // Durable first: offsets that come back after a crash would be worse
    // than a deletion that has to be repeated.
    auto deleted = store_.delete_group_offsets(id);
    if (!deleted) {
      spdlog::error("group {}: cannot delete its offsets: {}", id, deleted.error().message);
      out.push_back(ErrorCode::kUnknownServerError);
      continue;
    }
    offsets_.erase(id);
    if (live) groups_.erase(git);
    spdlog::info("group {}: deleted ({} committed offsets)", id, *deleted);
    out.push_back(ErrorCode::kNone);
  }
  return out;
}

void GroupCoordinator::tick(Clock::time_point now) {
  for (auto& [id, gp] : groups_) {
    Group& g = *gp;
    std::vector<std::string> expired;
    for (const auto& m : g.members) {
      // A member parked in JoinGroup/SyncGroup is alive by definition.
      if (m->join_waiter || m->sync_waiter) continue;
      if (now - m->last_seen > m->session_timeout) expired.push_back(m->id);
    }
    for (const auto& mid : expired) remove_member(g, mid, "session timeout expired");
    if (g.state == State::kPreparingRebalance && g.delaying && now >= g.delay_until) {
      if (g.joined_during_delay && g.delay_until < g.delay_limit) {
        g.joined_during_delay = false;
        g.delay_until = std::min(now + config_.initial_rebalance_delay, g.delay_limit);
      } else {
        complete_join(g);
      }
    }
    if (g.state == State::kPreparingRebalance && now >= g.rebalance_deadline) complete_join(g);
  }
}

}  // namespace starling::broker
