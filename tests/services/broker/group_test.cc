// Unit tests of the group membership protocol with a real MetadataStore in a
// temporary directory and a manually driven clock tick.
#include <gtest/gtest.h>

#include <thread>

#include "services/broker/group_coordinator.h"
#include "tests/services/broker/broker_process.h"

namespace starling::broker {
namespace {

using namespace std::chrono_literals;
using Join = GroupCoordinator::JoinResult;
using Sync = GroupCoordinator::SyncResult;

JoinGroupRequest join_req(const std::string& member, const std::vector<std::string>& protocols = {"range"},
                          int32_t session_ms = 10000, int32_t rebalance_ms = 10000) {
  JoinGroupRequest r;
  r.group_id = "g";
  r.session_timeout_ms = session_ms;
  r.rebalance_timeout_ms = rebalance_ms;
  r.member_id = member;
  r.protocol_type = "consumer";
  for (auto& p : protocols) r.protocols.push_back({p, Bytes{1, 2, 3}});
  return r;
}

class Groups : public ::testing::Test {
 protected:
  testing::TempDir dir_;
  asio::io_context io_;
  std::unique_ptr<MetadataStore> store_ = std::make_unique<MetadataStore>(dir_.path() / "meta");
  std::unique_ptr<GroupCoordinator> gc_ = make();

  /// Without the initial rebalance delay unless a test sets one: rounds
  /// complete as soon as every member joined.
  GroupConfig config_{.initial_rebalance_delay = 0ms};
  std::unique_ptr<GroupCoordinator> make() {
    return std::make_unique<GroupCoordinator>(
        io_.get_executor(), *store_, [](const std::string& t, int32_t p) { return t == "t" && p < 4; }, config_);
  }

