// Interop of the admin APIs on data and configs with librdkafka 2.0.2's C
// admin API (rd_kafka_CreatePartitions, rd_kafka_DeleteRecords,
// rd_kafka_DescribeConfigs, rd_kafka_AlterConfigs) and kcat, against a
// starling-broker process.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/rdkafka_helpers.h"

namespace starling::broker::testing {
namespace {

/// Runs an admin request whose result event is `type`, waiting up to 10 s.
/// Destroys the options and queue; the caller owns the returned event.
template <class Start>
rd_kafka_event_t* admin(rd_kafka_t* rk, rd_kafka_admin_op_t op, Start&& start, bool validate_only = false) {
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t* opts = rd_kafka_AdminOptions_new(rk, op);
  char err[256];
  if (validate_only) rd_kafka_AdminOptions_set_validate_only(opts, 1, err, sizeof err);
  start(opts, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 10000);
  rd_kafka_AdminOptions_destroy(opts);
  rd_kafka_queue_destroy(q);
  return ev;
}

struct TopicOutcome {
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
  std::string message;
};

TopicOutcome create_partitions(rd_kafka_t* rk, const std::string& topic, int count, bool validate_only = false,
                               const std::vector<int32_t>& assign_to = {}) {
  char err[256];
  rd_kafka_NewPartitions_t* np = rd_kafka_NewPartitions_new(topic.c_str(), static_cast<size_t>(count), err, sizeof err);
  for (size_t i = 0; i < assign_to.size(); ++i) {
    int32_t id = assign_to[i];
    rd_kafka_NewPartitions_set_replica_assignment(np, static_cast<int32_t>(i), &id, 1, err, sizeof err);
  }
  rd_kafka_event_t* ev = admin(
      rk, RD_KAFKA_ADMIN_OP_CREATEPARTITIONS,
      [&](rd_kafka_AdminOptions_t* opts, rd_kafka_queue_t* q) { rd_kafka_CreatePartitions(rk, &np, 1, opts, q); },
      validate_only);
  rd_kafka_NewPartitions_destroy(np);
  TopicOutcome out;
  if (ev == nullptr) return out;
  size_t n = 0;
  const rd_kafka_topic_result_t** res =
      rd_kafka_CreatePartitions_result_topics(rd_kafka_event_CreatePartitions_result(ev), &n);
  if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    out = {rd_kafka_event_error(ev), rd_kafka_event_error_string(ev)};
  } else if (n == 1) {
    const char* msg = rd_kafka_topic_result_error_string(res[0]);
    out = {rd_kafka_topic_result_error(res[0]), msg != nullptr ? msg : ""};
  }
  rd_kafka_event_destroy(ev);
  return out;
}

struct LowWatermark {
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
  int64_t offset = -1;
};

LowWatermark delete_records(rd_kafka_t* rk, const std::string& topic, int32_t partition, int64_t before) {
  rd_kafka_topic_partition_list_t* offsets = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(offsets, topic.c_str(), partition)->offset = before;
  rd_kafka_DeleteRecords_t* del = rd_kafka_DeleteRecords_new(offsets);
  rd_kafka_topic_partition_list_destroy(offsets);
  rd_kafka_event_t* ev =
      admin(rk, RD_KAFKA_ADMIN_OP_DELETERECORDS,
            [&](rd_kafka_AdminOptions_t* opts, rd_kafka_queue_t* q) { rd_kafka_DeleteRecords(rk, &del, 1, opts, q); });
  rd_kafka_DeleteRecords_destroy(del);
  LowWatermark out;
  if (ev == nullptr) return out;
  if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    out.err = rd_kafka_event_error(ev);
  } else {
    const rd_kafka_topic_partition_list_t* res =
        rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev));
    if (res != nullptr && res->cnt == 1) out = {res->elems[0].err, res->elems[0].offset};
  }
  rd_kafka_event_destroy(ev);
  return out;
}

