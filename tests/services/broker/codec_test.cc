#include <gtest/gtest.h>

#include <random>

#include "services/broker/crc32c.h"
#include "services/broker/messages.h"
#include "services/broker/record_batch.h"
#include "tests/services/broker/request_bodies.h"
#include "tests/services/broker/test_batches.h"

namespace starling::broker {
namespace {

TEST(Crc32c, MatchesTheCastagnoliCheckValue) {
  const std::string s = "123456789";
  EXPECT_EQ(crc32c(reinterpret_cast<const uint8_t*>(s.data()), s.size()), 0xE3069283u);
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
}

TEST(Crc32c, SlicedAndBytewisePathsAgree) {
  std::vector<uint8_t> data(1000);
  std::mt19937 rng(7);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  for (size_t n : {1u, 7u, 8u, 9u, 63u, 1000u}) {
    uint32_t whole = crc32c(data.data(), n);
    uint32_t parts = crc32c(data.data() + 3, n - std::min<size_t>(n, 3), crc32c(data.data(), std::min<size_t>(n, 3)));
    EXPECT_EQ(whole, parts) << n;
  }
}

TEST(ApiVersions, EachApiBecomesFlexibleAtKafkasVersion) {
  // First flexible version of each API ("flexibleVersions" in apache/kafka's message JSON).
  const std::map<ApiKey, int16_t> first_flexible = {
      {ApiKey::kProduce, 9},
      {ApiKey::kFetch, 12},
      {ApiKey::kListOffsets, 6},
      {ApiKey::kMetadata, 9},
      {ApiKey::kOffsetCommit, 8},
      {ApiKey::kOffsetFetch, 6},
      {ApiKey::kFindCoordinator, 3},
      {ApiKey::kJoinGroup, 6},
      {ApiKey::kHeartbeat, 4},
      {ApiKey::kLeaveGroup, 4},
      {ApiKey::kSyncGroup, 4},
      {ApiKey::kDescribeGroups, 5},
      {ApiKey::kListGroups, 3},
      {ApiKey::kApiVersions, 3},
      {ApiKey::kCreateTopics, 5},
      {ApiKey::kDeleteTopics, 4},
      {ApiKey::kInitProducerId, 2},
      {ApiKey::kDeleteGroups, 2},
      {ApiKey::kDeleteRecords, 2},
      {ApiKey::kDescribeConfigs, 4},
      {ApiKey::kAlterConfigs, 2},
      {ApiKey::kCreatePartitions, 2},
      {ApiKey::kIncrementalAlterConfigs, 1},
  };
  for (const auto& a : supported_apis()) {
    ASSERT_TRUE(first_flexible.count(a.key)) << static_cast<int>(a.key);
    EXPECT_EQ(a.first_flexible, first_flexible.at(a.key)) << static_cast<int>(a.key);
    EXPECT_LE(a.min_version, a.max_version);
  }
  EXPECT_EQ(supported_apis().size(), first_flexible.size());
}

TEST(Wire, CompactFormsRoundTripAndVarintsHaveKafkasBoundaries) {
  Writer w;
  w.set_flexible(true);
  w.string("");
  w.string(std::string(200, 's'));  // a length of two varint bytes
  w.nullable_string(std::nullopt);
  w.bytes(Bytes{1, 2, 3});
  w.null_bytes();
  w.array_len(0);
  w.null_array();
  w.uvarint(0xffffffffu);
  w.tags();
  Bytes b = w.take();
  EXPECT_EQ(b[0], 1);     // "" is length + 1
  EXPECT_EQ(b[1], 0xc9);  // 201 = 0x49 | 0x80, then 1
  EXPECT_EQ(b[2], 0x01);
  Reader r(b);
  r.set_flexible(true);
  EXPECT_EQ(r.string(), "");
  EXPECT_EQ(r.string(), std::string(200, 's'));
  EXPECT_EQ(r.nullable_string(), std::nullopt);
  EXPECT_EQ(r.bytes(), (Bytes{1, 2, 3}));
  EXPECT_EQ(r.nullable_bytes(), std::nullopt);
  EXPECT_EQ(r.array_len(), 0);
  EXPECT_EQ(r.array_len(), -1);
  EXPECT_EQ(r.uvarint(), 0xffffffffu);
  r.tags();
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.remaining(), 0u);

