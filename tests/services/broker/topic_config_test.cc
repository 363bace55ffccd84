// Integration tests at the byte level for CreateTopics' configs, manual
// assignments and validate_only, and for the per-message size limit
// (--message-max-bytes, topic config max.message.bytes).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/raw_client.h"
#include "tests/services/broker/request_bodies.h"
#include "tests/services/broker/stored_log.h"
#include "tests/services/broker/test_batches.h"

namespace starling::broker::testing {
namespace {

constexpr int16_t kNone = 0;
constexpr int16_t kUnknownTopicOrPartition = 3;
constexpr int16_t kMessageTooLarge = 10;
constexpr int16_t kTopicAlreadyExists = 36;
constexpr int16_t kInvalidPartitions = 37;
constexpr int16_t kInvalidReplicaAssignment = 39;
constexpr int16_t kInvalidConfig = 40;
constexpr int16_t kInvalidRequest = 42;

struct TopicResult {
  int16_t error = -2;
  std::optional<std::string> message;
};

class TopicConfig : public ::testing::Test {
 protected:
  TempDir dir_;
  std::unique_ptr<BrokerProcess> broker_ = std::make_unique<BrokerProcess>(dir_.path());

  /// CreateTopics v4 of one topic: its error code and message.
  TopicResult create(const NewTopicSpec& t, bool validate_only = false) {
    RawClient c(broker_->port());
    auto resp = c.call(19, 4, create_topics_body(4, t, validate_only));
    EXPECT_TRUE(resp.has_value()) << "CreateTopics not answered\n" << broker_->log();
    if (!resp) return {};
    Reader r(*resp);
    r.i32();  // throttle
    EXPECT_EQ(r.array_len(), 1);
    EXPECT_EQ(r.string(), t.name);
    TopicResult out;
    out.error = r.i16();
    out.message = r.nullable_string();
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(r.remaining(), 0u);
    return out;
  }

  /// Metadata v4 without auto-creation: the topic's error and partition count.
  std::pair<int16_t, int32_t> describe(const std::string& topic) {
    RawClient c(broker_->port());
    auto resp = c.call(3, 4, metadata_body(4, topic, false));
    EXPECT_TRUE(resp.has_value());
    if (!resp) return {-2, -1};
    Reader r(*resp);
    r.i32();  // throttle
    for (int32_t i = 0, n = r.array_len(); i < n; ++i) {
      r.i32();
      r.string();
      r.i32();
      r.nullable_string();
    }
    r.nullable_string();  // cluster id
    r.i32();              // controller
    EXPECT_EQ(r.array_len(), 1);
    int16_t err = r.i16();
    r.string();
    r.boolean();
    int32_t partitions = r.array_len();
    return {err, partitions};
  }

