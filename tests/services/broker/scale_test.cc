// 10,000 partitions (1,000 topics of 10): created over the wire, one record
// produced to each, the broker killed with -9 and restarted. The restart time
// is measured and printed; every record must be there after it.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <set>

#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/raw_client.h"
#include "tests/services/broker/rdkafka_helpers.h"

namespace starling::broker::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kTopics = 1000;  // x kPartitionsPerTopic = 10,000 partitions
constexpr int kPartitionsPerTopic = 10;
constexpr size_t kAllPartitions = size_t{kTopics} * kPartitionsPerTopic;

std::string topic_name(int t) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "scale-%04d", t);
  return buf;
}

/// CreateTopics v2 of `count` topics from `first`, kPartitionsPerTopic each.
Bytes create_many(int first, int count) {
  Writer w;
  w.array_len(static_cast<size_t>(count));
  for (int t = first; t < first + count; ++t) {
    w.string(topic_name(t));
    w.i32(kPartitionsPerTopic);
    w.i16(1);
    w.array_len(0);  // assignments
    w.array_len(0);  // configs
  }
  w.i32(60'000);
  w.boolean(false);  // validate_only
  return w.take();
}

/// The error codes of a CreateTopics v2 response body.
std::vector<int16_t> create_errors(const Bytes& body) {
  Reader r(body);
  r.i32();  // throttle
  std::vector<int16_t> errors;
  const int32_t n = r.i32();
  for (int32_t i = 0; i < n; ++i) {
    r.string();
    errors.push_back(r.i16());
    r.nullable_string();  // message (v1+)
  }
  return errors;
}

TEST(Scale, TenThousandPartitionsSurviveKill9AndTheRestartTimeIsMeasured) {
  // Each partition keeps its active segment open, as Kafka does: 10,000
  // descriptors and more. The test asks for the hard limit.
  rlimit lim{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &lim), 0);
  if (lim.rlim_max < 12'000) GTEST_SKIP() << "RLIMIT_NOFILE hard limit " << lim.rlim_max << " < 12,000";
  const rlim_t fds = std::min<rlim_t>(lim.rlim_max, 65'536);
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--auto-create", "false"}, fds);

  const auto t0 = std::chrono::steady_clock::now();
  {
    RawClient c(broker.port());
    for (int first = 0; first < kTopics; first += 100) {
      ASSERT_TRUE(c.send_request(19, 2, create_many(first, 100), first + 1));
      auto frame = c.read_frame(120'000);  // 1,000 partitions' files and directories synced
      ASSERT_TRUE(frame.has_value()) << broker.log();
      ASSERT_GE(frame->size(), 4u);
      const auto errors = create_errors(Bytes(frame->begin() + 4, frame->end()));
      ASSERT_EQ(errors.size(), 100u);
      for (int16_t e : errors) ASSERT_EQ(e, 0);
    }
  }
  const auto created = std::chrono::steady_clock::now();

  // One record per partition, acknowledged by every replica (acks=all).
  {
    Producer producer(broker.bootstrap(), {{"acks", "all"}, {"linger.ms", "20"}, {"enable.idempotence", "true"}});
    for (int t = 0; t < kTopics; ++t) {
      for (int p = 0; p < kPartitionsPerTopic; ++p) {
        producer.produce(topic_name(t), topic_name(t) + "/" + std::to_string(p), p);
      }
    }
    ASSERT_TRUE(producer.flush(120'000));
    size_t ok = 0;
    for (const auto& d : producer.deliveries()) ok += d.err == RD_KAFKA_RESP_ERR_NO_ERROR ? 1 : 0;
    ASSERT_EQ(ok, kAllPartitions);
  }
  const auto produced = std::chrono::steady_clock::now();

  broker.kill9();
  const auto restart_begin = std::chrono::steady_clock::now();
  broker.restart_on_same_port();  // returns once the port file is written: listening
  const auto restarted = std::chrono::steady_clock::now();
  RawClient first(broker.port());
  ASSERT_TRUE(first.call(3, 4, Bytes{0, 0, 0, 0, 0}).has_value());  // Metadata v4 of no topic: serving
  const auto serving = std::chrono::steady_clock::now();

  // Every record is there: one consumer assigned all 10,000 partitions
  // reads each partition's one record, and nothing else.
  Consumer consumer(broker.bootstrap(), {{"group.id", "scale-check"}, {"enable.auto.commit", "false"}});
  auto* list = rd_kafka_topic_partition_list_new(static_cast<int>(kAllPartitions));
  for (int t = 0; t < kTopics; ++t) {
    for (int p = 0; p < kPartitionsPerTopic; ++p) {
      rd_kafka_topic_partition_list_add(list, topic_name(t).c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
  }
  ASSERT_EQ(rd_kafka_assign(consumer.get(), list), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(list);
  auto got = consumer.consume(kAllPartitions, 120s);
  auto extra = consumer.consume(1, 2s);
  const auto read = std::chrono::steady_clock::now();
  std::set<std::string> values;
  for (const auto& r : got) {
    EXPECT_EQ(r.offset, 0);
    values.insert(r.value);
  }
  EXPECT_EQ(values.size(), kAllPartitions);
  EXPECT_EQ(got.size(), values.size());
  EXPECT_TRUE(extra.empty());
  for (int t = 0; t < kTopics; t += 97) {
    for (int p = 0; p < kPartitionsPerTopic; ++p) {
      EXPECT_EQ(values.count(topic_name(t) + "/" + std::to_string(p)), 1u) << topic_name(t) << "-" << p;
    }
  }

  auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  std::printf(
      "10,000 partitions: created in %lld ms, 10,000 records produced in %lld ms; after kill -9 the broker was "
      "listening in %lld ms and serving in %lld ms; every record read back in %lld ms\n",
      static_cast<long long>(ms(created - t0)), static_cast<long long>(ms(produced - created)),
      static_cast<long long>(ms(restarted - restart_begin)), static_cast<long long>(ms(serving - restart_begin)),
      static_cast<long long>(ms(read - serving)));
  RecordProperty("restart_ms", static_cast<int>(ms(serving - restart_begin)));
}

}  // namespace
}  // namespace starling::broker::testing