  // Outside flexible mode tags() reads and writes nothing.
  Writer classic;
  classic.tags();
  EXPECT_EQ(classic.size(), 0u);
}

TEST(Wire, MalformedCompactFieldsFailTheReader) {
  const std::vector<std::pair<std::string, Bytes>> cases = {
      {"null string where a string is required", {0}},
      {"string longer than the input", {5, 'a'}},
      {"string over 32,767 bytes", {0x81, 0x80, 0x02}},
      {"varint of six bytes", {0x80, 0x80, 0x80, 0x80, 0x80, 0x01}},
      {"varint over 32 bits", {0x80, 0x80, 0x80, 0x80, 0x10}},
      {"truncated varint", {0x80}},
  };
  for (const auto& [what, bytes] : cases) {
    Reader r(bytes);
    r.set_flexible(true);
    r.string();
    EXPECT_FALSE(r.ok()) << what;
  }
  // Tags: out of order, a size past the end, and a count the input cannot hold.
  for (const Bytes& bytes : {Bytes{2, 3, 0, 1, 0}, Bytes{1, 0, 9, 1}, Bytes{100, 0, 0}}) {
    Reader r(bytes);
    r.set_flexible(true);
    r.tags();
    EXPECT_FALSE(r.ok()) << int(bytes[0]);
  }
  // An array of more elements than the input can hold allocates nothing.
  Bytes many = {0xff, 0xff, 0x03, 1, 2};
  Reader r(many);
  r.set_flexible(true);
  r.array_len(1);
  EXPECT_FALSE(r.ok());
}

TEST(Decode, FlexibleProduceRequestRoundTrip) {
  auto batch = testing::make_batch({});
  auto body = testing::produce_body("topic", batch, -1, 9);
  Reader r(body);
  r.set_flexible(true);
  auto req = decode_produce(r, 9);
  ASSERT_TRUE(req.has_value()) << req.error().message;
  ASSERT_EQ(req->topics.size(), 1u);
  EXPECT_EQ(req->topics[0].name, "topic");
  const auto& records = req->topics[0].partitions[0].records;
  if (!records) GTEST_FAIL() << "the partition has no records";
  EXPECT_EQ(records->size(), batch.size());
  // Every truncation fails.
  for (size_t n = 0; n < body.size(); ++n) {
    Reader t(ByteView(body.data(), n));
    t.set_flexible(true);
    EXPECT_FALSE(decode_produce(t, 9).has_value()) << "prefix " << n;
  }
}

TEST(Decode, ProduceRoundTrip) {
  auto batch = testing::make_batch({});
  auto body = testing::produce_body("topic", batch);
  Reader r(body);
  auto req = decode_produce(r, 7);
  ASSERT_TRUE(req.has_value()) << req.error().message;
  EXPECT_EQ(req->acks, -1);
  ASSERT_EQ(req->topics.size(), 1u);
  EXPECT_EQ(req->topics[0].name, "topic");
  const auto& records = req->topics[0].partitions[0].records;
  if (!records) GTEST_FAIL() << "the partition has no records";
  EXPECT_EQ(records->size(), batch.size());
}

TEST(Decode, EveryTruncationOfAProduceRequestIsAnErrorNotACrash) {
  auto body = testing::produce_body("topic", testing::make_batch({}));
  for (size_t n = 0; n < body.size(); ++n) {
    Reader r(ByteView(body.data(), n));
    auto req = decode_produce(r, 7);
    EXPECT_FALSE(req.has_value()) << "prefix " << n;
    if (!req) {
      EXPECT_EQ(req.error().code, ErrorCode::kInvalidRequest);
    }
  }
}

TEST(Decode, TrailingBytesAreRejected) {
  auto body = testing::produce_body("topic", testing::make_batch({}));
  body.push_back(0);
  Reader r(body);
  EXPECT_FALSE(decode_produce(r, 7).has_value());
}

TEST(Decode, HugeArrayCountsFailWithoutAllocating) {
  Writer w;
  w.i32(-1);
  w.i32(100);
  w.i32(1);
  w.i32(0x7fffffff);  // topics count far beyond the input
  Bytes body = w.take();
  Reader r(body);
  EXPECT_FALSE(decode_fetch(r, 4).has_value());
}

TEST(Decode, RandomGarbageNeverCrashesAnyDecoder) {
  std::mt19937 rng(42);
  for (int iter = 0; iter < 3000; ++iter) {
    Bytes junk(rng() % 200);
    for (auto& b : junk) b = static_cast<uint8_t>(rng() % 4 == 0 ? 0xff : rng() % 3);
    for (int16_t v = 0; v <= 11; ++v) {
      auto run = [&](auto fn) {
        Reader r(junk);
        (void)fn(r, v);
      };
      run(decode_produce);
      run(decode_fetch);
      run(decode_list_offsets);
      run(decode_metadata);
      run(decode_create_topics);
      run(decode_delete_topics);
      run(decode_init_producer_id);
      run(decode_find_coordinator);
      run(decode_join_group);
      run(decode_sync_group);
      run(decode_heartbeat);
      run(decode_leave_group);
      run(decode_offset_commit);
      run(decode_offset_fetch);
      run(decode_list_groups);
      run(decode_describe_groups);
      Reader r(junk);
      (void)decode_request_header(r);
      (void)validate_record_set(junk, 1 << 20);
    }
  }
}

TEST(Decode, ListGroupsBodyMustBeEmpty) {
  Bytes empty;
  Reader r(empty);
  EXPECT_TRUE(decode_list_groups(r, 2).has_value());
  Bytes one{0};
  Reader r1(one);
  auto req = decode_list_groups(r1, 2);
  ASSERT_FALSE(req.has_value());
  EXPECT_EQ(req.error().code, ErrorCode::kInvalidRequest);
  EXPECT_EQ(req.error().message, "ListGroups request has 1 trailing bytes");
}

TEST(Decode, MetadataV0EmptyListMeansAllTopicsButV1EmptyMeansNone) {
  Writer w;
  w.array_len(0);
  Bytes body = w.take();
  Reader r0(body);
  auto v0 = decode_metadata(r0, 0);
  ASSERT_TRUE(v0.has_value());
  EXPECT_FALSE(v0->topics.has_value());
  Reader r1(body);
  auto v1 = decode_metadata(r1, 1);
  ASSERT_TRUE(v1.has_value());
  const auto& topics = v1->topics;
  if (!topics) GTEST_FAIL() << "v1 has a topic list (empty: every topic)";
  EXPECT_TRUE(topics->empty());
}

TEST(RecordSet, ValidBatchPassesAndCorruptedCrcIsRejected) {
  auto batch = testing::make_batch({{"a", "b", "c"}});
  auto ok = validate_record_set(batch, 1 << 20);
  ASSERT_TRUE(ok.has_value()) << ok.error().message;
  EXPECT_EQ(ok->size(), 1u);
  EXPECT_EQ((*ok)[0].header.record_count, 3);
  batch.back() ^= 0x01;
  auto bad = validate_record_set(batch, 1 << 20);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, ErrorCode::kCorruptMessage);
}