  /// Produce v7 of one batch per partition (index = position) in one request:
  /// each partition's error code.
  std::vector<int16_t> produce(const std::string& topic, const std::vector<Bytes>& batches) {
    Writer w;
    w.nullable_string(std::nullopt);
    w.i16(-1);
    w.i32(5000);
    w.array_len(1);
    w.string(topic);
    w.array_len(batches.size());
    for (size_t p = 0; p < batches.size(); ++p) {
      w.i32(static_cast<int32_t>(p));
      w.bytes(batches[p]);
    }
    RawClient c(broker_->port());
    auto resp = c.call(0, 7, w.take());
    EXPECT_TRUE(resp.has_value()) << broker_->log();
    std::vector<int16_t> out;
    if (!resp) return out;
    Reader r(*resp);
    EXPECT_EQ(r.array_len(), 1);
    r.string();
    for (int32_t i = 0, n = r.array_len(); i < n; ++i) {
      r.i32();
      out.push_back(r.i16());
      r.i64();
      r.i64();
      r.i64();
    }
    r.i32();
    EXPECT_TRUE(r.ok());
    return out;
  }
};

TEST_F(TopicConfig, AnUnknownConfigIsInvalidConfigNamingItAndNothingIsCreated) {
  auto r = create({.name = "unknown-cfg", .configs = {{"no.such.config", "1"}}});
  EXPECT_EQ(r.error, kInvalidConfig);
  ASSERT_TRUE(r.message.has_value());
  EXPECT_NE(r.message->find("no.such.config"), std::string::npos) << *r.message;
  EXPECT_EQ(describe("unknown-cfg").first, kUnknownTopicOrPartition);

  // A known config with a value that is not a byte count.
  r = create({.name = "bad-value", .configs = {{"max.message.bytes", "lots"}}});
  EXPECT_EQ(r.error, kInvalidConfig);
  ASSERT_TRUE(r.message.has_value());
  EXPECT_NE(r.message->find("max.message.bytes"), std::string::npos) << *r.message;
  for (const char* v : {"-1", "2147483648", "12x", ""}) {
    EXPECT_EQ(create({.name = "bad-value", .configs = {{"max.message.bytes", v}}}).error, kInvalidConfig) << v;
  }
  EXPECT_EQ(describe("bad-value").first, kUnknownTopicOrPartition);

  // At most 64 configs are decoded and kept per topic: 65 are refused as such.
  NewTopicSpec many{.name = "many-cfg"};
  for (int i = 0; i < 65; ++i) many.configs.emplace_back("max.message.bytes", std::to_string(i));
  r = create(many);
  EXPECT_EQ(r.error, kInvalidConfig);
  EXPECT_NE(r.message.value_or("").find("65 configs given, at most 64"), std::string::npos) << r.message.value_or("");
  many.configs.resize(64);  // the same name 64 times: refused for that, not the count
  r = create(many);
  EXPECT_EQ(r.error, kInvalidConfig);
  EXPECT_NE(r.message.value_or("").find("given twice"), std::string::npos) << r.message.value_or("");

  // A known config with a good value, and one with null (the default).
  EXPECT_EQ(create({.name = "good-cfg", .configs = {{"max.message.bytes", "20000"}}}).error, kNone);
  EXPECT_EQ(create({.name = "null-cfg", .configs = {{"max.message.bytes", std::nullopt}}}).error, kNone);
  EXPECT_EQ(describe("good-cfg"), std::make_pair(kNone, 1));
}

TEST_F(TopicConfig, AManualAssignmentToThisBrokerIsAcceptedAndOthersAreRefused) {
  // Given the broker's node id as it advertises it in Metadata
  {
    RawClient c(broker_->port());
    auto resp = c.call(3, 4, metadata_body(4, "x", false));
    ASSERT_TRUE(resp.has_value());
    Reader r(*resp);
    r.i32();
    ASSERT_EQ(r.array_len(), 1);
    ASSERT_EQ(r.i32(), 0) << "the broker advertises node id 0";
  }
  auto r = create({.name = "assigned", .num_partitions = -1, .replication_factor = -1, .assignments = {{0}, {0}, {0}}});
  EXPECT_EQ(r.error, kNone) << r.message.value_or("");
  EXPECT_EQ(describe("assigned"), std::make_pair(kNone, 3));

  struct Refused {
    const char* why;
    NewTopicSpec spec;
    int16_t error;
  };
  const std::vector<Refused> refused = {
      {"another broker",
       {.name = "r1", .num_partitions = -1, .replication_factor = -1, .assignments = {{1}}},
       kInvalidReplicaAssignment},
      {"this and another broker",
       {.name = "r2", .num_partitions = -1, .replication_factor = -1, .assignments = {{0}, {0, 1}}},
       kInvalidReplicaAssignment},
      {"a replica twice",
       {.name = "r3", .num_partitions = -1, .replication_factor = -1, .assignments = {{0, 0}}},
       kInvalidReplicaAssignment},
      {"no replica",
       {.name = "r4",
        .num_partitions = -1,
        .replication_factor = -1,
        .assignments = std::vector<std::vector<int32_t>>(1)},
       kInvalidReplicaAssignment},
      {"a partition count besides",
       {.name = "r5", .num_partitions = 1, .replication_factor = -1, .assignments = {{0}}},
       kInvalidRequest},
      {"a replication factor besides",
       {.name = "r6", .num_partitions = -1, .replication_factor = 1, .assignments = {{0}}},
       kInvalidRequest},
  };
  for (const auto& c : refused) {
    auto res = create(c.spec);
    EXPECT_EQ(res.error, c.error) << c.why << ": " << res.message.value_or("");
    EXPECT_TRUE(res.message.has_value()) << c.why;
    EXPECT_EQ(describe(c.spec.name).first, kUnknownTopicOrPartition) << c.why;
  }
  // At most 1000 partitions: an assignment of 1001 is refused, of 1000 taken.
  NewTopicSpec big{.name = "big", .num_partitions = -1, .replication_factor = -1};
  big.assignments.assign(1001, {0});
  EXPECT_EQ(create(big).error, kInvalidPartitions);
  big.assignments.resize(1000);
  EXPECT_EQ(create(big).error, kNone);
  EXPECT_EQ(describe("big"), std::make_pair(kNone, 1000));
  // Partition indexes must be 0..n-1.
  {
    Writer w;
    w.array_len(1);
    w.string("gap");
    w.i32(-1);
    w.i16(-1);
    w.array_len(2);
    for (int32_t p : {0, 2}) {
      w.i32(p);
      w.array_len(1);
      w.i32(0);
    }
    w.array_len(0);
    w.i32(5000);
    w.boolean(false);
    RawClient c(broker_->port());
    auto resp = c.call(19, 4, w.take());
    ASSERT_TRUE(resp.has_value());
    Reader rr(*resp);
    rr.i32();
    ASSERT_EQ(rr.array_len(), 1);
    rr.string();
    EXPECT_EQ(rr.i16(), kInvalidReplicaAssignment);
    EXPECT_EQ(describe("gap").first, kUnknownTopicOrPartition);
  }
}

TEST_F(TopicConfig, ValidateOnlyAnswersAsIfCreatedAndCreatesNothing) {
  // Valid: answered as created, but nothing exists afterwards (even after a restart).
  auto r = create({.name = "dry",
                   .num_partitions = -1,
                   .replication_factor = -1,
                   .assignments = {{0}, {0}},
                   .configs = {{"max.message.bytes", "5000"}}},
                  /*validate_only=*/true);
  EXPECT_EQ(r.error, kNone) << r.message.value_or("");
  EXPECT_EQ(describe("dry").first, kUnknownTopicOrPartition);
  // Invalid: the same errors as a real creation.
  EXPECT_EQ(create({.name = "dry", .configs = {{"no.such.config", "1"}}}, true).error, kInvalidConfig);
  EXPECT_EQ(create({.name = "dry", .num_partitions = 5000}, true).error, kInvalidPartitions);
  EXPECT_EQ(create({.name = "dry", .num_partitions = -1, .replication_factor = -1, .assignments = {{2}}}, true).error,
            kInvalidReplicaAssignment);
  ASSERT_EQ(create({.name = "real"}).error, kNone);
  EXPECT_EQ(create({.name = "real"}, true).error, kTopicAlreadyExists);
  broker_->stop();
  broker_->start();
  EXPECT_EQ(describe("dry").first, kUnknownTopicOrPartition);
  EXPECT_EQ(describe("real"), std::make_pair(kNone, 1));
}

TEST_F(TopicConfig, ABatchOverTheTopicsMaxMessageBytesIsRefusedAndOtherPartitionsStillAppend) {
  // Given batches of a known size, and topics whose limit is exactly that
  // size and one byte less
  const Bytes batch = make_batch({{std::string(500, 'x')}});
  const auto size = static_cast<int64_t>(batch.size());
  ASSERT_EQ(create({.name = "at-limit", .configs = {{"max.message.bytes", std::to_string(size)}}}).error, kNone);
  ASSERT_EQ(
      create({.name = "over-limit", .num_partitions = 2, .configs = {{"max.message.bytes", std::to_string(size - 1)}}})
          .error,
      kNone);
  // When each gets the batch (over-limit's partition 1 a small one in the
  // same request)
  EXPECT_EQ(produce("at-limit", {batch}), std::vector<int16_t>{kNone});
  const Bytes small = make_batch({{"s"}});
  EXPECT_EQ(produce("over-limit", {batch, small}), (std::vector<int16_t>{kMessageTooLarge, kNone}));
  // Then nothing of the refused batch was appended
  EXPECT_TRUE(read_stored_log(dir_.path(), "over-limit", 0).codecs.empty());
  EXPECT_EQ(read_stored_log(dir_.path(), "over-limit", 1).codecs.size(), 1u);
  EXPECT_EQ(read_stored_log(dir_.path(), "at-limit", 0).codecs.size(), 1u);
  // And the limit is kept with the topic across a restart
  broker_->stop();
  broker_->start();
  EXPECT_EQ(produce("over-limit", {batch, small}), (std::vector<int16_t>{kMessageTooLarge, kNone}));
  EXPECT_EQ(produce("at-limit", {batch}), std::vector<int16_t>{kNone});
}

TEST(MessageMaxBytes, TheBrokerFlagLimitsTopicsWithoutTheirOwnLimit) {
  const Bytes batch = make_batch({{std::string(500, 'x')}});
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--message-max-bytes", std::to_string(batch.size() - 1), "--partitions", "2"});
  RawClient c(broker.port());
  ASSERT_TRUE(c.call(3, 4, metadata_body(4, "flagged", true)).has_value());
  ASSERT_TRUE(c.call(19, 4,
                     create_topics_body(
                         4, {.name = "own-limit", .configs = {{"max.message.bytes", std::to_string(batch.size())}}}))
                  .has_value());
  auto produce_errors = [&](const std::string& topic) {
    auto resp = c.call(0, 7, produce_body(topic, batch));
    EXPECT_TRUE(resp.has_value());
    const Bytes body = resp.value_or(Bytes{});
    Reader r(body);
    r.array_len();
    r.string();
    r.array_len();
    r.i32();
    return r.i16();
  };
  EXPECT_EQ(produce_errors("flagged"), kMessageTooLarge);
  EXPECT_EQ(produce_errors("own-limit"), kNone);  // the topic's config wins
  EXPECT_TRUE(read_stored_log(dir.path(), "flagged", 0).codecs.empty());
}

}  // namespace
}  // namespace starling::broker::testing
