// Byte-level checks that every advertised version of each API is decoded and
// answered with exactly the fields of that version (apache/kafka message
// JSON): each response must parse completely, with no bytes left over.
#include <gtest/gtest.h>

#include "services/broker/messages.h"
#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/raw_client.h"
#include "tests/services/broker/request_bodies.h"
#include "tests/services/broker/test_batches.h"

namespace starling::broker::testing {
namespace {

class Versions : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    shared_dir = new TempDir();
    shared_broker = new BrokerProcess(shared_dir->path(), {"--partitions", "1"});
    RawClient c(shared_broker->port());
    ASSERT_TRUE(c.call(3, 4, metadata_body(4, "vt", true)).has_value());
    // One batch, so every test (each runs in its own process under ctest) has data to fetch.
    ASSERT_TRUE(c.call(0, 7, produce_body("vt", make_batch({{"seed"}}))).has_value());
  }
  static void TearDownTestSuite() {
    delete shared_broker;
    delete shared_dir;
  }
  static Reader response(int16_t api, int16_t version, const Bytes& body, Bytes& keep) {
    RawClient c(shared_broker->port());
    auto r = c.call(api, version, body);
    EXPECT_TRUE(r.has_value()) << "api " << api << " v" << version;
    keep = r.value_or(Bytes{});
    return Reader(keep);
  }
  static void expect_fully_read(const Reader& r, int16_t api, int16_t v) {
    EXPECT_TRUE(r.ok()) << "api " << api << " v" << v << " truncated";
    EXPECT_EQ(r.remaining(), 0u) << "api " << api << " v" << v << " has extra bytes";
  }
  static inline TempDir* shared_dir = nullptr;
  static inline BrokerProcess* shared_broker = nullptr;
};

TEST_F(Versions, ApiVersions) {
  for (int16_t v = 0; v <= 2; ++v) {
    Bytes keep;
    Reader r = response(18, v, {}, keep);
    EXPECT_EQ(r.i16(), 0);
    int32_t n = r.array_len();
    for (int32_t i = 0; i < n; ++i) {
      r.i16();
      r.i16();
      r.i16();
    }
    if (v >= 1) r.i32();
    expect_fully_read(r, 18, v);
  }
}

TEST_F(Versions, Produce) {
  for (int16_t v = 3; v <= 7; ++v) {
    Bytes keep;
    Reader r = response(0, v, produce_body("vt", make_batch({{"x"}}), 1), keep);
    ASSERT_EQ(r.array_len(), 1);
    EXPECT_EQ(r.string(), "vt");
    ASSERT_EQ(r.array_len(), 1);
    EXPECT_EQ(r.i32(), 0);
    EXPECT_EQ(r.i16(), 0);
    EXPECT_GE(r.i64(), 0);
    r.i64();  // log append time (v2+)
    if (v >= 5) {
      EXPECT_EQ(r.i64(), 0);
    }
    r.i32();  // throttle
    expect_fully_read(r, 0, v);
  }
}

TEST_F(Versions, Fetch) {
  for (int16_t v = 4; v <= 11; ++v) {
    Bytes keep;
    Reader r = response(1, v, fetch_body(v, "vt"), keep);
    r.i32();
    if (v >= 7) {
      EXPECT_EQ(r.i16(), 0);
      EXPECT_EQ(r.i32(), 0);
    }
    ASSERT_EQ(r.array_len(), 1);
    r.string();
    ASSERT_EQ(r.array_len(), 1);
    r.i32();
    EXPECT_EQ(r.i16(), 0);
    EXPECT_GT(r.i64(), 0);
    r.i64();
    if (v >= 5) r.i64();
    EXPECT_EQ(r.array_len(), 0);
    if (v >= 11) {
      EXPECT_EQ(r.i32(), -1);
    }
    auto records = r.nullable_bytes();
    ASSERT_TRUE(records.has_value());
    EXPECT_TRUE(validate_record_set(*records, 1 << 20).has_value()) << "v" << v;
    expect_fully_read(r, 1, v);
  }
}

TEST_F(Versions, ListOffsets) {
  for (int16_t v = 1; v <= 5; ++v) {
    Writer w;
    w.i32(-1);
    if (v >= 2) w.i8(0);
    w.array_len(1);
    w.string("vt");
    w.array_len(1);
    w.i32(0);
    if (v >= 4) w.i32(-1);
    w.i64(-2);
    Bytes keep;
    Reader r = response(2, v, w.take(), keep);
    if (v >= 2) r.i32();
    ASSERT_EQ(r.array_len(), 1);
    r.string();
    ASSERT_EQ(r.array_len(), 1);
    r.i32();
    EXPECT_EQ(r.i16(), 0);
    r.i64();
    EXPECT_EQ(r.i64(), 0);
    if (v >= 4) r.i32();
    expect_fully_read(r, 2, v);
  }
}

