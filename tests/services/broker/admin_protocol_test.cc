// Integration tests at the byte level for the admin APIs on data and
// configs: CreatePartitions, DeleteRecords, DescribeConfigs, AlterConfigs and
// IncrementalAlterConfigs, each with its versions, errors and a kill -9
// restart proving what it changed is kept.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/raw_client.h"
#include "tests/services/broker/request_bodies.h"
#include "tests/services/broker/stored_log.h"
#include "tests/services/broker/test_batches.h"

namespace starling::broker::testing {
namespace {

constexpr int16_t kNone = 0;
constexpr int16_t kOffsetOutOfRange = 1;
constexpr int16_t kUnknownTopicOrPartition = 3;
constexpr int16_t kMessageTooLarge = 10;
constexpr int16_t kInvalidPartitions = 37;
constexpr int16_t kInvalidReplicaAssignment = 39;
constexpr int16_t kInvalidConfig = 40;
constexpr int16_t kInvalidRequest = 42;

constexpr int16_t kCreatePartitions = 37;
constexpr int16_t kDeleteRecords = 21;
constexpr int16_t kDescribeConfigs = 32;
constexpr int16_t kAlterConfigs = 33;
constexpr int16_t kIncrementalAlterConfigs = 44;

constexpr int8_t kTopic = 2;
constexpr int8_t kBroker = 4;

// Config sources (DescribeConfigs v1+).
constexpr int8_t kDynamicTopicConfig = 1;
constexpr int8_t kStaticBrokerConfig = 4;
constexpr int8_t kDefaultConfig = 5;

struct Outcome {
  int16_t error = -2;
  std::optional<std::string> message;
};

struct DescribedConfig {
  std::string value;
  bool read_only = false;
  bool is_default = false;  // v0
  int8_t source = -1;       // v1+
  std::vector<std::pair<std::string, int8_t>> synonyms;
};

struct DescribedResource {
  int16_t error = -2;
  std::optional<std::string> message;
  std::map<std::string, DescribedConfig> configs;
};

/// Produce v7 of one batch to `partition`: its error code.
Bytes produce_to(const std::string& topic, int32_t partition, const Bytes& records) {
  Writer w;
  w.nullable_string(std::nullopt);
  w.i16(-1);
  w.i32(5000);
  w.array_len(1);
  w.string(topic);
  w.array_len(1);
  w.i32(partition);
  w.bytes(records);
  return w.take();
}

/// Fetch v11 of one partition from `offset`.
Bytes fetch_from(const std::string& topic, int32_t partition, int64_t offset) {
  Writer w;
  w.i32(-1);
  w.i32(0);  // max wait
  w.i32(0);  // min bytes
  w.i32(1 << 20);
  w.i8(0);
  w.i32(0);
  w.i32(-1);
  w.array_len(1);
  w.string(topic);
  w.array_len(1);
  w.i32(partition);
  w.i32(-1);
  w.i64(offset);
  w.i64(-1);
  w.i32(1 << 20);
  w.array_len(0);
  w.string("");
  return w.take();
}

class Admin : public ::testing::Test {
 protected:
  TempDir dir_;
  std::unique_ptr<BrokerProcess> broker_;

  void start(std::vector<std::string> args = {}) {
    broker_ = std::make_unique<BrokerProcess>(dir_.path(), std::move(args));
  }
  void SetUp() override { start(); }

  /// The response body after the correlation id; `timeout_ms` for slow
  /// requests (creating 1000 partition logs takes seconds in the dev build).
  Bytes call(int16_t key, int16_t v, const Bytes& body, int timeout_ms = 5000) {
    RawClient c(broker_->port());
    EXPECT_TRUE(c.send_request(key, v, body, 7));
    auto frame = c.read_frame(timeout_ms);
    EXPECT_TRUE(frame.has_value() && frame->size() >= 4 && load_be32(frame->data()) == 7)
        << "api " << key << " v" << v << " not answered\n"
        << broker_->log();
    if (!frame || frame->size() < 4) return Bytes{};
    return Bytes(frame->begin() + 4, frame->end());
  }

  int16_t create_topic(const std::string& name, int32_t partitions, ConfigValues configs = {}) {
    Bytes resp =
        call(19, 4, create_topics_body(4, {.name = name, .num_partitions = partitions, .configs = std::move(configs)}));
    Reader r(resp);
    r.i32();
    r.array_len();
    r.string();
    return r.i16();
  }