  std::shared_ptr<std::optional<Join>> join(const JoinGroupRequest& req) {
    auto out = std::make_shared<std::optional<Join>>();
    asio::co_spawn(
        io_, [this, out, req]() -> asio::awaitable<void> { *out = co_await gc_->join(req, "client", "host"); },
        asio::detached);
    run();
    return out;
  }
  std::shared_ptr<std::optional<Sync>> sync(const std::string& member, int32_t generation,
                                            std::vector<SyncGroupRequest::Assignment> assignments = {},
                                            std::optional<std::string> instance = std::nullopt) {
    SyncGroupRequest req;
    req.group_id = "g";
    req.generation_id = generation;
    req.member_id = member;
    req.group_instance_id = std::move(instance);
    req.assignments = std::move(assignments);
    auto out = std::make_shared<std::optional<Sync>>();
    asio::co_spawn(
        io_, [this, out, req]() -> asio::awaitable<void> { *out = co_await gc_->sync(req); }, asio::detached);
    run();
    return out;
  }
  ErrorCode heartbeat(const std::string& member, int32_t generation,
                      std::optional<std::string> instance = std::nullopt) {
    return gc_->heartbeat({"g", generation, member, std::move(instance)});
  }
  OffsetCommitRequest commit_req(const std::string& member, int32_t generation, int64_t offset,
                                 std::optional<std::string> instance = std::nullopt) {
    OffsetCommitRequest c;
    c.group_id = "g";
    c.generation_id = generation;
    c.member_id = member;
    c.group_instance_id = std::move(instance);
    c.topics.push_back({"t", {{0, offset, -1, std::nullopt}}});
    return c;
  }
  int64_t committed(const std::string& group, int32_t partition = 0) {
    OffsetFetchRequest f;
    f.group_id = group;
    f.topics = std::vector<OffsetFetchRequest::Topic>{{"t", {partition}}};
    return gc_->fetch_offsets(f).at(0).committed.offset;
  }
  void reopen() {
    gc_.reset();
    store_.reset();
    store_ = std::make_unique<MetadataStore>(dir_.path() / "meta");
    gc_ = make();
  }
  /// Given a stable generation of a static member "s1" (leader, assigned
  /// {1}) and a dynamic one (assigned {2}); returns their ids.
  std::pair<std::string, std::string> stable_static_and_dynamic() {
    auto js = join(static_join("", "s1"));
    std::string s = (*js)->member_id;
    sync(s, 1, {{s, Bytes{}}}, "s1");
    auto jd = join(join_req(""));
    join(static_join(s, "s1"));
    EXPECT_TRUE(jd->has_value());
    std::string d = (*jd)->member_id;
    auto sd = sync(d, 2);
    sync(s, 2, {{s, Bytes{1}}, {d, Bytes{2}}}, "s1");
    EXPECT_TRUE(sd->has_value());
    EXPECT_EQ(gc_->describe("g").state, "Stable");
    return {s, d};
  }
  static JoinGroupRequest static_join(const std::string& member, const std::string& instance) {
    auto r = join_req(member);
    r.group_instance_id = instance;
    return r;
  }
  void run() {
    io_.run_for(20ms);
    io_.restart();
  }
  void tick_after(std::chrono::milliseconds d) {
    std::this_thread::sleep_for(d);
    gc_->tick(Clock::now());
    run();
  }
  /// A one-member stable group; returns the member id.
  std::string stable_single_member() {
    auto j = join(join_req(""));
    EXPECT_TRUE(j->has_value());
    auto s = sync((*j)->member_id, (*j)->generation_id, {{(*j)->member_id, Bytes{9}}});
    EXPECT_TRUE(s->has_value());
    return (*j)->member_id;
  }
};

TEST_F(Groups, FirstMemberLeadsGenerationOneAndGetsItsAssignment) {
  auto j = join(join_req(""));
  ASSERT_TRUE(j->has_value());
  EXPECT_EQ((*j)->error, ErrorCode::kNone);
  EXPECT_EQ((*j)->generation_id, 1);
  EXPECT_EQ((*j)->leader, (*j)->member_id);
  EXPECT_EQ((*j)->protocol_name, "range");
  ASSERT_EQ((*j)->members.size(), 1u);
  auto s = sync((*j)->member_id, 1, {{(*j)->member_id, Bytes{7, 7}}});
  ASSERT_TRUE(s->has_value());
  EXPECT_EQ((*s)->assignment, (Bytes{7, 7}));
  EXPECT_EQ(gc_->describe("g").state, "Stable");
}

TEST_F(Groups, NewMemberTriggersARebalanceThatCompletesWhenEveryoneRejoined) {
  std::string m1 = stable_single_member();
  auto j2 = join(join_req(""));
  EXPECT_FALSE(j2->has_value());  // parked until m1 rejoins
  EXPECT_EQ(heartbeat(m1, 1), ErrorCode::kRebalanceInProgress);
  auto j1 = join(join_req(m1));
  ASSERT_TRUE(j1->has_value());
  ASSERT_TRUE(j2->has_value());
  EXPECT_EQ((*j1)->generation_id, 2);
  EXPECT_EQ((*j2)->generation_id, 2);
  EXPECT_EQ((*j1)->leader, m1);  // the leader is kept
  EXPECT_EQ((*j1)->members.size(), 2u);
  EXPECT_TRUE((*j2)->members.empty());
  // The follower's SyncGroup waits for the leader's.
  auto s2 = sync((*j2)->member_id, 2);
  EXPECT_FALSE(s2->has_value());
  auto s1 = sync(m1, 2, {{m1, Bytes{1}}, {(*j2)->member_id, Bytes{2}}});
  ASSERT_TRUE(s1->has_value());
  ASSERT_TRUE(s2->has_value());
  EXPECT_EQ((*s2)->assignment, Bytes{2});
  EXPECT_EQ(heartbeat(m1, 2), ErrorCode::kNone);
}

TEST_F(Groups, MemberThatDoesNotRejoinWithinTheRebalanceTimeoutIsDropped) {
  auto j = join(join_req("", {"range"}, 10000, 300));
  std::string m1 = (*j)->member_id;
  sync(m1, 1, {{m1, Bytes{}}});
  auto j2 = join(join_req("", {"range"}, 10000, 300));
  EXPECT_FALSE(j2->has_value());
  tick_after(100ms);
  EXPECT_FALSE(j2->has_value());
  tick_after(300ms);
  ASSERT_TRUE(j2->has_value());
  EXPECT_EQ((*j2)->generation_id, 2);
  EXPECT_EQ((*j2)->leader, (*j2)->member_id);
  EXPECT_EQ(gc_->describe("g").members.size(), 1u);
  EXPECT_EQ(heartbeat(m1, 2), ErrorCode::kUnknownMemberId);
}

TEST_F(Groups, ExpiredSessionRemovesTheMemberAndRebalancesTheRest) {
  auto j1 = join(join_req("", {"range"}, 600));
  std::string m1 = (*j1)->member_id;
  sync(m1, 1, {{m1, Bytes{}}});
  auto j2 = join(join_req("", {"range"}, 600));
  join(join_req(m1, {"range"}, 600));
  ASSERT_TRUE(j2->has_value());
  std::string m2 = (*j2)->member_id;
  sync(m2, 2);
  sync(m1, 2, {});
  EXPECT_EQ(gc_->describe("g").state, "Stable");
  // m1 keeps heartbeating, m2 goes silent.
  std::vector<ErrorCode> m1_heartbeats;
  for (int i = 0; i < 5; ++i) {
    tick_after(200ms);
    m1_heartbeats.push_back(heartbeat(m1, 2));
  }
  EXPECT_EQ(m1_heartbeats.front(), ErrorCode::kNone);
  EXPECT_EQ(m1_heartbeats.back(), ErrorCode::kRebalanceInProgress);
  EXPECT_EQ(heartbeat(m2, 2), ErrorCode::kUnknownMemberId);
  auto again = join(join_req(m1, {"range"}, 600));
  ASSERT_TRUE(again->has_value());
  EXPECT_EQ((*again)->generation_id, 3);
  EXPECT_EQ((*again)->members.size(), 1u);
}

TEST_F(Groups, ProtocolIsOneEveryMemberSupportsAndStrangersAreRefused) {
  auto j1 = join(join_req("", {"roundrobin", "range"}));
  std::string m1 = (*j1)->member_id;
  EXPECT_EQ((*j1)->protocol_name, "roundrobin");
  sync(m1, 1, {});
  auto j2 = join(join_req("", {"range"}));
  join(join_req(m1, {"roundrobin", "range"}));
  ASSERT_TRUE(j2->has_value());
  EXPECT_EQ((*j2)->protocol_name, "range");
  auto stranger = join(join_req("", {"sticky"}));
  ASSERT_TRUE(stranger->has_value());
  EXPECT_EQ((*stranger)->error, ErrorCode::kInconsistentGroupProtocol);
}

TEST_F(Groups, ProtocolErrorsForUnknownMembersAndStaleGenerations) {
  std::string m1 = stable_single_member();
  EXPECT_EQ(heartbeat("nobody", 1), ErrorCode::kUnknownMemberId);
  EXPECT_EQ(heartbeat(m1, 0), ErrorCode::kIllegalGeneration);
  auto s = sync(m1, 5);
  ASSERT_TRUE(s->has_value());
  EXPECT_EQ((*s)->error, ErrorCode::kIllegalGeneration);
  auto unknown = join(join_req("ghost"));
  ASSERT_TRUE(unknown->has_value());
  EXPECT_EQ((*unknown)->error, ErrorCode::kUnknownMemberId);
  auto bad_timeout = join(join_req("", {"range"}, 10));
  EXPECT_EQ((*bad_timeout)->error, ErrorCode::kInvalidSessionTimeout);

  OffsetCommitRequest commit;
  commit.group_id = "g";
  commit.generation_id = 7;
  commit.member_id = m1;
  commit.topics.push_back({"t", {{0, 10, -1, std::nullopt}}});
  EXPECT_EQ(gc_->commit(commit), std::vector<ErrorCode>{ErrorCode::kIllegalGeneration});
  commit.member_id = "nobody";
  EXPECT_EQ(gc_->commit(commit), std::vector<ErrorCode>{ErrorCode::kUnknownMemberId});
  commit.member_id = m1;
  commit.generation_id = 1;
  commit.topics.push_back({"missing", {{0, 1, -1, std::nullopt}}});
  EXPECT_EQ(gc_->commit(commit), (std::vector<ErrorCode>{ErrorCode::kNone, ErrorCode::kUnknownTopicOrPartition}));
  std::vector<ErrorCode> left = gc_->leave({"g", {{m1, std::nullopt}, {"nobody", std::nullopt}}});
  EXPECT_EQ(left, (std::vector<ErrorCode>{ErrorCode::kNone, ErrorCode::kUnknownMemberId}));
  EXPECT_EQ(gc_->describe("g").state, "Empty");
}

TEST_F(Groups, CommitOfTheCurrentGenerationIsAcceptedWhilePreparingARebalanceAndRefusedWhileCompletingIt) {
  // Given m1 alone and stable in generation 1
  std::string m1 = stable_single_member();
  OffsetCommitRequest commit;
  commit.group_id = "g";
  commit.generation_id = 1;
  commit.member_id = m1;
  commit.topics.push_back({"t", {{0, 10, -1, std::nullopt}}});
  OffsetFetchRequest fetch;
  fetch.group_id = "g";
  fetch.topics = std::vector<OffsetFetchRequest::Topic>{{"t", {0}}};
  // When a second member joins, the group prepares a rebalance
  auto j2 = join(join_req(""));
  ASSERT_EQ(gc_->describe("g").state, "PreparingRebalance");
  // Then m1's commit of generation 1 (made as it revokes) is accepted and kept
  EXPECT_EQ(gc_->commit(commit), std::vector<ErrorCode>{ErrorCode::kNone});
  EXPECT_EQ(gc_->fetch_offsets(fetch).at(0).committed.offset, 10);
  // When m1 rejoins, generation 2 waits for the leader's assignment
  auto j1 = join(join_req(m1));
  ASSERT_TRUE(j1->has_value());
  ASSERT_TRUE(j2->has_value());
  ASSERT_EQ(gc_->describe("g").state, "CompletingRebalance");
  // Then a commit of generation 2 is refused as Kafka does, and nothing is stored
  commit.generation_id = 2;
  commit.topics = {{"t", {{0, 20, -1, std::nullopt}}}};
  EXPECT_EQ(gc_->commit(commit), std::vector<ErrorCode>{ErrorCode::kRebalanceInProgress});
  EXPECT_EQ(gc_->fetch_offsets(fetch).at(0).committed.offset, 10);
  // And once the generation is stable it is accepted
  sync(m1, 2, {{m1, Bytes{1}}, {(*j2)->member_id, Bytes{2}}});
  ASSERT_EQ(gc_->describe("g").state, "Stable");
  EXPECT_EQ(gc_->commit(commit), std::vector<ErrorCode>{ErrorCode::kNone});
  EXPECT_EQ(gc_->fetch_offsets(fetch).at(0).committed.offset, 20);
}

TEST_F(Groups, FirstJoinOfAnEmptyGroupWaitsTheInitialRebalanceDelay) {
  config_.initial_rebalance_delay = 300ms;
  gc_ = make();
  // Given an empty group, when a member joins
  auto j1 = join(join_req(""));
  // Then the round waits for more members although everyone has joined
  tick_after(150ms);
  EXPECT_FALSE(j1->has_value());
  EXPECT_EQ(gc_->describe("g").state, "PreparingRebalance");
  // And completes once the delay is over
  tick_after(200ms);
  ASSERT_TRUE(j1->has_value());
  EXPECT_EQ((*j1)->generation_id, 1);
  EXPECT_EQ((*j1)->members.size(), 1u);
  // And a rebalance of a group that is not empty does not wait
  std::string m1 = (*j1)->member_id;
  sync(m1, 1, {{m1, Bytes{}}});
  auto j2 = join(join_req(""));
  auto again = join(join_req(m1));
  ASSERT_TRUE(again->has_value());
  ASSERT_TRUE(j2->has_value());
  EXPECT_EQ((*j2)->generation_id, 2);
}

TEST_F(Groups, MembersJoiningDuringTheInitialDelayExtendItUpToTheRebalanceTimeout) {
  config_.initial_rebalance_delay = 400ms;
  gc_ = make();
  // Given a first member with a rebalance timeout of 900 ms
  const auto start = Clock::now();
  auto j1 = join(join_req("", {"range"}, 10000, 900));
  // When a second member joins during the first wait (0-400 ms) and a third
  // during the second (400-800 ms)
  tick_after(80ms);
  auto j2 = join(join_req("", {"range"}, 10000, 900));
  std::shared_ptr<std::optional<Join>> j3;
  while (!j1->has_value() && Clock::now() - start < 2s) {
    tick_after(20ms);
    if (!j3 && Clock::now() - start >= 500ms) j3 = join(join_req("", {"range"}, 10000, 900));
  }
  const auto took = Clock::now() - start;
  // Then one round takes all three, and the third wait (800-1200 ms) is cut
  // at the rebalance timeout
  ASSERT_TRUE(j1->has_value());
  ASSERT_TRUE(j2->has_value());
  ASSERT_TRUE(j3 && j3->has_value());
  EXPECT_EQ((*j1)->generation_id, 1);
  EXPECT_EQ((*j1)->members.size(), 3u);
  EXPECT_GE(took, 900ms);
  EXPECT_LT(took, 1100ms);
}

TEST_F(Groups, CommittedOffsetsSurviveAReopen) {
  OffsetCommitRequest commit;
  commit.group_id = "g";
  commit.topics.push_back({"t", {{0, 42, 3, std::string("meta")}, {1, 7, -1, std::nullopt}}});
  ASSERT_EQ(gc_->commit(commit), (std::vector<ErrorCode>{ErrorCode::kNone, ErrorCode::kNone}));
  gc_.reset();
  store_.reset();
  store_ = std::make_unique<MetadataStore>(dir_.path() / "meta");
  gc_ = make();
  OffsetFetchRequest fetch;
  fetch.group_id = "g";
  fetch.topics = std::vector<OffsetFetchRequest::Topic>{{"t", {0, 1, 2}}};
  auto got = gc_->fetch_offsets(fetch);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].committed.offset, 42);
  EXPECT_EQ(got[0].committed.leader_epoch, 3);
  EXPECT_EQ(got[0].committed.metadata, "meta");
  EXPECT_EQ(got[1].committed.offset, 7);
  EXPECT_EQ(got[2].committed.offset, -1);
  auto groups = gc_->list_groups();
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0].first, "g");
}

