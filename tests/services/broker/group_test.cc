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
                                            std::vector<SyncGroupRequest::Assignment> assignments = {}) {
    SyncGroupRequest req;
    req.group_id = "g";
    req.generation_id = generation;
    req.member_id = member;
    req.assignments = std::move(assignments);
    auto out = std::make_shared<std::optional<Sync>>();
    asio::co_spawn(
        io_, [this, out, req]() -> asio::awaitable<void> { *out = co_await gc_->sync(req); }, asio::detached);
    run();
    return out;
  }
  ErrorCode heartbeat(const std::string& member, int32_t generation) {
    return gc_->heartbeat({"g", generation, member, std::nullopt});
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

}  // namespace
}  // namespace starling::broker
