// Interop of the group admin side with librdkafka 2.0.2: its admin API
// describes and deletes groups, and a static member (group.instance.id)
// restarted within its session gets its partitions back without the other
// member of the group seeing a rebalance.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/rdkafka_helpers.h"

namespace starling::broker::testing {
namespace {

using namespace std::chrono_literals;

/// Runs one admin call on `rk` and returns its result event (caller destroys).
template <class Start>
rd_kafka_event_t* admin_call(rd_kafka_t* rk, Start&& start) {
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  start(q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 20000);
  rd_kafka_queue_destroy(q);
  return ev;
}

/// group id → error of one DeleteGroups call.
std::map<std::string, rd_kafka_resp_err_t> delete_groups(rd_kafka_t* rk, const std::vector<std::string>& ids) {
  std::vector<rd_kafka_DeleteGroup_t*> groups;
  groups.reserve(ids.size());
  for (const auto& id : ids) groups.push_back(rd_kafka_DeleteGroup_new(id.c_str()));
  rd_kafka_event_t* ev =
      admin_call(rk, [&](rd_kafka_queue_t* q) { rd_kafka_DeleteGroups(rk, groups.data(), groups.size(), nullptr, q); });
  rd_kafka_DeleteGroup_destroy_array(groups.data(), groups.size());
  std::map<std::string, rd_kafka_resp_err_t> out;
  if (ev == nullptr) return out;
  EXPECT_EQ(rd_kafka_event_error(ev), RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_event_error_string(ev);
  if (const auto* res = rd_kafka_event_DeleteGroups_result(ev)) {
    size_t n = 0;
    const rd_kafka_group_result_t** results = rd_kafka_DeleteGroups_result_groups(res, &n);
    for (size_t i = 0; i < n; ++i) {
      const rd_kafka_error_t* e = rd_kafka_group_result_error(results[i]);
      out[rd_kafka_group_result_name(results[i])] = e ? rd_kafka_error_code(e) : RD_KAFKA_RESP_ERR_NO_ERROR;
    }
  }
  rd_kafka_event_destroy(ev);
  return out;
}

/// The committed offset of `topic` partition 0 for `group`, read by a fresh
/// consumer that does not join.
int64_t committed(const std::string& bootstrap, const std::string& group, const std::string& topic) {
  Consumer c(bootstrap, {{"group.id", group}});
  auto* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), 0);
  int64_t offset = -2;
  if (rd_kafka_committed(c.get(), list, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) offset = list->elems[0].offset;
  rd_kafka_topic_partition_list_destroy(list);
  return offset;
}

TEST(GroupInterop, LibrdkafkaDescribesAGroupWithItsMembersAssignmentAndDeletesItOnceEmpty) {
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--partitions", "3"});
  Producer producer(broker.bootstrap(), {});
  for (int p = 0; p < 3; ++p) producer.produce("gi", "v" + std::to_string(p), p);
  ASSERT_TRUE(producer.flush());
  {
    // Given a member of "described" that consumed and committed
    Consumer member(broker.bootstrap(), {{"group.id", "described"},
                                         {"client.id", "describer-client"},
                                         {"auto.offset.reset", "earliest"},
                                         {"enable.auto.commit", "false"}});
    member.subscribe("gi");
    ASSERT_EQ(member.consume(3, 20s).size(), 3u);
    ASSERT_EQ(member.commit_sync(), RD_KAFKA_RESP_ERR_NO_ERROR);

    // When librdkafka's admin API describes the group
    const char* ids[] = {"described"};
    rd_kafka_event_t* ev = admin_call(producer.get(), [&](rd_kafka_queue_t* q) {
      rd_kafka_DescribeConsumerGroups(producer.get(), ids, 1, nullptr, q);
    });
    ASSERT_NE(ev, nullptr);
    ASSERT_EQ(rd_kafka_event_error(ev), RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_event_error_string(ev);
    const auto* res = rd_kafka_event_DescribeConsumerGroups_result(ev);
    ASSERT_NE(res, nullptr);
    size_t n = 0;
    const rd_kafka_ConsumerGroupDescription_t** groups = rd_kafka_DescribeConsumerGroups_result_groups(res, &n);
    ASSERT_EQ(n, 1u);
    const auto* g = groups[0];
    // Then it sees the state, assignor and the member with its assignment,
    // decoded from the bytes the leader gave it
    EXPECT_EQ(rd_kafka_ConsumerGroupDescription_error(g), nullptr);
    EXPECT_STREQ(rd_kafka_ConsumerGroupDescription_group_id(g), "described");
    EXPECT_EQ(rd_kafka_ConsumerGroupDescription_state(g), RD_KAFKA_CONSUMER_GROUP_STATE_STABLE);
    EXPECT_STREQ(rd_kafka_ConsumerGroupDescription_partition_assignor(g), "range");
    EXPECT_FALSE(rd_kafka_ConsumerGroupDescription_is_simple_consumer_group(g));
    ASSERT_EQ(rd_kafka_ConsumerGroupDescription_member_count(g), 1u);
    const auto* m = rd_kafka_ConsumerGroupDescription_member(g, 0);
    EXPECT_STREQ(rd_kafka_MemberDescription_client_id(m), "describer-client");
    EXPECT_STREQ(rd_kafka_MemberDescription_host(m), "/127.0.0.1");
    EXPECT_EQ(std::string(rd_kafka_MemberDescription_consumer_id(m)).rfind("describer-client-", 0), 0u);
    const auto* parts = rd_kafka_MemberAssignment_partitions(rd_kafka_MemberDescription_assignment(m));
    ASSERT_NE(parts, nullptr);
    std::set<int32_t> assigned;
    for (int i = 0; i < parts->cnt; ++i) {
      EXPECT_STREQ(parts->elems[i].topic, "gi");
      assigned.insert(parts->elems[i].partition);
    }
    EXPECT_EQ(assigned, (std::set<int32_t>{0, 1, 2}));
    rd_kafka_event_destroy(ev);

    // And deleting it while the member is in it is NON_EMPTY_GROUP
    auto busy = delete_groups(producer.get(), {"described"});
    EXPECT_EQ(busy["described"], RD_KAFKA_RESP_ERR_NON_EMPTY_GROUP) << rd_kafka_err2str(busy["described"]);
  }  // the member closes, leaving the group
  EXPECT_EQ(committed(broker.bootstrap(), "described", "gi"), 1);
  // When the empty group is deleted, along with one that never existed
  auto deleted = delete_groups(producer.get(), {"described", "never-was"});
  EXPECT_EQ(deleted["described"], RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(deleted["described"]);
  EXPECT_EQ(deleted["never-was"], RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND);
  // Then its offsets and its listing are gone, also after kill -9
  EXPECT_EQ(committed(broker.bootstrap(), "described", "gi"), RD_KAFKA_OFFSET_INVALID);
  broker.kill9();
  broker.restart_on_same_port();
  EXPECT_EQ(committed(broker.bootstrap(), "described", "gi"), RD_KAFKA_OFFSET_INVALID);
  const rd_kafka_group_list* list = nullptr;
  ASSERT_EQ(rd_kafka_list_groups(producer.get(), nullptr, &list, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  for (int i = 0; i < list->group_cnt; ++i) EXPECT_STRNE(list->groups[i].group, "described");
  rd_kafka_group_list_destroy(list);
}

/// A group member that counts its rebalance callbacks.
class CountingMember {
 public:
  CountingMember(const std::string& bootstrap, const std::string& group, const std::string& topic) {
    rd_kafka_conf_t* conf = make_conf(bootstrap, {{"group.id", group},
                                                  {"auto.offset.reset", "earliest"},
                                                  {"enable.auto.commit", "false"},
                                                  {"session.timeout.ms", "6000"},
                                                  {"heartbeat.interval.ms", "300"},
                                                  {"partition.assignment.strategy", "range"}});
    rd_kafka_conf_set_opaque(conf, this);
    rd_kafka_conf_set_rebalance_cb(
        conf, [](rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts, void* opaque) {
          auto* self = static_cast<CountingMember*>(opaque);
          ++self->rebalances_;
          if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
            self->assigned_.clear();
            for (int i = 0; i < parts->cnt; ++i) self->assigned_.insert(parts->elems[i].partition);
            rd_kafka_assign(rk, parts);
          } else {
            self->assigned_.clear();
            rd_kafka_assign(rk, nullptr);
          }
        });
    char err[512];
    rk_.reset(rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err));
    rd_kafka_poll_set_consumer(rk_.get());
    auto* topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk_.get(), topics);
    rd_kafka_topic_partition_list_destroy(topics);
  }
  ~CountingMember() { rd_kafka_consumer_close(rk_.get()); }
  void poll(int ms) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_.get(), ms);
    if (m == nullptr) return;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) consumed_[m->partition].insert(m->offset);
    rd_kafka_message_destroy(m);
  }
  int rebalances() const { return rebalances_; }
  const std::set<int32_t>& assigned() const { return assigned_; }
  const std::map<int32_t, std::set<int64_t>>& consumed() const { return consumed_; }

