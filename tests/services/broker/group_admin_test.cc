// Byte-level tests of the group admin side against a real starling-broker:
// DescribeGroups with members and assignments, DeleteGroups (durable across
// kill -9), static membership (KIP-345) and the decoders' array caps.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "services/broker/messages.h"
#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/raw_client.h"
#include "tests/services/broker/request_bodies.h"

namespace starling::broker::testing {
namespace {

constexpr int16_t kFencedInstanceId = 82;
constexpr int16_t kNonEmptyGroup = 68;
constexpr int16_t kGroupIdNotFound = 69;
constexpr int16_t kInvalidGroupId = 24;
constexpr int16_t kUnknownMemberId = 25;

struct Joined {
  int16_t error = -1;
  int32_t generation = -1;
  std::string protocol;
  std::string leader;
  std::string member;
  std::vector<std::string> members;  // ids, only for the leader
};

/// Parses a JoinGroup v5 response body.
Joined parse_join_v5(const std::optional<Bytes>& body) {
  Joined j;
  if (!body) return j;
  Reader r(*body);
  r.i32();  // throttle
  j.error = r.i16();
  j.generation = r.i32();
  j.protocol = r.string();
  j.leader = r.string();
  j.member = r.string();
  int32_t n = r.array_len();
  for (int32_t i = 0; i < n && r.ok(); ++i) {
    j.members.push_back(r.string());
    r.nullable_string();
    r.bytes();
  }
  EXPECT_TRUE(r.ok() && r.remaining() == 0) << "JoinGroup v5 response does not parse";
  return j;
}

/// Error and assignment of a SyncGroup v1-3 response body.
std::pair<int16_t, Bytes> parse_sync(const std::optional<Bytes>& body) {
  if (!body) return {-1, {}};
  Reader r(*body);
  r.i32();
  int16_t e = r.i16();
  Bytes a = r.bytes();
  EXPECT_TRUE(r.ok() && r.remaining() == 0);
  return {e, a};
}

/// Error of a Heartbeat v1-3 response body.
int16_t parse_heartbeat(const std::optional<Bytes>& body) {
  if (!body) return -1;
  Reader r(*body);
  r.i32();
  return r.i16();
}

/// The error of the one partition of an OffsetCommit v3+ response.
int16_t parse_commit(const std::optional<Bytes>& body) {
  if (!body) return -1;
  Reader r(*body);
  r.i32();
  r.array_len();
  r.string();
  r.array_len();
  r.i32();
  return r.i16();
}

/// (group id, error) of a DeleteGroups v0-1 response.
std::vector<std::pair<std::string, int16_t>> parse_delete(const std::optional<Bytes>& body) {
  std::vector<std::pair<std::string, int16_t>> out;
  if (!body) return out;
  Reader r(*body);
  EXPECT_EQ(r.i32(), 0);  // throttle
  int32_t n = r.array_len();
  for (int32_t i = 0; i < n && r.ok(); ++i) {
    std::string id = r.string();
    out.emplace_back(id, r.i16());
  }
  EXPECT_TRUE(r.ok() && r.remaining() == 0) << "DeleteGroups response does not parse";
  return out;
}

struct DescribedMember {
  std::string id;
  std::optional<std::string> instance;
  std::string client_id;
  std::string host;
  Bytes metadata;
  Bytes assignment;
};
struct Described {
  int16_t error = -1;
  std::string id;
  std::string state;
  std::string protocol_type;
  std::string protocol;
  std::vector<DescribedMember> members;
};

std::vector<Described> parse_describe(int16_t v, const std::optional<Bytes>& body) {
  std::vector<Described> out;
  if (!body) return out;
  Reader r(*body);
  if (v >= 1) r.i32();
  int32_t n = r.array_len();
  for (int32_t i = 0; i < n && r.ok(); ++i) {
    Described d;
    d.error = r.i16();
    d.id = r.string();
    d.state = r.string();
    d.protocol_type = r.string();
    d.protocol = r.string();
    int32_t m = r.array_len();
    for (int32_t k = 0; k < m && r.ok(); ++k) {
      DescribedMember dm;
      dm.id = r.string();
      if (v >= 4) dm.instance = r.nullable_string();
      dm.client_id = r.string();
      dm.host = r.string();
      dm.metadata = r.bytes();
      dm.assignment = r.bytes();
      d.members.push_back(std::move(dm));
    }
    if (v >= 3) r.i32();  // authorized operations
    out.push_back(std::move(d));
  }
  EXPECT_TRUE(r.ok() && r.remaining() == 0) << "DescribeGroups v" << v << " response does not parse";
  return out;
}

/// Committed offset of partition 0 of `topic` (OffsetFetch v1).
int64_t committed(RawClient& c, const std::string& group, const std::string& topic) {
  Writer w;
  w.string(group);
  w.array_len(1);
  w.string(topic);
  w.array_len(1);
  w.i32(0);
  auto body = c.call(9, 1, w.take());
  if (!body) return -2;
  Reader r(*body);
  r.array_len();
  r.string();
  r.array_len();
  r.i32();
  return r.i64();
}

std::optional<Bytes> reply(RawClient& c) {
  auto f = c.read_frame();
  if (!f || f->size() < 4) return std::nullopt;
  return Bytes(f->begin() + 4, f->end());
}

class GroupAdmin : public ::testing::Test {
 protected:
  TempDir dir_;
  BrokerProcess broker_{dir_.path(), {"--partitions", "2"}};