TEST_F(Groups, DescribeReportsEachMembersSubscriptionAndAssignmentWhenStableAndNoneWhileRebalancing) {
  // Given two members with different subscriptions, one of them static
  auto a = join_req("");
  a.protocols = {{"range", Bytes{0xa}}};
  a.group_instance_id = "inst-a";
  auto ja = join(a);
  std::string ma = (*ja)->member_id;
  sync(ma, 1, {{ma, Bytes{}}}, "inst-a");
  auto b = join_req("");
  b.protocols = {{"range", Bytes{0xb, 0xb}}};
  auto jb = join(b);
  a.member_id = ma;
  join(a);
  ASSERT_TRUE(jb->has_value());
  std::string mb = (*jb)->member_id;
  // When the generation is completing (assignments not yet given)
  auto during = gc_->describe("g");
  EXPECT_EQ(during.state, "CompletingRebalance");
  EXPECT_EQ(during.protocol_type, "consumer");
  EXPECT_EQ(during.protocol, "");  // as Kafka: no protocol or member bytes unless Stable
  ASSERT_EQ(during.members.size(), 2u);
  EXPECT_TRUE(during.members[0].metadata.empty());
  auto sb = sync(mb, 2);
  sync(ma, 2, {{ma, Bytes{1, 1}}, {mb, Bytes{2, 2}}}, "inst-a");
  ASSERT_TRUE(sb->has_value());
  // Then the stable group reports each member's own bytes
  auto d = gc_->describe("g");
  EXPECT_EQ(d.error, ErrorCode::kNone);
  EXPECT_EQ(d.state, "Stable");
  EXPECT_EQ(d.protocol_type, "consumer");
  EXPECT_EQ(d.protocol, "range");
  ASSERT_EQ(d.members.size(), 2u);
  EXPECT_EQ(d.members[0].member_id, ma);
  EXPECT_EQ(d.members[0].group_instance_id, "inst-a");
  EXPECT_EQ(d.members[0].client_id, "client");
  EXPECT_EQ(d.members[0].client_host, "host");
  EXPECT_EQ(d.members[0].metadata, Bytes{0xa});
  EXPECT_EQ(d.members[0].assignment, (Bytes{1, 1}));
  EXPECT_EQ(d.members[1].member_id, mb);
  EXPECT_EQ(d.members[1].group_instance_id, std::nullopt);
  EXPECT_EQ(d.members[1].metadata, (Bytes{0xb, 0xb}));
  EXPECT_EQ(d.members[1].assignment, (Bytes{2, 2}));
  // And while a rebalance is prepared the members carry no bytes again
  join(join_req(""));
  auto preparing = gc_->describe("g");
  EXPECT_EQ(preparing.state, "PreparingRebalance");
  EXPECT_EQ(preparing.protocol, "");
  for (const auto& m : preparing.members) EXPECT_TRUE(m.assignment.empty() && m.metadata.empty()) << m.member_id;
  // And a group nobody knows is Dead, without an error (as Kafka)
  auto unknown = gc_->describe("nobody");
  EXPECT_EQ(unknown.error, ErrorCode::kNone);
  EXPECT_EQ(unknown.state, "Dead");
  EXPECT_TRUE(unknown.members.empty());
}