 private:
  KafkaPtr rk_;
  int rebalances_ = 0;
  std::set<int32_t> assigned_;
  std::map<int32_t, std::set<int64_t>> consumed_;
};

/// "partition offset" lines of broker_group_consumer, per partition.
std::map<int32_t, std::set<int64_t>> parse_consumed(const std::string& out) {
  std::map<int32_t, std::set<int64_t>> m;
  for (const auto& l : lines(out)) {
    auto sp = l.find(' ');
    if (sp == std::string::npos) continue;
    m[std::stoi(l.substr(0, sp))].insert(std::stoll(l.substr(sp + 1)));
  }
  return m;
}

std::set<int32_t> keys(const std::map<int32_t, std::set<int64_t>>& m) {
  std::set<int32_t> out;
  for (const auto& [k, v] : m) out.insert(k);
  return out;
}

TEST(GroupInterop, LibrdkafkaStaticMemberRestartedWithinItsSessionGetsItsPartitionsBackWithoutRebalancingTheOther) {
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--partitions", "4"});
  auto produce_round = [&] {
    Producer p(broker.bootstrap(), {{"acks", "all"}});
    for (int part = 0; part < 4; ++part) {
      for (int i = 0; i < 5; ++i) p.produce("st", "v", part);
    }
    ASSERT_TRUE(p.flush());
  };
  ASSERT_NO_FATAL_FAILURE(produce_round());
  const std::string member_bin = std::string(STARLING_BIN_DIR) + "/broker_group_consumer";
  const std::vector<std::string> static_args = {member_bin, broker.bootstrap(), "static-g", "st", "static-1", "10000"};

  // Given a dynamic member O and a static member S ("static-1", a process)
  // that split the four partitions and have consumed them
  CountingMember o(broker.bootstrap(), "static-g", "st");
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (o.assigned().size() != 4 && std::chrono::steady_clock::now() < deadline) o.poll(50);
  ASSERT_EQ(o.assigned().size(), 4u);
  std::set<int32_t> s_partitions;
  {
    ChildProcess s(static_args, dir.path() / "static-1.out");
    deadline = std::chrono::steady_clock::now() + 30s;
    for (;;) {
      o.poll(50);
      auto got = parse_consumed(s.output());
      size_t s_records = 0;
      for (const auto& [p, offs] : got) s_records += offs.size();
      if (o.assigned().size() == 2 && s_records == 10) {
        s_partitions = keys(got);
        break;
      }
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "S consumed: " << s.output();
    }
    // When S is closed (a static member sends no LeaveGroup) and started
    // again at once with the same instance id
    s.terminate();
  }
  std::set<int32_t> o_partitions = o.assigned();
  const int rebalances_before = o.rebalances();
  ChildProcess again(static_args, dir.path() / "static-1-again.out");
  for (auto until = std::chrono::steady_clock::now() + 2s; std::chrono::steady_clock::now() < until;) o.poll(50);
  ASSERT_NO_FATAL_FAILURE(produce_round());
  // Then the restarted S consumes the new records of its old partitions,
  // from the offsets it had committed
  std::map<int32_t, std::set<int64_t>> s_again;
  deadline = std::chrono::steady_clock::now() + 30s;
  auto o_new = [&] {
    size_t n = 0;
    for (const auto& [p, offs] : o.consumed())
      n += static_cast<size_t>(std::count_if(offs.begin(), offs.end(), [](int64_t x) { return x >= 5; }));
    return n;
  };
  while (std::chrono::steady_clock::now() < deadline) {
    o.poll(50);
    s_again = parse_consumed(again.output());
    size_t n = 0;
    for (const auto& [p, offs] : s_again) n += offs.size();
    if (n >= 10 && o_new() >= 10) break;
  }
  EXPECT_EQ(keys(s_again), s_partitions) << again.output();
  for (const auto& [p, offs] : s_again) {
    EXPECT_EQ(offs, (std::set<int64_t>{5, 6, 7, 8, 9})) << "partition " << p;
  }
  // And O kept its partitions without a single rebalance callback
  EXPECT_EQ(o_new(), 10u);
  EXPECT_EQ(o.rebalances(), rebalances_before);
  EXPECT_EQ(o.assigned(), o_partitions);
  EXPECT_NE(broker.log().find("static member static-1 rejoined"), std::string::npos) << broker.log();
}

}  // namespace
}  // namespace starling::broker::testing