TEST_F(Versions, ListOffsetsByTimestampFindsTheRecordInsideABatchAtEveryVersion) {
  // Given offset 0 stamped 1000 alone in a batch, offsets 1-4 in one batch
  // stamped 2000, 2100, 2200 and 2300, and offsets 5-7 in a LogAppendTime
  // batch appended at 9000 whose records still carry create times 3000-3200
  RawClient c(shared_broker->port());
  ASSERT_TRUE(c.call(3, 4, metadata_body(4, "vts", true)).has_value());
  const std::vector<Bytes> batches = {
      make_batch({{"a"}, 1000}),
      make_batch({.values = {"b", "c", "d", "e"}, .record_timestamps = {2000, 2100, 2200, 2300}}),
      make_batch({.values = {"f", "g", "h"}, .record_timestamps = {3000, 3100, 3200}, .log_append_time = 9000}),
  };
  for (const auto& b : batches) ASSERT_TRUE(c.call(0, 7, produce_body("vts", b)).has_value());
  struct Case {
    int64_t at;
    int64_t offset;
    int64_t timestamp;
  };
  const std::vector<Case> cases = {
      {-2, 0, -1},                      // earliest
      {-1, 8, -1},                      // latest: the high watermark
      {0, 0, 1000},                     // before everything
      {1000, 0, 1000},                  // exactly the first record
      {1001, 1, 2000},                  // the first record of a batch
      {2150, 3, 2200},                  // inside a batch: its third record, not the batch's first
      {2300, 4, 2300},                  // the batch's last record
      {2301, 5, 9000},                  // a LogAppendTime batch: every record is stamped 9000...
      {3100, 5, 9000},                  // ...so its create times do not count
      {9000, 5, 9000}, {9001, -1, -1},  // after everything
  };
  for (int16_t v = 1; v <= 5; ++v) {
    for (const auto& k : cases) {
      Bytes keep;
      Reader r = response(2, v, list_offsets_body(v, "vts", k.at), keep);
      if (v >= 2) {
        EXPECT_EQ(r.i32(), 0);
      }
      ASSERT_EQ(r.array_len(), 1);
      EXPECT_EQ(r.string(), "vts");
      ASSERT_EQ(r.array_len(), 1);
      EXPECT_EQ(r.i32(), 0);
      EXPECT_EQ(r.i16(), 0) << "v" << v << " at " << k.at;
      EXPECT_EQ(r.i64(), k.timestamp) << "v" << v << " at " << k.at;
      EXPECT_EQ(r.i64(), k.offset) << "v" << v << " at " << k.at;
      // Every offset is in leader epoch 0 here; no offset, no epoch.
      if (v >= 4) {
        EXPECT_EQ(r.i32(), k.offset >= 0 ? 0 : -1) << "v" << v << " at " << k.at;
      }
      expect_fully_read(r, 2, v);
    }
  }
}

TEST_F(Versions, CreateAndDeleteTopics) {
  for (int16_t v = 0; v <= 4; ++v) {
    std::string name = "ct" + std::to_string(v);
    Writer w;
    w.array_len(1);
    w.string(name);
    w.i32(v >= 4 ? -1 : 2);
    w.i16(v >= 4 ? -1 : 1);
    w.array_len(0);
    w.array_len(1);
    w.string("max.message.bytes");  // a config the broker knows (others are INVALID_CONFIG)
    w.nullable_string(std::string("100000"));
    w.i32(1000);
    if (v >= 1) w.boolean(false);
    Bytes keep;
    Reader r = response(19, v, w.take(), keep);
    if (v >= 2) r.i32();
    ASSERT_EQ(r.array_len(), 1);
    EXPECT_EQ(r.string(), name);
    EXPECT_EQ(r.i16(), 0);
    if (v >= 1) r.nullable_string();
    expect_fully_read(r, 19, v);
  }
  for (int16_t v = 0; v <= 3; ++v) {
    Writer w;
    w.array_len(1);
    w.string("ct" + std::to_string(v));
    w.i32(1000);
    Bytes keep;
    Reader r = response(20, v, w.take(), keep);
    if (v >= 1) r.i32();
    ASSERT_EQ(r.array_len(), 1);
    r.string();
    EXPECT_EQ(r.i16(), 0);
    expect_fully_read(r, 20, v);
  }
}

TEST_F(Versions, InitProducerIdAndFindCoordinator) {
  for (int16_t v = 0; v <= 1; ++v) {
    Writer w;
    w.nullable_string(std::nullopt);
    w.i32(60000);
    Bytes keep;
    Reader r = response(22, v, w.take(), keep);
    r.i32();
    EXPECT_EQ(r.i16(), 0);
    EXPECT_GE(r.i64(), 0);
    EXPECT_EQ(r.i16(), 0);
    expect_fully_read(r, 22, v);
  }
  for (int16_t v = 0; v <= 2; ++v) {
    Writer w;
    w.string("grp");
    if (v >= 1) w.i8(0);
    Bytes keep;
    Reader r = response(10, v, w.take(), keep);
    if (v >= 1) r.i32();
    EXPECT_EQ(r.i16(), 0);
    if (v >= 1) r.nullable_string();
    EXPECT_EQ(r.i32(), 0);
    EXPECT_EQ(r.string(), "127.0.0.1");
    EXPECT_EQ(r.i32(), shared_broker->port());
    expect_fully_read(r, 10, v);
  }
}

