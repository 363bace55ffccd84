// Integration tests at the byte level: a real starling-broker and a raw socket.
#include <gtest/gtest.h>

#include <thread>

#include "services/broker/messages.h"
#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/raw_client.h"
#include "tests/services/broker/request_bodies.h"
#include "tests/services/broker/test_batches.h"

namespace starling::broker::testing {
namespace {

class Protocol : public ::testing::Test {
 protected:
  TempDir dir_;
  BrokerProcess broker_{dir_.path(), {"--partitions", "1"}};

  void expect_still_serving() {
    ASSERT_TRUE(broker_.alive()) << broker_.log();
    RawClient c(broker_.port());
    auto resp = c.call(18, 0, {});
    ASSERT_TRUE(resp.has_value());
    Reader r(*resp);
    EXPECT_EQ(r.i16(), 0);
  }

  void create_topic(const std::string& topic) {
    RawClient c(broker_.port());
    ASSERT_TRUE(c.call(3, 4, metadata_body(4, topic, true)).has_value());  // Metadata v4 auto-creates
  }
};

TEST_F(Protocol, ApiVersionsV4IsAnsweredInV0FormatWithUnsupportedVersionSoClientsFallBack) {
  RawClient c(broker_.port());
  Writer body;  // a v3-shaped body: compact strings client_software_name/version + tagged fields
  body.set_flexible(true);
  body.string("x");
  body.string("1");
  body.tags();
  ASSERT_TRUE(c.send_request(18, 4, body.take(), 9, /*flexible_header=*/true));
  auto f = c.read_frame();
  ASSERT_TRUE(f.has_value());
  Reader r(*f);
  EXPECT_EQ(r.i32(), 9);
  EXPECT_EQ(r.i16(), 35);  // UNSUPPORTED_VERSION
  int32_t n = r.array_len();
  bool found = false;
  for (int32_t i = 0; i < n; ++i) {
    int16_t key = r.i16();
    int16_t min = r.i16();
    int16_t max = r.i16();
    if (key == 18) {
      found = true;
      EXPECT_EQ(min, 0);
      EXPECT_EQ(max, 3);
    }
  }
  EXPECT_TRUE(found);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.remaining(), 0u);
}

TEST_F(Protocol, ClientsAnnouncingHugeFramesDoNotPinMemory) {
  long before = broker_.rss_kib();
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < 20; ++i) {
    clients.push_back(std::make_unique<RawClient>(broker_.port()));
    // 90 MiB announced (under the 100 MiB limit), 16 bytes sent.
    ASSERT_TRUE(clients.back()->send_bytes({0x05, 0xa0, 0x00, 0x00, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  long after = broker_.rss_kib();
  EXPECT_LT(after - before, 200 * 1024) << "RSS grew from " << before << " to " << after << " KiB";
  expect_still_serving();
}

TEST_F(Protocol, AcksZeroGetsNoResponse) {
  create_topic("fire");
  RawClient c(broker_.port());
  ASSERT_TRUE(c.send_request(0, 7, produce_body("fire", make_batch({{"x"}}), 0), 1));
  // The next request's answer is the first frame we get back.
  ASSERT_TRUE(c.send_request(18, 0, {}, 2));
  auto f = c.read_frame();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(load_be32(f->data()), 2);
}

// librdkafka <= 2.0.2 compresses with gzip, snappy or lz4 only when the
// broker's Produce range includes v0 (KAFKA-18659), so v0-2 are advertised.
// A request that really uses one of them (message format v0/v1) gets
// UNSUPPORTED_VERSION in that version's response, and nothing is stored.
TEST_F(Protocol, ProduceV0ToV2IsAdvertisedButAnsweredWithUnsupportedVersionAndNothingStored) {
  create_topic("old");
  RawClient c(broker_.port());
  {
    auto resp = c.call(18, 0, {});
    ASSERT_TRUE(resp.has_value());
    Reader r(*resp);
    EXPECT_EQ(r.i16(), 0);
    bool found = false;
    for (int32_t i = 0, n = r.array_len(); i < n && r.ok(); ++i) {
      int16_t key = r.i16();
      int16_t min = r.i16();
      int16_t max = r.i16();
      if (key != 0) continue;
      found = true;
      EXPECT_EQ(min, 0);
      EXPECT_EQ(max, 9);
    }
    EXPECT_TRUE(found);
  }
  // Given requests at v0, v1, v2 with message format v1, and one at v2
  // carrying a v2 batch: the version decides, as in Kafka 4.0.
  struct Case {
    int16_t version;
    Bytes records;
  };
  const std::vector<Case> cases = {{0, message_set_v1({"a", "b"})},
                                   {1, message_set_v1({"a", "b"})},
                                   {2, message_set_v1({"a", "b"})},
                                   {2, make_batch({{"a", "b"}})}};
  for (const auto& [v, records] : cases) {
    auto resp = c.call(0, v, produce_body_v0_2("old", records));
    ASSERT_TRUE(resp.has_value()) << "Produce v" << v << " was not answered\n" << broker_.log();
    Reader r(*resp);
    ASSERT_EQ(r.array_len(), 1);
    EXPECT_EQ(r.string(), "old");
    ASSERT_EQ(r.array_len(), 1);
    EXPECT_EQ(r.i32(), 0);
    EXPECT_EQ(r.i16(), 35) << "v" << v;  // UNSUPPORTED_VERSION
    EXPECT_EQ(r.i64(), -1);              // base offset
    if (v >= 2) {
      EXPECT_EQ(r.i64(), -1);  // log append time
    }
    if (v >= 1) {
      EXPECT_EQ(r.i32(), 0);  // throttle time
    }
    EXPECT_TRUE(r.ok()) << "v" << v;
    EXPECT_EQ(r.remaining(), 0u) << "v" << v;
  }
  // With acks=0 there is no response to carry the error: the connection is
  // closed, as Kafka does for a failed acks=0 produce, so the client notices.
  {
    RawClient fire(broker_.port());
    ASSERT_TRUE(fire.send_request(0, 2, produce_body_v0_2("old", message_set_v1({"x"}), 0)));
    EXPECT_TRUE(fire.closed_by_peer());
  }
  // Then nothing was stored.
  Writer w;
  w.i32(-1);  // replica id
  w.array_len(1);
  w.string("old");
  w.array_len(1);
  w.i32(0);
  w.i64(-1);  // latest
  auto resp = c.call(2, 1, w.take());
  ASSERT_TRUE(resp.has_value());
  Reader r(*resp);
  ASSERT_EQ(r.array_len(), 1);
  r.string();
  ASSERT_EQ(r.array_len(), 1);
  r.i32();
  EXPECT_EQ(r.i16(), 0);
  r.i64();
  EXPECT_EQ(r.i64(), 0);  // log end offset
  expect_still_serving();
}

TEST_F(Protocol, FetchBeyondTheEndIsOffsetOutOfRangeAndReportsWatermarks) {
  create_topic("oor");
  RawClient c(broker_.port());
  ASSERT_TRUE(c.call(0, 7, produce_body("oor", make_batch({{"a", "b", "c"}}))).has_value());
  auto fetch = [&](int64_t offset) { return c.call(1, 11, fetch_body(11, "oor", offset)); };
  for (int64_t offset : {int64_t{0}, int64_t{100}}) {
    auto resp = fetch(offset);
    ASSERT_TRUE(resp.has_value());
    Reader r(*resp);
    r.i32();
    EXPECT_EQ(r.i16(), 0);
    r.i32();
    ASSERT_EQ(r.array_len(), 1);
    EXPECT_EQ(r.string(), "oor");
    ASSERT_EQ(r.array_len(), 1);
    EXPECT_EQ(r.i32(), 0);
    EXPECT_EQ(r.i16(), offset == 0 ? 0 : 1);
    EXPECT_EQ(r.i64(), 3);  // high watermark
    EXPECT_EQ(r.i64(), 3);  // last stable offset
    EXPECT_EQ(r.i64(), 0);  // log start offset
    EXPECT_EQ(r.array_len(), 0);
    EXPECT_EQ(r.i32(), -1);
    auto records = r.nullable_bytes();
    ASSERT_TRUE(records.has_value());
    if (offset == 0) {
      auto h = parse_batch_header(*records);
      ASSERT_TRUE(h.has_value());
      EXPECT_EQ(h->record_count, 3);
      EXPECT_TRUE(batch_crc_ok(*records));
    } else {
      EXPECT_TRUE(records->empty());
    }
    EXPECT_EQ(r.remaining(), 0u);
  }
}

TEST_F(Protocol, ProduceBehindAParkedFetchOnTheSameConnectionWakesItAndRepliesStayInOrder) {
  create_topic("pipe");
  RawClient c(broker_.port());
  // Given a fetch parked for up to 10 s on an empty partition
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(c.send_request(1, 11, fetch_body(11, "pipe", 0, 10000), 1));
  // When a produce for that partition follows on the same connection
  ASSERT_TRUE(c.send_request(0, 7, produce_body("pipe", make_batch({{"x", "y"}})), 2));
  // Then the fetch answers first, at once, with the produced batch
  auto first = c.read_frame();
  auto second = c.read_frame();
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(second.has_value());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(load_be32(first->data()), 1);
  EXPECT_EQ(load_be32(second->data()), 2);
  Reader r(ByteView(*first).subspan(4));
  r.i32();
  r.i16();
  r.i32();
  r.array_len();
  r.string();
  r.array_len();
  r.i32();
  EXPECT_EQ(r.i16(), 0);
  EXPECT_EQ(r.i64(), 2);  // high watermark
  r.i64();
  r.i64();
  r.array_len();
  r.i32();
  auto records = r.nullable_bytes();
  ASSERT_TRUE(records.has_value());
  ASSERT_GE(records->size(), batch_layout::kHeaderSize);
  EXPECT_EQ(parse_batch_header(*records)->record_count, 2);
}

TEST_F(Protocol, RetriedIdempotentBatchGetsItsOriginalOffsetAndGapsAreRejected) {
  create_topic("idem");
  RawClient c(broker_.port());
  auto produce = [&](const Bytes& batch) {
    auto resp = c.call(0, 7, produce_body("idem", batch));
    Reader r(*resp);
    r.array_len();
    r.string();
    r.array_len();
    r.i32();
    int16_t err = r.i16();
    int64_t offset = r.i64();
    return std::make_pair(err, offset);
  };
  BatchSpec first{{"a", "b"}, 1000, 4242, 0, 0};
  BatchSpec second{{"c"}, 1000, 4242, 0, 2};
  EXPECT_EQ(produce(make_batch(first)), std::make_pair(int16_t{0}, int64_t{0}));
  EXPECT_EQ(produce(make_batch(second)), std::make_pair(int16_t{0}, int64_t{2}));
  EXPECT_EQ(produce(make_batch(first)), std::make_pair(int16_t{0}, int64_t{0}));  // duplicate
  BatchSpec gap{{"d"}, 1000, 4242, 0, 7};
  EXPECT_EQ(produce(make_batch(gap)).first, 45);  // OUT_OF_ORDER_SEQUENCE_NUMBER
  BatchSpec fenced{{"d"}, 1000, 4242, 0, 3};
  // Bump the epoch, then the old epoch is fenced.
  BatchSpec bumped{{"e"}, 1000, 4242, 1, 0};
  EXPECT_EQ(produce(make_batch(bumped)).first, 0);
  EXPECT_EQ(produce(make_batch(fenced)).first, 47);  // INVALID_PRODUCER_EPOCH
}

TEST_F(Protocol, EveryAdvertisedVersionOfMetadataDecodesAndAnswers) {
  create_topic("meta");
  for (int16_t v = 0; v <= 8; ++v) {
    RawClient c(broker_.port());
    auto resp = c.call(3, v, metadata_body(v, "meta", false));
    ASSERT_TRUE(resp.has_value()) << "v" << v;
    Reader r(*resp);
    if (v >= 3) r.i32();
    ASSERT_EQ(r.array_len(), 1);
    EXPECT_EQ(r.i32(), 0);
    EXPECT_EQ(r.string(), "127.0.0.1");
    EXPECT_EQ(r.i32(), broker_.port());
    if (v >= 1) r.nullable_string();
    if (v >= 2) r.nullable_string();
    if (v >= 1) r.i32();
    ASSERT_EQ(r.array_len(), 1);
    EXPECT_EQ(r.i16(), 0);
    EXPECT_EQ(r.string(), "meta");
    if (v >= 1) r.boolean();
    ASSERT_EQ(r.array_len(), 1);
    r.i16();
    EXPECT_EQ(r.i32(), 0);
    r.i32();
    if (v >= 7) r.i32();
    r.array_len();
    r.i32();
    r.array_len();
    r.i32();
    if (v >= 5) r.array_len();
    if (v >= 8) r.i32();
    if (v >= 8) r.i32();
    EXPECT_TRUE(r.ok()) << "v" << v;
    EXPECT_EQ(r.remaining(), 0u) << "v" << v;
  }
}

}  // namespace
}  // namespace starling::broker::testing