TEST_F(Groups, DeleteGroupsRemovesAnEmptyGroupsOffsetsForGoodAndRefusesLiveUnknownAndEmptyIds) {
  // Given an empty group "g" with offsets (its member left), a group "other"
  // with offsets, and a live group "live"
  std::string m = stable_single_member();
  ASSERT_EQ(gc_->commit(commit_req(m, 1, 42)), std::vector<ErrorCode>{ErrorCode::kNone});
  ASSERT_EQ(gc_->leave({"g", {{m, std::nullopt}}}), std::vector<ErrorCode>{ErrorCode::kNone});
  OffsetCommitRequest other = commit_req("", -1, 7);
  other.group_id = "other";
  ASSERT_EQ(gc_->commit(other), std::vector<ErrorCode>{ErrorCode::kNone});
  auto live = join_req("");
  live.group_id = "live";
  join(live);
  // When they are deleted along with an unknown and an empty id
  auto errors = gc_->delete_groups({"g", "live", "unknown", ""});
  // Then only "g" is deleted
  EXPECT_EQ(errors, (std::vector<ErrorCode>{ErrorCode::kNone, ErrorCode::kNonEmptyGroup, ErrorCode::kGroupIdNotFound,
                                            ErrorCode::kInvalidGroupId}));
  EXPECT_EQ(committed("g"), -1);
  EXPECT_EQ(gc_->describe("g").state, "Dead");
  EXPECT_EQ(gc_->describe("live").state, "CompletingRebalance");
  // And a second deletion finds nothing
  EXPECT_EQ(gc_->delete_groups({"g"}), std::vector<ErrorCode>{ErrorCode::kGroupIdNotFound});
  // And after a reopen g's offsets stay gone while other's are kept, and a
  // group that only has offsets is deleted too
  reopen();
  EXPECT_EQ(committed("g"), -1);
  EXPECT_EQ(committed("other"), 7);
  for (const auto& [id, type] : gc_->list_groups()) EXPECT_NE(id, "g");
  EXPECT_EQ(gc_->delete_groups({"other"}), std::vector<ErrorCode>{ErrorCode::kNone});
  reopen();
  EXPECT_EQ(committed("other"), -1);
  EXPECT_TRUE(gc_->list_groups().empty());
}