  /// Metadata v4 without auto-creation: the topic's error and partition count.
  std::pair<int16_t, int32_t> partitions(const std::string& topic) {
    Bytes resp = call(3, 4, metadata_body(4, topic, false));
    Reader r(resp);
    r.i32();
    for (int32_t i = 0, n = r.array_len(); i < n; ++i) {
      r.i32();
      r.string();
      r.i32();
      r.nullable_string();
    }
    r.nullable_string();
    r.i32();
    if (r.array_len() != 1) return {-2, -1};
    int16_t err = r.i16();
    r.string();
    r.boolean();
    return {err, r.array_len()};
  }

  Outcome create_partitions(int16_t v, const std::string& topic, int32_t count,
                            const std::optional<std::vector<std::vector<int32_t>>>& assignments = std::nullopt,
                            bool validate_only = false) {
    Bytes resp = call(kCreatePartitions, v, create_partitions_body(topic, count, assignments, validate_only), 60'000);
    Reader r(resp);
    r.i32();  // throttle
    EXPECT_EQ(r.array_len(), 1);
    EXPECT_EQ(r.string(), topic);
    Outcome out;
    out.error = r.i16();
    out.message = r.nullable_string();
    EXPECT_TRUE(r.ok() && r.remaining() == 0);
    return out;
  }

  int16_t produce(const std::string& topic, int32_t partition, const Bytes& batch) {
    Bytes resp = call(0, 7, produce_to(topic, partition, batch));
    Reader r(resp);
    r.array_len();
    r.string();
    r.array_len();
    r.i32();
    return r.i16();
  }

  /// Fetch: error code and the number of record bytes returned.
  std::pair<int16_t, size_t> fetch(const std::string& topic, int32_t partition, int64_t offset) {
    Bytes resp = call(1, 11, fetch_from(topic, partition, offset));
    Reader r(resp);
    r.i32();
    r.i16();
    r.i32();
    r.array_len();
    r.string();
    r.array_len();
    r.i32();
    int16_t err = r.i16();
    r.i64();
    r.i64();
    r.i64();
    r.array_len();
    r.i32();
    auto records = r.nullable_bytes();
    EXPECT_TRUE(r.ok());
    return {err, records ? records->size() : 0};
  }

  int64_t list_offset(const std::string& topic, int64_t ts) {
    Bytes resp = call(2, 5, list_offsets_body(5, topic, ts));
    Reader r(resp);
    r.i32();
    r.array_len();
    r.string();
    r.array_len();
    r.i32();
    EXPECT_EQ(r.i16(), kNone);
    r.i64();
    return r.i64();
  }

  /// DeleteRecords: error code and low watermark.
  std::pair<int16_t, int64_t> delete_records(int16_t v, const std::string& topic, int32_t partition, int64_t offset) {
    Bytes resp = call(kDeleteRecords, v, delete_records_body(topic, partition, offset));
    Reader r(resp);
    r.i32();
    EXPECT_EQ(r.array_len(), 1);
    EXPECT_EQ(r.string(), topic);
    EXPECT_EQ(r.array_len(), 1);
    EXPECT_EQ(r.i32(), partition);
    int64_t low = r.i64();
    int16_t err = r.i16();
    EXPECT_TRUE(r.ok() && r.remaining() == 0);
    return {err, low};
  }

  std::vector<DescribedResource> describe(int16_t v, const std::vector<ConfigResource>& resources) {
    Bytes resp = call(kDescribeConfigs, v, describe_configs_body(v, resources));
    Reader r(resp);
    r.i32();
    std::vector<DescribedResource> out;
    int32_t n = r.array_len();
    EXPECT_EQ(n, static_cast<int32_t>(resources.size()));
    for (int32_t i = 0; i < n && r.ok(); ++i) {
      DescribedResource d;
      d.error = r.i16();
      d.message = r.nullable_string();
      EXPECT_EQ(r.i8(), resources[static_cast<size_t>(i)].type);
      EXPECT_EQ(r.string(), resources[static_cast<size_t>(i)].name);
      for (int32_t k = 0, m = r.array_len(); k < m && r.ok(); ++k) {
        std::string name = r.string();
        DescribedConfig c;
        c.value = r.nullable_string().value_or("<null>");
        c.read_only = r.boolean();
        if (v == 0) {
          c.is_default = r.boolean();
        } else {
          c.source = r.i8();
        }
        EXPECT_FALSE(r.boolean()) << name << " is not sensitive";
        if (v >= 1) {
          for (int32_t s = 0, ns = r.array_len(); s < ns && r.ok(); ++s) {
            std::string sn = r.string();
            r.nullable_string();
            c.synonyms.emplace_back(sn, r.i8());
          }
        }
        if (v >= 3) {
          EXPECT_GT(r.i8(), 0) << name << " has a type";
          r.nullable_string();  // documentation
        }
        d.configs[name] = c;
      }
      out.push_back(std::move(d));
    }
    EXPECT_TRUE(r.ok() && r.remaining() == 0) << "DescribeConfigs v" << v;
    return out;
  }

  /// The topic's configs as DescribeConfigs v1 lists them.
  std::map<std::string, DescribedConfig> topic_configs(const std::string& topic) {
    auto d = describe(1, {{kTopic, topic, std::nullopt}});
    EXPECT_EQ(d.size(), 1u);
    if (d.empty()) return {};
    EXPECT_EQ(d[0].error, kNone) << d[0].message.value_or("");
    return d[0].configs;
  }

  Outcome alter_response(const Bytes& resp, int8_t type, const std::string& name) {
    Reader r(resp);
    r.i32();
    EXPECT_EQ(r.array_len(), 1);
    Outcome out;
    out.error = r.i16();
    out.message = r.nullable_string();
    EXPECT_EQ(r.i8(), type);
    EXPECT_EQ(r.string(), name);
    EXPECT_TRUE(r.ok() && r.remaining() == 0);
    return out;
  }
  Outcome alter(int16_t v, const std::string& topic, const ConfigValues& configs, bool validate_only = false,
                int8_t type = kTopic) {
    return alter_response(call(kAlterConfigs, v, alter_configs_body(type, topic, configs, validate_only)), type, topic);
  }
  Outcome incremental(const std::string& topic, const std::vector<ConfigOperation>& ops, bool validate_only = false) {
    return alter_response(
        call(kIncrementalAlterConfigs, 0, incremental_alter_configs_body(kTopic, topic, ops, validate_only)), kTopic,
        topic);
  }

  size_t segment_files(const std::string& topic, int32_t partition) {
    size_t n = 0;
    for (const auto& e :
         fs::directory_iterator(dir_.path() / "data" / "logs" / (topic + "-" + std::to_string(partition))))
      n += e.path().extension() == ".log" ? 1 : 0;
    return n;
  }
};

// ---- CreatePartitions ----

TEST_F(Admin, CreatePartitionsGrowsATopicThatProduceFetchAndMetadataUseAndKeepsItAfterKill9) {
  ASSERT_EQ(create_topic("grow", 1), kNone);
  // v0: 1 -> 2 placed by the broker; v1: 2 -> 4 with a manual assignment on this node.
  auto r = create_partitions(0, "grow", 2);
  EXPECT_EQ(r.error, kNone) << r.message.value_or("");
  EXPECT_FALSE(r.message.has_value());
  r = create_partitions(1, "grow", 4, std::vector<std::vector<int32_t>>{{0}, {0}});
  EXPECT_EQ(r.error, kNone) << r.message.value_or("");
  EXPECT_EQ(partitions("grow"), std::make_pair(kNone, 4));
  const Bytes batch = make_batch({{"a", "b", "c"}});
  EXPECT_EQ(produce("grow", 3, batch), kNone);
  EXPECT_EQ(fetch("grow", 3, 0), std::make_pair(kNone, batch.size()));
  // Kept after kill -9: the partition count is in the topic's record.
  broker_->kill9();
  broker_->start();
  EXPECT_EQ(partitions("grow"), std::make_pair(kNone, 4));
  EXPECT_EQ(fetch("grow", 3, 0), std::make_pair(kNone, batch.size()));
  EXPECT_EQ(produce("grow", 2, batch), kNone);
}

TEST_F(Admin, CreatePartitionsRefusesWhatItCannotDoAndValidateOnlyChangesNothing) {
  ASSERT_EQ(create_topic("fixed", 2), kNone);
  struct Case {
    const char* why;
    std::string topic;
    int32_t count;
    std::optional<std::vector<std::vector<int32_t>>> assignments;
    int16_t error;
  };
  const std::vector<Case> cases = {
      {"the same count", "fixed", 2, std::nullopt, kInvalidPartitions},
      {"fewer", "fixed", 1, std::nullopt, kInvalidPartitions},
      {"over the 1000 limit", "fixed", 1001, std::nullopt, kInvalidPartitions},
      {"unknown topic", "nope", 3, std::nullopt, kUnknownTopicOrPartition},
      {"another broker", "fixed", 3, std::vector<std::vector<int32_t>>{{1}}, kInvalidReplicaAssignment},
      {"two replicas", "fixed", 3, std::vector<std::vector<int32_t>>{{0, 0}}, kInvalidReplicaAssignment},
      {"no replica", "fixed", 3, std::vector<std::vector<int32_t>>{{}}, kInvalidReplicaAssignment},
      {"too few assignments", "fixed", 4, std::vector<std::vector<int32_t>>{{0}}, kInvalidReplicaAssignment},
      {"too many assignments", "fixed", 3, std::vector<std::vector<int32_t>>{{0}, {0}}, kInvalidReplicaAssignment},
  };
  for (const auto& c : cases) {
    for (int16_t v : {int16_t{0}, int16_t{1}}) {
      auto r = create_partitions(v, c.topic, c.count, c.assignments);
      EXPECT_EQ(r.error, c.error) << c.why << " v" << v << ": " << r.message.value_or("");
      EXPECT_TRUE(r.message.has_value()) << c.why;
    }
  }
  EXPECT_EQ(partitions("fixed"), std::make_pair(kNone, 2));
  // validate_only: answered as a success, nothing created; errors as a real request.
  EXPECT_EQ(create_partitions(1, "fixed", 5, std::nullopt, true).error, kNone);
  EXPECT_EQ(create_partitions(1, "fixed", 1, std::nullopt, true).error, kInvalidPartitions);
  EXPECT_EQ(partitions("fixed"), std::make_pair(kNone, 2));
  // Exactly the limit is taken (checked with validate_only: creating 998
  // logs takes seconds in the dev build, and CreateTopics' test does it).
  EXPECT_EQ(create_partitions(1, "fixed", 1000, std::nullopt, true).error, kNone);
  EXPECT_EQ(create_partitions(1, "fixed", 1001, std::nullopt, true).error, kInvalidPartitions);
  EXPECT_EQ(create_partitions(0, "fixed", 5).error, kNone);
  broker_->kill9();
  broker_->start();
  EXPECT_EQ(partitions("fixed"), std::make_pair(kNone, 5));
}

// ---- DeleteRecords ----

TEST_F(Admin, DeleteRecordsMovesTheLogStartOffsetDeletesWholeSegmentsBelowAndKeepsItAfterKill9) {
  // Given one batch of 10 records per segment (any batch is over 100 bytes)
  ASSERT_EQ(create_topic("trim", 1, {{"segment.bytes", "100"}}), kNone);
  for (int b = 0; b < 3; ++b) {
    ASSERT_EQ(produce("trim", 0, make_batch({std::vector<std::string>(10, "record-" + std::to_string(b))})), kNone);
  }
  ASSERT_EQ(segment_files("trim", 0), 3u);
  for (int16_t v : {int16_t{0}, int16_t{1}}) {
    // When records before 15 are deleted (inside the second segment)
    EXPECT_EQ(delete_records(v, "trim", 0, 15), std::make_pair(kNone, int64_t{15}));
    // Then the log starts there: ListOffsets -2, Fetch below it is out of range
    EXPECT_EQ(list_offset("trim", -2), 15);
    EXPECT_EQ(list_offset("trim", 0), 15) << "by timestamp: the first record not deleted";
    EXPECT_EQ(fetch("trim", 0, 14).first, kOffsetOutOfRange);
    EXPECT_EQ(fetch("trim", 0, 15).first, kNone);
    EXPECT_GT(fetch("trim", 0, 15).second, 0u);
    // And the first segment (0-9), wholly below, is gone; 10-19 stays
    EXPECT_EQ(segment_files("trim", 0), 2u);
  }
  // An offset below the log start changes nothing; past the high watermark is out of range.
  EXPECT_EQ(delete_records(1, "trim", 0, 3), std::make_pair(kNone, int64_t{15}));
  EXPECT_EQ(delete_records(1, "trim", 0, 31).first, kOffsetOutOfRange);
  EXPECT_EQ(delete_records(1, "trim", 0, -2).first, kOffsetOutOfRange);
  EXPECT_EQ(delete_records(1, "trim", 1, 0).first, kUnknownTopicOrPartition);
  EXPECT_EQ(delete_records(1, "nope", 0, 0).first, kUnknownTopicOrPartition);
  EXPECT_EQ(list_offset("trim", -2), 15);

  // After kill -9 the log start offset has not moved back.
  broker_->kill9();
  broker_->start();
  EXPECT_EQ(list_offset("trim", -2), 15);
  EXPECT_EQ(fetch("trim", 0, 10).first, kOffsetOutOfRange);
  // -1 is the high watermark: everything goes; the active segment stays, so
  // the log end does too.
  EXPECT_EQ(delete_records(0, "trim", 0, -1), std::make_pair(kNone, int64_t{30}));
  EXPECT_EQ(segment_files("trim", 0), 1u);
  broker_->kill9();
  broker_->start();
  EXPECT_EQ(list_offset("trim", -2), 30);
  EXPECT_EQ(list_offset("trim", -1), 30);
  EXPECT_EQ(produce("trim", 0, make_batch({{"after"}})), kNone);
  EXPECT_EQ(fetch("trim", 0, 30).first, kNone);
}

// ---- DescribeConfigs ----

TEST_F(Admin, DescribeConfigsListsEveryTopicConfigWithItsSourceInEachVersion) {
  broker_.reset();
  start({"--retention-ms", "3600000"});
  ASSERT_EQ(create_topic("described", 1, {{"max.message.bytes", "5000"}}), kNone);
  for (int16_t v = 0; v <= 3; ++v) {
    auto d = describe(v, {{kTopic, "described", std::nullopt}});
    ASSERT_EQ(d.size(), 1u);
    ASSERT_EQ(d[0].error, kNone) << d[0].message.value_or("");
    auto& c = d[0].configs;
    for (const char* name : {"cleanup.policy", "max.message.bytes", "retention.bytes", "retention.ms", "segment.bytes"})
      EXPECT_EQ(c.count(name), 1u) << name << " v" << v;
    EXPECT_EQ(c["max.message.bytes"].value, "5000");
    EXPECT_EQ(c["retention.ms"].value, "3600000");  // the broker's flag
    EXPECT_EQ(c["retention.bytes"].value, "-1");
    EXPECT_EQ(c["segment.bytes"].value, std::to_string(64 << 20));
    EXPECT_EQ(c["cleanup.policy"].value, "delete");
    EXPECT_TRUE(c["cleanup.policy"].read_only);
    EXPECT_FALSE(c["retention.ms"].read_only);
    if (v == 0) {
      EXPECT_FALSE(c["max.message.bytes"].is_default);
      EXPECT_TRUE(c["retention.bytes"].is_default);
    } else {
      EXPECT_EQ(c["max.message.bytes"].source, kDynamicTopicConfig);
      EXPECT_EQ(c["retention.ms"].source, kStaticBrokerConfig);
      EXPECT_EQ(c["retention.bytes"].source, kDefaultConfig);
      // Synonyms: the topic's own value, then the broker config it overrides.
      EXPECT_EQ(c["max.message.bytes"].synonyms,
                (std::vector<std::pair<std::string, int8_t>>{{"max.message.bytes", kDynamicTopicConfig},
                                                             {"message.max.bytes", kDefaultConfig}}));
      EXPECT_EQ(c["retention.ms"].synonyms,
                (std::vector<std::pair<std::string, int8_t>>{{"log.retention.ms", kStaticBrokerConfig}}));
    }
  }
  // Only the names asked for (an unknown name is just not listed).
  auto d = describe(2, {{kTopic, "described", std::vector<std::string>{"retention.ms", "no.such.config"}}});
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].configs.size(), 1u);
  EXPECT_EQ(d[0].configs.count("retention.ms"), 1u);
}

TEST_F(Admin, DescribeConfigsAnswersEachResourceOnItsOwnAndDescribesTheBroker) {
  broker_.reset();
  start({"--message-max-bytes", "20000", "--segment-bytes", "1000000"});
  ASSERT_EQ(create_topic("known", 1), kNone);
  auto d = describe(1, {{kTopic, "unknown-topic", std::nullopt},
                        {3, "some-group", std::nullopt},
                        {kTopic, "known", std::nullopt},
                        {kBroker, "0", std::nullopt},
                        {kBroker, "7", std::nullopt},
                        {kTopic, "../bad", std::nullopt}});
  ASSERT_EQ(d.size(), 6u);
  EXPECT_EQ(d[0].error, kUnknownTopicOrPartition);
  EXPECT_TRUE(d[0].configs.empty());
  EXPECT_EQ(d[1].error, kInvalidRequest);
  EXPECT_TRUE(d[1].message.has_value());
  EXPECT_EQ(d[2].error, kNone);
  EXPECT_EQ(d[2].configs["max.message.bytes"].value, "20000");
  EXPECT_EQ(d[2].configs["segment.bytes"].value, "1000000");
  EXPECT_EQ(d[3].error, kNone) << d[3].message.value_or("");
  auto& b = d[3].configs;
  EXPECT_EQ(b["message.max.bytes"].value, "20000");
  EXPECT_EQ(b["message.max.bytes"].source, kStaticBrokerConfig);
  EXPECT_EQ(b["log.segment.bytes"].value, "1000000");
  EXPECT_EQ(b["log.retention.ms"].value, "-1");
  EXPECT_EQ(b["log.retention.ms"].source, kDefaultConfig);
  EXPECT_EQ(b["log.retention.bytes"].value, "-1");
  EXPECT_EQ(b["group.initial.rebalance.delay.ms"].value, "0");
  EXPECT_TRUE(b["message.max.bytes"].read_only);
  EXPECT_EQ(d[4].error, kInvalidRequest);
  EXPECT_EQ(d[5].error, kUnknownTopicOrPartition);

  // More than 64 config names for one resource: that resource is refused.
  std::vector<std::string> names(65, "retention.ms");
  auto many = describe(2, {{kTopic, "known", names}, {kTopic, "known", std::vector<std::string>{"segment.bytes"}}});
  ASSERT_EQ(many.size(), 2u);
  EXPECT_EQ(many[0].error, kInvalidRequest);
  EXPECT_EQ(many[1].error, kNone);
  EXPECT_EQ(many[1].configs.size(), 1u);
}

// ---- AlterConfigs and IncrementalAlterConfigs ----

TEST_F(Admin, AlterConfigsReplacesTheTopicsConfigsAndKeepsThemAfterKill9) {
  ASSERT_EQ(create_topic("altered", 1, {{"max.message.bytes", "5000"}}), kNone);
  for (int16_t v : {int16_t{0}, int16_t{1}}) {
    auto r = alter(v, "altered", {{"retention.ms", "86400000"}, {"segment.bytes", "2000000"}});
    EXPECT_EQ(r.error, kNone) << r.message.value_or("");
    auto c = topic_configs("altered");
    EXPECT_EQ(c["retention.ms"].value, "86400000");
    EXPECT_EQ(c["retention.ms"].source, kDynamicTopicConfig);
    EXPECT_EQ(c["segment.bytes"].value, "2000000");
    // The whole set is replaced: max.message.bytes is back to the broker's.
    EXPECT_EQ(c["max.message.bytes"].value, "1048588");
    EXPECT_EQ(c["max.message.bytes"].source, kDefaultConfig);
  }
  // validate_only checks and changes nothing.
  EXPECT_EQ(alter(1, "altered", {{"retention.bytes", "1000"}}, true).error, kNone);
  EXPECT_EQ(alter(1, "altered", {{"retention.bytes", "lots"}}, true).error, kInvalidConfig);
  EXPECT_EQ(topic_configs("altered")["retention.bytes"].source, kDefaultConfig);
  // Errors: each names what was wrong, nothing changes.
  auto r = alter(1, "altered", {{"no.such.config", "1"}});
  EXPECT_EQ(r.error, kInvalidConfig);
  EXPECT_NE(r.message.value_or("").find("no.such.config"), std::string::npos) << r.message.value_or("");
  for (const ConfigValues& bad : std::vector<ConfigValues>{{{"retention.ms", "-2"}},
                                                           {{"retention.bytes", "x"}},
                                                           {{"segment.bytes", "13"}},
                                                           {{"max.message.bytes", "-1"}},
                                                           {{"cleanup.policy", "compact"}},
                                                           {{"retention.ms", "1"}, {"retention.ms", "2"}}}) {
    auto res = alter(1, "altered", bad);
    EXPECT_EQ(res.error, kInvalidConfig) << bad.front().first << "=" << bad.front().second.value_or("null");
    EXPECT_NE(res.message.value_or("").find(bad.front().first), std::string::npos) << res.message.value_or("");
  }
  EXPECT_EQ(alter(1, "nope", {{"retention.ms", "1"}}).error, kUnknownTopicOrPartition);
  EXPECT_EQ(alter(1, "0", {{"message.max.bytes", "1"}}, false, kBroker).error, kInvalidConfig);
  EXPECT_EQ(alter(1, "g", {{"x", "1"}}, false, 3).error, kInvalidRequest);
  EXPECT_EQ(topic_configs("altered")["retention.ms"].value, "86400000");

  broker_->kill9();
  broker_->start();
  auto c = topic_configs("altered");
  EXPECT_EQ(c["retention.ms"].value, "86400000");
  EXPECT_EQ(c["segment.bytes"].value, "2000000");
  EXPECT_EQ(c["max.message.bytes"].source, kDefaultConfig);
}

TEST_F(Admin, IncrementalAlterConfigsSetsAndDeletesAndRefusesListOperations) {
  ASSERT_EQ(create_topic("inc", 1, {{"max.message.bytes", "5000"}}), kNone);
  auto r = incremental("inc", {{"retention.bytes", 0, "123456"}, {"max.message.bytes", 1, std::nullopt}});
  EXPECT_EQ(r.error, kNone) << r.message.value_or("");
  auto c = topic_configs("inc");
  EXPECT_EQ(c["retention.bytes"].value, "123456");
  EXPECT_EQ(c["max.message.bytes"].source, kDefaultConfig);
  // Other configs are kept by a SET.
  EXPECT_EQ(incremental("inc", {{"segment.bytes", 0, "1000000"}}).error, kNone);
  c = topic_configs("inc");
  EXPECT_EQ(c["retention.bytes"].value, "123456");
  EXPECT_EQ(c["segment.bytes"].value, "1000000");
  for (int8_t op : {int8_t{2}, int8_t{3}}) {
    r = incremental("inc", {{"retention.ms", op, "1"}});
    EXPECT_EQ(r.error, kInvalidConfig) << int{op};
    EXPECT_NE(r.message.value_or("").find("retention.ms"), std::string::npos) << r.message.value_or("");
  }
  EXPECT_EQ(incremental("inc", {{"no.such", 0, "1"}}).error, kInvalidConfig);
  EXPECT_EQ(incremental("inc", {{"no.such", 1, std::nullopt}}).error, kInvalidConfig);
  EXPECT_EQ(incremental("inc", {{"retention.ms", 0, std::nullopt}}).error, kInvalidConfig);
  EXPECT_EQ(incremental("inc", {{"retention.ms", 9, "1"}}).error, kInvalidRequest);
  EXPECT_EQ(incremental("inc", {{"retention.ms", 0, "5"}}, true).error, kNone);
  EXPECT_EQ(topic_configs("inc")["retention.ms"].source, kDefaultConfig);
  broker_->kill9();
  broker_->start();
  c = topic_configs("inc");
  EXPECT_EQ(c["retention.bytes"].value, "123456");
  EXPECT_EQ(c["segment.bytes"].value, "1000000");
}

TEST_F(Admin, AlteredTopicConfigsAreUsedByProduceTheLogRollAndRetention) {
  ASSERT_EQ(create_topic("live", 1), kNone);
  ASSERT_EQ(create_topic("other", 1), kNone);
  const Bytes batch = make_batch({std::vector<std::string>(10, std::string(50, 'x'))});
  // max.message.bytes: a batch over the new limit is refused at once.
  ASSERT_EQ(incremental("live", {{"max.message.bytes", 0, std::to_string(batch.size() - 1)}}).error, kNone);
  EXPECT_EQ(produce("live", 0, batch), kMessageTooLarge);
  // segment.bytes: each batch now rolls a segment (of this topic only).
  ASSERT_EQ(alter(1, "live", {{"segment.bytes", "100"}}).error, kNone);
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(produce("live", 0, batch), kNone);
    ASSERT_EQ(produce("other", 0, batch), kNone);
  }
  EXPECT_EQ(segment_files("live", 0), 4u);
  EXPECT_EQ(segment_files("other", 0), 1u);
  // retention.bytes: the sweep (every second) deletes the oldest closed
  // segments while the rest hold at least this much: 2 of the 4 go.
  ASSERT_EQ(incremental("live", {{"retention.bytes", 0, std::to_string(2 * batch.size())}}).error, kNone);
  auto wait_for = [&](size_t files) {
    for (int i = 0; i < 100 && segment_files("live", 0) > files; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return segment_files("live", 0);
  };
  EXPECT_EQ(wait_for(2), 2u);
  EXPECT_EQ(list_offset("live", -2), 20);
  // retention.ms, after a restart: every closed segment is older than 1 ms.
  ASSERT_EQ(incremental("live", {{"retention.bytes", 1, std::nullopt}, {"retention.ms", 0, "1"}}).error, kNone);
  broker_->kill9();
  broker_->start();
  EXPECT_EQ(wait_for(1), 1u);
  EXPECT_EQ(list_offset("live", -2), 30);
  EXPECT_EQ(segment_files("other", 0), 1u);
}

TEST_F(Admin, ATopicOrResourceNamedTwiceInOneRequestIsInvalidRequestBothTimesAndNothingChanges) {
  ASSERT_EQ(create_topic("twice", 1), kNone);
  {
    Writer w;  // CreatePartitions v1: "twice" to 2, then "twice" to 3
    w.array_len(2);
    for (int32_t count : {2, 3}) {
      w.string("twice");
      w.i32(count);
      w.i32(-1);
    }
    w.i32(5000);
    w.boolean(false);
    Bytes resp = call(kCreatePartitions, 1, w.take());
    Reader r(resp);
    r.i32();
    ASSERT_EQ(r.array_len(), 2);
    for (int i = 0; i < 2; ++i) {
      EXPECT_EQ(r.string(), "twice");
      EXPECT_EQ(r.i16(), kInvalidRequest);
      EXPECT_NE(r.nullable_string().value_or("").find("named twice"), std::string::npos);
    }
    EXPECT_TRUE(r.ok() && r.remaining() == 0);
  }
  EXPECT_EQ(partitions("twice"), std::make_pair(kNone, 1));
  {
    Writer w;  // AlterConfigs v1 of the same topic resource twice
    w.array_len(2);
    for (const char* ms : {"1000", "2000"}) {
      w.i8(kTopic);
      w.string("twice");
      w.array_len(1);
      w.string("retention.ms");
      w.nullable_string(std::string(ms));
    }
    w.boolean(false);
    Bytes resp = call(kAlterConfigs, 1, w.take());
    Reader r(resp);
    r.i32();
    ASSERT_EQ(r.array_len(), 2);
    for (int i = 0; i < 2; ++i) {
      EXPECT_EQ(r.i16(), kInvalidRequest);
      r.nullable_string();
      EXPECT_EQ(r.i8(), kTopic);
      EXPECT_EQ(r.string(), "twice");
    }
    EXPECT_TRUE(r.ok() && r.remaining() == 0);
  }
  EXPECT_EQ(topic_configs("twice")["retention.ms"].source, kDefaultConfig);
}

TEST_F(Admin, OversizedAdminRequestsCloseTheConnectionAndTheBrokerServesOn) {
  // 1001 resources: over the decoder's cap, so the request is malformed.
  std::vector<ConfigResource> resources(1001, ConfigResource{kTopic, "t", std::nullopt});
  RawClient c(broker_->port());
  ASSERT_TRUE(c.send_request(kDescribeConfigs, 2, describe_configs_body(2, resources)));
  EXPECT_TRUE(c.closed_by_peer());
  resources.resize(1000);
  EXPECT_EQ(describe(2, resources).size(), 1000u);
  // Counts of INT32_MAX.
  Writer w;
  w.i32(INT32_MAX);
  for (int16_t key : {kCreatePartitions, kDeleteRecords, kAlterConfigs, kIncrementalAlterConfigs}) {
    RawClient k(broker_->port());
    ASSERT_TRUE(k.send_request(key, 0, w.buffer()));
    EXPECT_TRUE(k.closed_by_peer()) << key;
  }
  EXPECT_EQ(create_topic("still-served", 1), kNone);
}

}  // namespace
}  // namespace starling::broker::testing