  void SetUp() override {
    RawClient c(broker_.port());
    ASSERT_TRUE(c.call(3, 4, metadata_body(4, "ga", true)).has_value());
  }
};

TEST_F(GroupAdmin, DescribeGroupsAtEveryVersionReportsEachMembersSubscriptionAndAssignment) {
  // Given a stable generation of a static member "inst-a" (the leader) and a
  // dynamic one, each with its own subscription bytes and assignment
  RawClient a(broker_.port());
  RawClient b(broker_.port());
  Joined ja = parse_join_v5(a.call(11, 5, join_group_v5_body("dg", "", "inst-a", Bytes{0xa})));
  ASSERT_EQ(ja.error, 0);
  ASSERT_EQ(parse_sync(a.call(14, 3, sync_group_v3_body("dg", ja.generation, ja.member, "inst-a", {}))).first, 0);
  ASSERT_TRUE(b.send_request(11, 5, join_group_v5_body("dg", "", std::nullopt, Bytes{0xb, 0xb})));
  Joined ja2 = parse_join_v5(a.call(11, 5, join_group_v5_body("dg", ja.member, "inst-a", Bytes{0xa})));
  Joined jb = parse_join_v5(reply(b));
  ASSERT_EQ(ja2.error, 0);
  ASSERT_EQ(jb.error, 0);
  ASSERT_EQ(ja2.members.size(), 2u);
  ASSERT_TRUE(b.send_request(14, 3, sync_group_v3_body("dg", jb.generation, jb.member, std::nullopt, {})));
  ASSERT_EQ(parse_sync(a.call(14, 3,
                              sync_group_v3_body("dg", ja2.generation, ja.member, "inst-a",
                                                 {{ja.member, Bytes{1, 1}}, {jb.member, Bytes{2, 2}}})))
                .first,
            0);
  ASSERT_EQ(parse_sync(reply(b)).second, (Bytes{2, 2}));

  // When it is described at every version, with a group nobody knows
  for (int16_t v = 0; v <= 4; ++v) {
    RawClient c(broker_.port());
    auto groups = parse_describe(v, c.call(15, v, groups_body(15, v, {"dg", "nobody"})));
    ASSERT_EQ(groups.size(), 2u) << "v" << v;
    // Then the group reports its state, protocol and every member's fields
    const Described& d = groups[0];
    EXPECT_EQ(d.error, 0);
    EXPECT_EQ(d.id, "dg");
    EXPECT_EQ(d.state, "Stable");
    EXPECT_EQ(d.protocol_type, "consumer");
    EXPECT_EQ(d.protocol, "range");
    ASSERT_EQ(d.members.size(), 2u);
    EXPECT_EQ(d.members[0].id, ja.member);
    EXPECT_EQ(d.members[1].id, jb.member);
    if (v >= 4) {
      EXPECT_EQ(d.members[0].instance, "inst-a");
      EXPECT_EQ(d.members[1].instance, std::nullopt);
    }
    for (const auto& m : d.members) {
      EXPECT_EQ(m.client_id, "raw-test");
      EXPECT_EQ(m.host, "/127.0.0.1");  // as Kafka (InetAddress.toString)
    }
    EXPECT_EQ(d.members[0].metadata, Bytes{0xa});
    EXPECT_EQ(d.members[0].assignment, (Bytes{1, 1}));
    EXPECT_EQ(d.members[1].metadata, (Bytes{0xb, 0xb}));
    EXPECT_EQ(d.members[1].assignment, (Bytes{2, 2}));
    // And the unknown group is Dead without an error, as in Kafka
    EXPECT_EQ(groups[1].error, 0);
    EXPECT_EQ(groups[1].id, "nobody");
    EXPECT_EQ(groups[1].state, "Dead");
    EXPECT_TRUE(groups[1].members.empty());
  }
}

TEST_F(GroupAdmin, DeleteGroupsDeletesAnEmptyGroupsOffsetsAndTheyStayGoneAfterKill9) {
  // Given offsets committed by groups "del" and "keep", and a live group "busy"
  RawClient c(broker_.port());
  for (const char* g : {"del", "keep"}) {
    ASSERT_EQ(parse_commit(c.call(8, 3, offset_commit_body(3, g, -1, "", "ga", 5))), 0);
  }
  ASSERT_EQ(parse_join_v5(c.call(11, 5, join_group_v5_body("busy", "", std::nullopt, Bytes{1}))).error, 0);
  // When DeleteGroups v0 names them with an unknown and an empty id
  auto results = parse_delete(c.call(42, 0, groups_body(42, 0, {"del", "busy", "nope", ""})));
  // Then "del" alone is deleted, each other gets Kafka's error
  std::vector<std::pair<std::string, int16_t>> expected = {
      {"del", 0}, {"busy", kNonEmptyGroup}, {"nope", kGroupIdNotFound}, {"", kInvalidGroupId}};
  EXPECT_EQ(results, expected);
  EXPECT_EQ(committed(c, "del", "ga"), -1);
  EXPECT_EQ(committed(c, "keep", "ga"), 5);
  // And after kill -9 and a restart its offsets do not come back
  broker_.kill9();
  broker_.restart_on_same_port();
  RawClient after(broker_.port());
  EXPECT_EQ(committed(after, "del", "ga"), -1);
  EXPECT_EQ(committed(after, "keep", "ga"), 5);
  auto listed = after.call(16, 0, {});
  ASSERT_TRUE(listed.has_value());
  Reader lr(*listed);
  EXPECT_EQ(lr.i16(), 0);
  std::vector<std::string> ids;
  for (int32_t i = 0, n = lr.array_len(); i < n && lr.ok(); ++i) {
    ids.push_back(lr.string());
    lr.string();
  }
  EXPECT_EQ(ids, std::vector<std::string>{"keep"});
  // And DeleteGroups v1 finds "del" gone and deletes "keep"
  expected = {{"del", kGroupIdNotFound}, {"keep", 0}};
  EXPECT_EQ(parse_delete(after.call(42, 1, groups_body(42, 1, {"del", "keep"}))), expected);
  EXPECT_EQ(committed(after, "keep", "ga"), -1);
}

TEST_F(GroupAdmin, StaticMemberRestartTakesOverWithoutARebalanceAndTheOldIdIsFenced) {
  // Given a static member "i1" alone and stable with assignment {7}
  RawClient c(broker_.port());
  Joined first = parse_join_v5(c.call(11, 5, join_group_v5_body("sg", "", "i1", Bytes{1})));
  ASSERT_EQ(first.error, 0);
  ASSERT_EQ(
      parse_sync(
          c.call(14, 3, sync_group_v3_body("sg", first.generation, first.member, "i1", {{first.member, Bytes{7}}})))
          .first,
      0);
  // When it restarts: JoinGroup v5 with its instance id and no member id
  RawClient restarted(broker_.port());
  Joined again = parse_join_v5(restarted.call(11, 5, join_group_v5_body("sg", "", "i1", Bytes{1})));
  // Then it is answered at once with a new member id in the same generation,
  // naming the old id as leader (so it does not reassign)
  ASSERT_EQ(again.error, 0);
  EXPECT_NE(again.member, first.member);
  EXPECT_EQ(again.generation, first.generation);
  EXPECT_EQ(again.leader, first.member);
  EXPECT_TRUE(again.members.empty());
  // And its SyncGroup v3 gets the assignment it had
  auto synced = parse_sync(restarted.call(14, 3, sync_group_v3_body("sg", again.generation, again.member, "i1", {})));
  EXPECT_EQ(synced.first, 0);
  EXPECT_EQ(synced.second, Bytes{7});
  EXPECT_EQ(parse_heartbeat(restarted.call(12, 3, heartbeat_body(3, "sg", again.generation, again.member, "i1"))), 0);
  EXPECT_EQ(parse_commit(restarted.call(
                8, 7, offset_commit_body(7, "sg", again.generation, again.member, "ga", 3, std::string("i1")))),
            0);
  // And the old id is fenced by Heartbeat v3, SyncGroup v3 and OffsetCommit v7
  EXPECT_EQ(parse_heartbeat(c.call(12, 3, heartbeat_body(3, "sg", first.generation, first.member, "i1"))),
            kFencedInstanceId);
  EXPECT_EQ(parse_sync(c.call(14, 3, sync_group_v3_body("sg", first.generation, first.member, "i1", {}))).first,
            kFencedInstanceId);
  EXPECT_EQ(parse_commit(
                c.call(8, 7, offset_commit_body(7, "sg", first.generation, first.member, "ga", 9, std::string("i1")))),
            kFencedInstanceId);
  EXPECT_EQ(committed(c, "sg", "ga"), 3);
  // and is unknown to a request without the instance id
  EXPECT_EQ(parse_heartbeat(c.call(12, 2, heartbeat_body(2, "sg", first.generation, first.member))), kUnknownMemberId);
  // And DescribeGroups v4 shows the new id with the instance and assignment
  auto d = parse_describe(4, c.call(15, 4, groups_body(15, 4, {"sg"})));
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].state, "Stable");
  ASSERT_EQ(d[0].members.size(), 1u);
  EXPECT_EQ(d[0].members[0].id, again.member);
  EXPECT_EQ(d[0].members[0].instance, "i1");
  EXPECT_EQ(d[0].members[0].assignment, Bytes{7});
  // And LeaveGroup v3 naming the instance alone removes it at once
  auto left = c.call(13, 3, leave_group_v3_body("sg", {{"", std::string("i1")}, {"", std::string("i2")}}));
  ASSERT_TRUE(left.has_value());
  Reader lr(*left);
  lr.i32();
  EXPECT_EQ(lr.i16(), 0);
  ASSERT_EQ(lr.array_len(), 2);
  EXPECT_EQ(lr.string(), "");
  EXPECT_EQ(lr.nullable_string(), "i1");
  EXPECT_EQ(lr.i16(), 0);
  lr.string();
  lr.nullable_string();
  EXPECT_EQ(lr.i16(), kUnknownMemberId);
  d = parse_describe(4, c.call(15, 4, groups_body(15, 4, {"sg"})));
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].state, "Empty");
  EXPECT_TRUE(d[0].members.empty());
}