TEST_F(Groups, OffsetsOfAGroupIdWithANulSurviveAReopenAndAreNotDeletedWithItsPrefix) {
  const std::string odd("a\0b", 3);
  for (const std::string& id : {std::string("a"), odd}) {
    OffsetCommitRequest c = commit_req("", -1, id == "a" ? 1 : 2);
    c.group_id = id;
    ASSERT_EQ(gc_->commit(c), std::vector<ErrorCode>{ErrorCode::kNone});
  }
  reopen();  // used to throw from std::stoi while loading "a\0b"'s key
  EXPECT_EQ(committed("a"), 1);
  EXPECT_EQ(committed(odd), 2);
  EXPECT_EQ(gc_->delete_groups({"a"}), std::vector<ErrorCode>{ErrorCode::kNone});
  reopen();
  EXPECT_EQ(committed("a"), -1);
  EXPECT_EQ(committed(odd), 2);
}

TEST_F(Groups, StaticMemberRejoiningWithAnUnknownIdReplacesItsOldIdWithoutARebalanceAndFencesIt) {
  // Given a stable generation 2 of static "s1" (the leader) and a dynamic member
  auto [old_id, other] = stable_static_and_dynamic();
  // When s1 restarts and joins with its instance id and no member id
  auto j = join(static_join("", "s1"));
  // Then it gets a new member id at once, in the same generation, and the
  // leader named is the old id, so it does not assign
  ASSERT_TRUE(j->has_value());
  EXPECT_EQ((*j)->error, ErrorCode::kNone);
  EXPECT_NE((*j)->member_id, old_id);
  EXPECT_EQ((*j)->member_id.rfind("s1-", 0), 0u) << (*j)->member_id;
  EXPECT_EQ((*j)->generation_id, 2);
  EXPECT_EQ((*j)->protocol_name, "range");
  EXPECT_EQ((*j)->leader, old_id);
  EXPECT_TRUE((*j)->members.empty());
  const std::string new_id = (*j)->member_id;
  // And the group did not rebalance: the other member heartbeats fine
  EXPECT_EQ(gc_->describe("g").state, "Stable");
  EXPECT_EQ(heartbeat(other, 2), ErrorCode::kNone);
  // And its SyncGroup returns the assignment the old id had
  auto s = sync(new_id, 2, {}, "s1");
  ASSERT_TRUE(s->has_value());
  EXPECT_EQ((*s)->error, ErrorCode::kNone);
  EXPECT_EQ((*s)->assignment, Bytes{1});
  EXPECT_EQ(heartbeat(new_id, 2, "s1"), ErrorCode::kNone);
  // And the old id is fenced wherever it names the instance
  EXPECT_EQ(heartbeat(old_id, 2, "s1"), ErrorCode::kFencedInstanceId);
  auto fenced_sync = sync(old_id, 2, {}, "s1");
  ASSERT_TRUE(fenced_sync->has_value());
  EXPECT_EQ((*fenced_sync)->error, ErrorCode::kFencedInstanceId);
  EXPECT_EQ(gc_->commit(commit_req(old_id, 2, 5, "s1")), std::vector<ErrorCode>{ErrorCode::kFencedInstanceId});
  auto fenced_join = join(static_join(old_id, "s1"));
  EXPECT_EQ((*fenced_join)->error, ErrorCode::kFencedInstanceId);
  // and is unknown where it does not
  EXPECT_EQ(heartbeat(old_id, 2), ErrorCode::kUnknownMemberId);
  EXPECT_EQ(gc_->commit(commit_req(new_id, 2, 5, "s1")), std::vector<ErrorCode>{ErrorCode::kNone});
  // And the new id leads the next rebalance
  auto d = gc_->describe("g");
  ASSERT_EQ(d.members.size(), 2u);
  EXPECT_EQ(d.members[0].member_id, new_id);
  EXPECT_EQ(d.members[0].assignment, Bytes{1});
  auto rejoin_static = join(static_join(new_id, "s1"));  // the leader rejoining starts a round
  auto rejoin_other = join(join_req(other));
  ASSERT_TRUE(rejoin_static->has_value());
  EXPECT_EQ((*rejoin_static)->generation_id, 3);
  EXPECT_EQ((*rejoin_static)->leader, new_id);
  EXPECT_EQ((*rejoin_static)->members.size(), 2u);
  EXPECT_TRUE(rejoin_other->has_value());
}

