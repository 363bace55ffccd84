// Integration tests: the real starling-broker process driven by kcat, as an
// operator would use it, plus a consumer group spread over three processes.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <thread>

#include "services/broker/wire.h"
#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/raw_client.h"
#include "tests/services/broker/rdkafka_helpers.h"

namespace starling::broker::testing {
namespace {

using namespace std::chrono_literals;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

TEST(Kcat, ProducesConsumesListsAndSeeksByTimestamp) {
  TempDir dir;
  BrokerProcess broker(dir.path());
  const std::string b = broker.bootstrap();
  run("printf \"a\\nb\\nc\\n\" | kcat -b " + b + " -P -t kc");
  EXPECT_EQ(lines(run("kcat -b " + b + " -C -t kc -e -q -f \"%o:%s\\n\"")),
            (std::vector<std::string>{"0:a", "1:b", "2:c"}));
  std::this_thread::sleep_for(1100ms);
  int64_t t = now_ms();
  std::this_thread::sleep_for(100ms);
  run("printf \"d\\ne\\n\" | kcat -b " + b + " -P -t kc");
  EXPECT_EQ(lines(run("kcat -b " + b + " -C -t kc -o s@" + std::to_string(t) + " -e -q -f \"%o:%s\\n\"")),
            (std::vector<std::string>{"3:d", "4:e"}));
  EXPECT_EQ(lines(run("kcat -b " + b + " -Q -t kc:0:" + std::to_string(t))),
            (std::vector<std::string>{"kc [0] offset 3"}));
  auto listing = run("kcat -b " + b + " -L");
  EXPECT_NE(listing.find("broker 0 at " + b), std::string::npos) << listing;
  EXPECT_NE(listing.find("topic \"kc\" with 1 partitions"), std::string::npos) << listing;
  // Offsets by -o -2 (from the end) and beginning.
  EXPECT_EQ(lines(run("kcat -b " + b + " -C -t kc -o -2 -e -q -f \"%s\\n\"")), (std::vector<std::string>{"d", "e"}));
}

TEST(Kcat, GroupConsumerCommitsSoASecondRunSeesOnlyNewMessages) {
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--partitions", "2"});
  const std::string b = broker.bootstrap();
  run("seq 1 50 | kcat -b " + b + " -P -t g");
  const std::string consume = "kcat -b " + b + " -G grp -X auto.offset.reset=earliest -e -q -f \"%s\\n\" g";
  EXPECT_EQ(lines(run(consume, 40)).size(), 50u);
  run("seq 51 60 | kcat -b " + b + " -P -t g");
  auto second = lines(run(consume, 40));
  std::set<std::string> got(second.begin(), second.end());
  EXPECT_EQ(got.size(), 10u);
  EXPECT_EQ(got.count("51"), 1u);
  EXPECT_EQ(got.count("1"), 0u);
}

struct GroupState {
  std::string state;
  size_t members = 0;
};

GroupState describe_group(uint16_t port, const std::string& group) {
  RawClient c(port);
  Writer w;
  w.array_len(1);
  w.string(group);
  auto resp = c.call(15, 0, w.take());
  GroupState out;
  if (!resp) return out;
  Reader r(*resp);
  r.array_len();
  r.i16();
  r.string();
  out.state = r.string();
  r.string();
  r.string();
  int32_t n = r.array_len();
  out.members = n > 0 ? static_cast<size_t>(n) : 0;
  return out;
}

// "partition offset" lines from kcat, per partition.
std::map<int, std::set<int64_t>> parse_consumed(const std::string& out) {
  std::map<int, std::set<int64_t>> m;
  for (const auto& l : lines(out)) {
    auto sp = l.find(' ');
    if (sp == std::string::npos) continue;
    m[std::stoi(l.substr(0, sp))].insert(std::stoll(l.substr(sp + 1)));
  }
  return m;
}

void produce_per_partition(const std::string& bootstrap, const std::string& topic, int partitions, int per_partition) {
  Producer p(bootstrap, {{"enable.idempotence", "true"}, {"acks", "all"}});
  for (int part = 0; part < partitions; ++part) {
    for (int i = 0; i < per_partition; ++i) p.produce(topic, "v", part);
  }
  ASSERT_TRUE(p.flush());
}

TEST(ConsumerGroup, ThreeProcessesSplitPartitionsAndSurvivorsTakeOverFromCommittedOffsets) {
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--partitions", "6"});
  const std::string b = broker.bootstrap();
  produce_per_partition(b, "split", 6, 1);  // creates the topic: offset 0 in every partition
  auto start_consumer = [&](int i) {
    return std::make_unique<ChildProcess>(
        std::vector<std::string>{std::string(STARLING_BIN_DIR) + "/broker_group_consumer", b, "splitters", "split"},
        dir.path() / ("consumer-" + std::to_string(i) + ".out"));
  };
  std::vector<std::unique_ptr<ChildProcess>> consumers;
  for (int i = 0; i < 3; ++i) consumers.push_back(start_consumer(i));

  // Given a stable group of three members
  auto deadline = std::chrono::steady_clock::now() + 60s;
  GroupState gs;
  while (std::chrono::steady_clock::now() < deadline) {
    gs = describe_group(broker.port(), "splitters");
    if (gs.state == "Stable" && gs.members == 3) break;
    std::this_thread::sleep_for(200ms);
  }
  ASSERT_EQ(gs.state, "Stable") << broker.log();
  ASSERT_EQ(gs.members, 3u);

  // When 100 messages per partition arrive
  produce_per_partition(b, "split", 6, 100);
  auto all_consumed = [&](int64_t from, int64_t up_to, const std::vector<size_t>& who) {
    std::map<int, std::set<int64_t>> u;
    for (size_t i : who) {
      for (auto& [p, offs] : parse_consumed(consumers[i]->output())) u[p].insert(offs.begin(), offs.end());
    }
    for (int p = 0; p < 6; ++p) {
      for (int64_t o = from; o <= up_to; ++o) {
        if (u[p].count(o) == 0) return false;
      }
    }
    return true;
  };
  deadline = std::chrono::steady_clock::now() + 60s;
  while (!all_consumed(1, 100, {0, 1, 2}) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(all_consumed(1, 100, {0, 1, 2}));

  // Then each process owns two partitions, and no partition is shared
  std::map<int, int> owner;
  for (int i = 0; i < 3; ++i) {
    auto consumed = parse_consumed(consumers[static_cast<size_t>(i)]->output());
    std::set<int> mine;
    for (auto& [p, offs] : consumed) {
      if (offs.upper_bound(0) != offs.end()) mine.insert(p);  // partitions with new messages
    }
    EXPECT_EQ(mine.size(), 2u) << "consumer " << i;
    for (int p : mine) {
      EXPECT_EQ(owner.count(p), 0u) << "partition " << p << " consumed by two members";
      owner[p] = i;
    }
  }
  ASSERT_EQ(owner.size(), 6u);

  // When one member is killed with -9 after its offsets were committed
  std::this_thread::sleep_for(1s);
  consumers[0]->kill9();
  std::set<int> orphaned;
  for (auto& [p, i] : owner) {
    if (i == 0) orphaned.insert(p);
  }
  produce_per_partition(b, "split", 6, 50);

  // Then the survivors take over its partitions from the committed offsets
  deadline = std::chrono::steady_clock::now() + 60s;
  while (!all_consumed(101, 150, {1, 2}) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(200ms);
  }
  // Survivors may have re-read parts of 1..100 only for partitions they did
  // not own; for the orphaned ones they must resume at the committed 101.
  std::map<int, std::set<int64_t>> survivors;
  for (size_t i : {1u, 2u}) {
    for (auto& [p, offs] : parse_consumed(consumers[i]->output())) survivors[p].insert(offs.begin(), offs.end());
  }
  for (int p : orphaned) {
    ASSERT_FALSE(survivors[p].empty()) << "partition " << p << " was not taken over\n" << broker.log();
    EXPECT_EQ(*survivors[p].lower_bound(1), 101) << "partition " << p << " did not resume at its committed offset";
    for (int64_t o = 101; o <= 150; ++o) EXPECT_EQ(survivors[p].count(o), 1u) << p << "/" << o;
  }
  EXPECT_TRUE(all_consumed(101, 150, {1, 2})) << [&] {
    std::string s;
    for (auto& [p, offs] : survivors) {
      s += "p" + std::to_string(p) + ": " + std::to_string(offs.size()) + " offsets, max " +
           std::to_string(*offs.rbegin()) + "\n";
    }
    return s;
  }() << broker.log();
  gs = describe_group(broker.port(), "splitters");
  EXPECT_EQ(gs.members, 2u);
}

}  // namespace
}  // namespace starling::broker::testing