TEST_F(GroupAdmin, ArraysOverTheirCapCloseTheConnectionAndAtTheCapAreServed) {
  std::vector<std::string> ids;
  ids.reserve(kMaxGroupsPerRequest + 1);
  for (int i = 0; i < kMaxGroupsPerRequest; ++i) ids.push_back("g" + std::to_string(i));
  {
    RawClient c(broker_.port());
    auto d = parse_describe(0, c.call(15, 0, groups_body(15, 0, ids)));
    EXPECT_EQ(d.size(), static_cast<size_t>(kMaxGroupsPerRequest));
    EXPECT_EQ(parse_delete(c.call(42, 0, groups_body(42, 0, ids))).size(), static_cast<size_t>(kMaxGroupsPerRequest));
  }
  ids.push_back("one-more");
  for (int16_t api : {int16_t{15}, int16_t{42}}) {
    RawClient c(broker_.port());
    ASSERT_TRUE(c.send_request(api, 0, groups_body(api, 0, ids)));
    EXPECT_TRUE(c.closed_by_peer()) << "api " << api;
  }
  {
    std::vector<std::pair<std::string, std::optional<std::string>>> members(kMaxMembersPerRequest + 1,
                                                                            {"m", std::nullopt});
    RawClient c(broker_.port());
    ASSERT_TRUE(c.send_request(13, 3, leave_group_v3_body("cap", members)));
    EXPECT_TRUE(c.closed_by_peer()) << "LeaveGroup v3";
  }
  {
    Writer w;  // JoinGroup v0 with one protocol too many
    w.string("cap");
    w.i32(6000);
    w.string("");
    w.string("consumer");
    w.array_len(kMaxProtocolsPerJoin + 1);
    for (int i = 0; i <= kMaxProtocolsPerJoin; ++i) {
      w.string("p" + std::to_string(i));
      w.bytes(Bytes{});
    }
    RawClient c(broker_.port());
    ASSERT_TRUE(c.send_request(11, 0, w.take()));
    EXPECT_TRUE(c.closed_by_peer()) << "JoinGroup";
  }
  ASSERT_TRUE(broker_.alive()) << broker_.log();
}

}  // namespace
}  // namespace starling::broker::testing