TEST_F(Versions, GroupApis) {
  for (int16_t v = 0; v <= 5; ++v) {
    std::string group = "vg" + std::to_string(v);
    Bytes keep;
    Reader r = response(11, v, join_group_body(v, group), keep);
    if (v >= 2) r.i32();
    EXPECT_EQ(r.i16(), 0);
    int32_t generation = r.i32();
    EXPECT_EQ(r.string(), "range");
    std::string leader = r.string();
    std::string member = r.string();
    EXPECT_EQ(leader, member);
    ASSERT_EQ(r.array_len(), 1);
    r.string();
    if (v >= 5) r.nullable_string();
    r.bytes();
    expect_fully_read(r, 11, v);

    int16_t sv = static_cast<int16_t>(std::min<int>(v, 3));
    Reader sr = response(14, sv, sync_group_body(sv, group, generation, member, Bytes{5}), keep);
    if (sv >= 1) sr.i32();
    EXPECT_EQ(sr.i16(), 0);
    EXPECT_EQ(sr.bytes(), Bytes{5});
    expect_fully_read(sr, 14, sv);

    Writer h;
    h.string(group);
    h.i32(generation);
    h.string(member);
    if (sv >= 3) h.nullable_string(std::nullopt);
    Reader hr = response(12, sv, h.take(), keep);
    if (sv >= 1) hr.i32();
    EXPECT_EQ(hr.i16(), 0);
    expect_fully_read(hr, 12, sv);

    int16_t cv = static_cast<int16_t>(2 + v);  // OffsetCommit 2..7
    Reader ocr = response(8, cv, offset_commit_body(cv, group, generation, member, "vt", 1), keep);
    if (cv >= 3) ocr.i32();
    ASSERT_EQ(ocr.array_len(), 1);
    ocr.string();
    ASSERT_EQ(ocr.array_len(), 1);
    ocr.i32();
    EXPECT_EQ(ocr.i16(), 0) << "OffsetCommit v" << cv;
    expect_fully_read(ocr, 8, cv);

    int16_t fv = static_cast<int16_t>(std::min<int>(1 + v, 5));  // OffsetFetch 1..5
    Writer of;
    of.string(group);
    of.array_len(1);
    of.string("vt");
    of.array_len(1);
    of.i32(0);
    Reader ofr = response(9, fv, of.take(), keep);
    if (fv >= 3) ofr.i32();
    ASSERT_EQ(ofr.array_len(), 1);
    ofr.string();
    ASSERT_EQ(ofr.array_len(), 1);
    ofr.i32();
    EXPECT_EQ(ofr.i64(), 1);
    if (fv >= 5) ofr.i32();
    EXPECT_EQ(ofr.nullable_string(), "m");
    EXPECT_EQ(ofr.i16(), 0);
    if (fv >= 2) {
      EXPECT_EQ(ofr.i16(), 0);
    }
    expect_fully_read(ofr, 9, fv);

    int16_t dv = static_cast<int16_t>(std::min<int>(v, 4));
    Writer d;
    d.array_len(1);
    d.string(group);
    if (dv >= 3) d.boolean(true);
    Reader dr = response(15, dv, d.take(), keep);
    if (dv >= 1) dr.i32();
    ASSERT_EQ(dr.array_len(), 1);
    EXPECT_EQ(dr.i16(), 0);
    EXPECT_EQ(dr.string(), group);
    EXPECT_EQ(dr.string(), "Stable");
    EXPECT_EQ(dr.string(), "consumer");
    EXPECT_EQ(dr.string(), "range");
    ASSERT_EQ(dr.array_len(), 1);
    EXPECT_EQ(dr.string(), member);
    if (dv >= 4) dr.nullable_string();
    dr.string();
    dr.string();
    dr.bytes();
    EXPECT_EQ(dr.bytes(), Bytes{5});
    if (dv >= 3) dr.i32();
    expect_fully_read(dr, 15, dv);

    int16_t lv = static_cast<int16_t>(std::min<int>(v, 3));
    Writer l;
    l.string(group);
    if (lv <= 2) {
      l.string(member);
    } else {
      l.array_len(1);
      l.string(member);
      l.nullable_string(std::nullopt);
    }
    Reader lr = response(13, lv, l.take(), keep);
    if (lv >= 1) lr.i32();
    EXPECT_EQ(lr.i16(), 0);
    if (lv >= 3) {
      ASSERT_EQ(lr.array_len(), 1);
      EXPECT_EQ(lr.string(), member);
      lr.nullable_string();
      EXPECT_EQ(lr.i16(), 0);
    }
    expect_fully_read(lr, 13, lv);
  }
  for (int16_t v = 0; v <= 2; ++v) {
    Bytes keep;
    Reader r = response(16, v, {}, keep);
    if (v >= 1) r.i32();
    EXPECT_EQ(r.i16(), 0);
    int32_t n = r.array_len();
    EXPECT_GE(n, 6);
    for (int32_t i = 0; i < n; ++i) {
      r.string();
      r.string();
    }
    expect_fully_read(r, 16, v);
  }
}

}  // namespace
}  // namespace starling::broker::testing