struct Config {
  std::string value;
  rd_kafka_ConfigSource_t source = RD_KAFKA_CONFIG_SOURCE_UNKNOWN_CONFIG;
  bool read_only = false;
  bool is_default = false;
};

struct Described {
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
  std::map<std::string, Config> configs;
};

Described describe_configs(rd_kafka_t* rk, rd_kafka_ResourceType_t type, const std::string& name) {
  rd_kafka_ConfigResource_t* cr = rd_kafka_ConfigResource_new(type, name.c_str());
  rd_kafka_event_t* ev =
      admin(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS,
            [&](rd_kafka_AdminOptions_t* opts, rd_kafka_queue_t* q) { rd_kafka_DescribeConfigs(rk, &cr, 1, opts, q); });
  rd_kafka_ConfigResource_destroy(cr);
  Described out;
  if (ev == nullptr) return out;
  size_t n = 0;
  const rd_kafka_ConfigResource_t** res =
      rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &n);
  if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    out.err = rd_kafka_event_error(ev);
  } else if (n == 1) {
    out.err = rd_kafka_ConfigResource_error(res[0]);
    size_t cnt = 0;
    const rd_kafka_ConfigEntry_t** entries = rd_kafka_ConfigResource_configs(res[0], &cnt);
    for (size_t i = 0; i < cnt; ++i) {
      const char* v = rd_kafka_ConfigEntry_value(entries[i]);
      out.configs[rd_kafka_ConfigEntry_name(entries[i])] = {
          v != nullptr ? v : "<null>", rd_kafka_ConfigEntry_source(entries[i]),
          rd_kafka_ConfigEntry_is_read_only(entries[i]) != 0, rd_kafka_ConfigEntry_is_default(entries[i]) != 0};
    }
  }
  rd_kafka_event_destroy(ev);
  return out;
}

TopicOutcome alter_configs(rd_kafka_t* rk, const std::string& topic,
                           const std::vector<std::pair<std::string, std::string>>& configs,
                           bool validate_only = false) {
  rd_kafka_ConfigResource_t* cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str());
  for (const auto& [k, v] : configs) rd_kafka_ConfigResource_set_config(cr, k.c_str(), v.c_str());
  rd_kafka_event_t* ev = admin(
      rk, RD_KAFKA_ADMIN_OP_ALTERCONFIGS,
      [&](rd_kafka_AdminOptions_t* opts, rd_kafka_queue_t* q) { rd_kafka_AlterConfigs(rk, &cr, 1, opts, q); },
      validate_only);
  rd_kafka_ConfigResource_destroy(cr);
  TopicOutcome out;
  if (ev == nullptr) return out;
  size_t n = 0;
  const rd_kafka_ConfigResource_t** res =
      rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &n);
  if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    out = {rd_kafka_event_error(ev), rd_kafka_event_error_string(ev)};
  } else if (n == 1) {
    const char* msg = rd_kafka_ConfigResource_error_string(res[0]);
    out = {rd_kafka_ConfigResource_error(res[0]), msg != nullptr ? msg : ""};
  }
  rd_kafka_event_destroy(ev);
  return out;
}