TEST(RecordSet, BaseOffsetRewriteKeepsTheCrcValid) {
  auto batch = testing::make_batch({{"a"}});
  set_base_offset(batch.data(), 123456);
  EXPECT_TRUE(batch_crc_ok(batch));
  EXPECT_EQ(parse_batch_header(batch)->base_offset, 123456);
}

TEST(RecordSet, OldMagicIsRejected) {
  auto batch = testing::make_batch({});
  batch[batch_layout::kMagic] = 1;
  auto r = validate_record_set(batch, 1 << 20);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kUnsupportedForMessageFormat);
}

TEST(RecordSet, ALastOffsetDeltaOfInt32MaxIsRefusedWithoutOverflow) {
  // Found by reading: the count check added 1 to a client's int32 (UBSan).
  auto batch = testing::make_batch({{"a"}});
  store_be32(&batch[batch_layout::kLastOffsetDelta], INT32_MAX);
  store_be32(&batch[batch_layout::kCrc], static_cast<int32_t>(crc32c(batch.data() + batch_layout::kAttributes,
                                                                     batch.size() - batch_layout::kAttributes)));
  ASSERT_TRUE(batch_crc_ok(batch));
  auto r = validate_record_set(batch, 1 << 20);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidRecord);
}

TEST(RecordSet, OversizedBatchIsRejected) {
  auto batch = testing::make_batch({{std::string(2000, 'x')}});
  auto r = validate_record_set(batch, 1000);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kMessageTooLarge);
}

}  // namespace
}  // namespace starling::broker