TEST_F(Groups, StaticMemberReplacedWhileARebalanceIsPreparedFencesTheParkedJoinAndTakesItsPlace) {
  auto [old_id, other] = stable_static_and_dynamic();
  // Given a rebalance in which s1's old id waits in JoinGroup
  auto newcomer = join(join_req(""));
  auto parked = join(static_join(old_id, "s1"));
  EXPECT_FALSE(parked->has_value());
  // When s1 restarts, the parked join of the old id is fenced
  auto j = join(static_join("", "s1"));
  ASSERT_TRUE(parked->has_value());
  EXPECT_EQ((*parked)->error, ErrorCode::kFencedInstanceId);
  EXPECT_FALSE(j->has_value());
  // And the round completes with the new id once the others rejoin
  auto o = join(join_req(other));
  ASSERT_TRUE(j->has_value());
  ASSERT_TRUE(o->has_value());
  ASSERT_TRUE(newcomer->has_value());
  EXPECT_EQ((*j)->generation_id, 3);
  EXPECT_EQ((*j)->leader, (*j)->member_id);
  EXPECT_EQ((*j)->members.size(), 3u);
}

TEST_F(Groups, StaticMemberReplacedWhileCompletingARebalanceStartsAnother) {
  auto js = join(static_join("", "s1"));
  std::string s = (*js)->member_id;
  sync(s, 1, {{s, Bytes{}}}, "s1");
  auto jd = join(join_req(""));
  join(static_join(s, "s1"));
  ASSERT_TRUE(jd->has_value());
  ASSERT_EQ(gc_->describe("g").state, "CompletingRebalance");
  auto waiting = sync((*jd)->member_id, 2);  // the follower waits for the leader
  EXPECT_FALSE(waiting->has_value());
  // When the leader restarts before it synced
  auto j = join(static_join("", "s1"));
  // Then the generation is abandoned: the follower must rejoin
  ASSERT_TRUE(waiting->has_value());
  EXPECT_EQ((*waiting)->error, ErrorCode::kRebalanceInProgress);
  EXPECT_EQ(gc_->describe("g").state, "PreparingRebalance");
  auto jd2 = join(join_req((*jd)->member_id));
  ASSERT_TRUE(j->has_value());
  ASSERT_TRUE(jd2->has_value());
  EXPECT_EQ((*j)->generation_id, 3);
}