int partition_count(rd_kafka_t* rk, const std::string& topic) {
  const rd_kafka_metadata_t* md = nullptr;
  if (rd_kafka_metadata(rk, 1, nullptr, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) return -1;
  int count = -1;
  for (int i = 0; i < md->topic_cnt; ++i) {
    if (topic == md->topics[i].topic) count = md->topics[i].partition_cnt;
  }
  rd_kafka_metadata_destroy(md);
  return count;
}

void create_topic(Producer& client, const std::string& topic, int partitions) {
  rd_kafka_t* rk = client.get();
  char err[256];
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, err, sizeof err);
  rd_kafka_event_t* ev =
      admin(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS,
            [&](rd_kafka_AdminOptions_t* opts, rd_kafka_queue_t* q) { rd_kafka_CreateTopics(rk, &nt, 1, opts, q); });
  rd_kafka_NewTopic_destroy(nt);
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(rd_kafka_event_error(ev), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_event_destroy(ev);
}

TEST(LibrdkafkaAdmin, CreatePartitionsGrowsATopicThatProducersConsumersAndKcatThenUse) {
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--auto-create", "false"});
  // Metadata refreshed often, so the producer sees the new partitions soon.
  Producer producer(broker.bootstrap(), {{"topic.metadata.refresh.interval.ms", "200"}});
  rd_kafka_t* rk = producer.get();
  create_topic(producer, "grown", 1);

  auto r = create_partitions(rk, "grown", 3, /*validate_only=*/true);
  EXPECT_EQ(r.err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(r.err) << " " << r.message;
  EXPECT_EQ(partition_count(rk, "grown"), 1);
  r = create_partitions(rk, "grown", 3, false, {0, 0});
  EXPECT_EQ(r.err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(r.err) << " " << r.message;
  EXPECT_EQ(partition_count(rk, "grown"), 3);
  r = create_partitions(rk, "grown", 2);
  EXPECT_EQ(r.err, RD_KAFKA_RESP_ERR_INVALID_PARTITIONS) << rd_kafka_err2str(r.err);
  EXPECT_FALSE(r.message.empty());
  r = create_partitions(rk, "grown", 4, false, {1});
  EXPECT_EQ(r.err, RD_KAFKA_RESP_ERR_INVALID_REPLICA_ASSIGNMENT) << rd_kafka_err2str(r.err);
  r = create_partitions(rk, "missing", 4);
  EXPECT_EQ(r.err, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) << rd_kafka_err2str(r.err);

  // The producer's partitioner spreads keyless messages over all three.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  for (int i = 0; i < 300; ++i) producer.produce("grown", "m" + std::to_string(i), i % 3);
  ASSERT_TRUE(producer.flush(10000));
  std::map<int32_t, int> per_partition;
  for (const auto& d : producer.deliveries()) {
    EXPECT_EQ(d.err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(d.err);
    ++per_partition[d.partition];
  }
  EXPECT_EQ(per_partition, (std::map<int32_t, int>{{0, 100}, {1, 100}, {2, 100}}));
  Consumer consumer(broker.bootstrap(), {{"group.id", "g"}, {"enable.partition.eof", "false"}});
  consumer.assign("grown", 3);
  auto got = consumer.consume(300, std::chrono::seconds(15));
  EXPECT_EQ(got.size(), 300u);

  // kcat's listing shows the new count.
  auto listing = run("kcat -b " + broker.bootstrap() + " -L -t grown");
  EXPECT_NE(listing.find("topic \"grown\" with 3 partitions"), std::string::npos) << listing;
}

TEST(LibrdkafkaAdmin, DeleteRecordsMovesTheLowWatermarkThatConsumersThenStartFrom) {
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--auto-create", "false"});
  Producer producer(broker.bootstrap(), {{"linger.ms", "0"}});
  rd_kafka_t* rk = producer.get();
  create_topic(producer, "trimmed", 1);
  for (int i = 0; i < 20; ++i) {
    producer.produce("trimmed", "v" + std::to_string(i), 0);
    ASSERT_TRUE(producer.flush(10000));
  }
  auto low = delete_records(rk, "trimmed", 0, 12);
  EXPECT_EQ(low.err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(low.err);
  EXPECT_EQ(low.offset, 12);
  int64_t lo = -1;
  int64_t hi = -1;
  ASSERT_EQ(rd_kafka_query_watermark_offsets(rk, "trimmed", 0, &lo, &hi, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(lo, 12);
  EXPECT_EQ(hi, 20);
  low = delete_records(rk, "trimmed", 0, 25);
  EXPECT_EQ(low.err, RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) << rd_kafka_err2str(low.err);
  // A consumer from the beginning starts at the new low watermark.
  Consumer consumer(broker.bootstrap(), {{"group.id", "g"}, {"enable.partition.eof", "false"}});
  consumer.assign("trimmed", 1);
  auto got = consumer.consume(8, std::chrono::seconds(10));
  ASSERT_EQ(got.size(), 8u);
  EXPECT_EQ(got.front().offset, 12);
  EXPECT_EQ(got.front().value, "v12");
  // RD_KAFKA_OFFSET_END (-1) deletes up to the high watermark.
  low = delete_records(rk, "trimmed", 0, RD_KAFKA_OFFSET_END);
  EXPECT_EQ(low.err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(low.err);
  EXPECT_EQ(low.offset, 20);
}

TEST(LibrdkafkaAdmin, DescribeAndAlterConfigsOfATopicAndTheBroker) {
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--auto-create", "false", "--retention-bytes", "50000000"});
  Producer client(broker.bootstrap(), {});
  rd_kafka_t* rk = client.get();
  create_topic(client, "cfg", 1);

  auto d = describe_configs(rk, RD_KAFKA_RESOURCE_TOPIC, "cfg");
  ASSERT_EQ(d.err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(d.err);
  EXPECT_EQ(d.configs["retention.bytes"].value, "50000000");
  EXPECT_EQ(d.configs["retention.bytes"].source, RD_KAFKA_CONFIG_SOURCE_STATIC_BROKER_CONFIG);
  EXPECT_EQ(d.configs["retention.ms"].value, "-1");
  EXPECT_EQ(d.configs["retention.ms"].source, RD_KAFKA_CONFIG_SOURCE_DEFAULT_CONFIG);
  EXPECT_TRUE(d.configs["retention.ms"].is_default);
  EXPECT_EQ(d.configs["max.message.bytes"].value, "1048588");
  EXPECT_EQ(d.configs["segment.bytes"].value, std::to_string(64 << 20));
  EXPECT_TRUE(d.configs["cleanup.policy"].read_only);

  auto r = alter_configs(rk, "cfg", {{"retention.ms", "3600000"}, {"max.message.bytes", "20000"}});
  EXPECT_EQ(r.err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(r.err) << " " << r.message;
  d = describe_configs(rk, RD_KAFKA_RESOURCE_TOPIC, "cfg");
  EXPECT_EQ(d.configs["retention.ms"].value, "3600000");
  EXPECT_EQ(d.configs["retention.ms"].source, RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG);
  EXPECT_FALSE(d.configs["retention.ms"].is_default);
  EXPECT_EQ(d.configs["max.message.bytes"].value, "20000");

  r = alter_configs(rk, "cfg", {{"retention.msec", "1"}});
  EXPECT_EQ(r.err, RD_KAFKA_RESP_ERR_INVALID_CONFIG) << rd_kafka_err2str(r.err);
  EXPECT_NE(r.message.find("retention.msec"), std::string::npos) << r.message;
  r = alter_configs(rk, "cfg", {{"segment.bytes", "1000000"}}, /*validate_only=*/true);
  EXPECT_EQ(r.err, RD_KAFKA_RESP_ERR_NO_ERROR) << r.message;
  EXPECT_EQ(describe_configs(rk, RD_KAFKA_RESOURCE_TOPIC, "cfg").configs["segment.bytes"].value,
            std::to_string(64 << 20));
  EXPECT_EQ(describe_configs(rk, RD_KAFKA_RESOURCE_TOPIC, "nope").err, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);

  auto b = describe_configs(rk, RD_KAFKA_RESOURCE_BROKER, "0");
  ASSERT_EQ(b.err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(b.err);
  EXPECT_EQ(b.configs["log.retention.bytes"].value, "50000000");
  EXPECT_EQ(b.configs["message.max.bytes"].value, "1048588");
  EXPECT_EQ(b.configs.count("log.segment.bytes"), 1u);
  EXPECT_EQ(b.configs.count("group.initial.rebalance.delay.ms"), 1u);
}

}  // namespace
}  // namespace starling::broker::testing