TEST_F(Groups, StaticMemberThatStopsHeartbeatingIsRemovedBySessionTimeout) {
  auto r = static_join("", "s1");
  r.session_timeout_ms = 600;
  auto js = join(r);
  ASSERT_TRUE(js->has_value());
  std::string s = (*js)->member_id;
  sync(s, 1, {{s, Bytes{}}}, "s1");
  tick_after(300ms);
  EXPECT_EQ(gc_->describe("g").members.size(), 1u);
  tick_after(400ms);
  auto d = gc_->describe("g");
  EXPECT_EQ(d.state, "Empty");
  EXPECT_TRUE(d.members.empty());
  EXPECT_EQ(heartbeat(s, 1, "s1"), ErrorCode::kUnknownMemberId);
  // and a restart is then a new member of a new generation
  auto again = join(static_join("", "s1"));
  ASSERT_TRUE(again->has_value());
  EXPECT_EQ((*again)->leader, (*again)->member_id);
  EXPECT_GT((*again)->generation_id, 1);
}

TEST_F(Groups, LeaveGroupByInstanceIdRemovesTheStaticMemberAtOnce) {
  auto [s, other] = stable_static_and_dynamic();
  LeaveGroupRequest leave{"g", {{"", std::string("nobody")}, {"wrong-id", std::string("s1")}, {"", std::string("s1")}}};
  EXPECT_EQ(gc_->leave(leave),
            (std::vector<ErrorCode>{ErrorCode::kUnknownMemberId, ErrorCode::kFencedInstanceId, ErrorCode::kNone}));
  auto d = gc_->describe("g");
  EXPECT_EQ(d.state, "PreparingRebalance");
  ASSERT_EQ(d.members.size(), 1u);
  EXPECT_EQ(d.members[0].member_id, other);
  EXPECT_EQ(heartbeat(s, 2, "s1"), ErrorCode::kUnknownMemberId);
}

}  // namespace
}  // namespace starling::broker
