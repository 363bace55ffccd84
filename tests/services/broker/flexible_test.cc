// Flexible versions (KIP-482) byte by byte: request header v2, response
// header v1, compact strings, bytes and arrays, and tagged fields, for every
// API at the flexible versions the broker advertises. Each response must
// parse completely in the compact forms, with no bytes left over; tagged
// fields a client adds are skipped, malformed ones close the connection.
#include <gtest/gtest.h>

#include <map>

#include "services/broker/messages.h"
#include "services/broker/record_batch.h"
#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/raw_client.h"
#include "tests/services/broker/request_bodies.h"
#include "tests/services/broker/test_batches.h"

namespace starling::broker::testing {
namespace {

class Flexible : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    shared_dir = new TempDir();
    shared_broker = new BrokerProcess(shared_dir->path(), {"--partitions", "1"});
    RawClient c(shared_broker->port());
    ASSERT_TRUE(c.call(3, 4, metadata_body(4, "ft", true)).has_value());
    ASSERT_TRUE(c.call(0, 7, produce_body("ft", make_batch({{"seed"}}))).has_value());
  }
  static void TearDownTestSuite() {
    delete shared_broker;
    delete shared_dir;
  }
  // The body of the response to a flexible request, in a flexible reader.
  static Reader call(int16_t api, int16_t version, const Bytes& body, Bytes& keep) {
    RawClient c(shared_broker->port());
    auto r = c.call_flexible(api, version, body);
    EXPECT_TRUE(r.has_value()) << "api " << api << " v" << version << " not answered";
    keep = r.value_or(Bytes{});
    Reader reader(keep);
    reader.set_flexible(true);
    return reader;
  }
  static void expect_fully_read(Reader& r, int16_t api, int16_t v) {
    r.tags();  // the body's own tagged fields close it
    EXPECT_TRUE(r.ok()) << "api " << api << " v" << v << " truncated";
    EXPECT_EQ(r.remaining(), 0u) << "api " << api << " v" << v << " has extra bytes";
  }
  static uint16_t port() { return shared_broker->port(); }
  static inline TempDir* shared_dir = nullptr;
  static inline BrokerProcess* shared_broker = nullptr;
};

Writer flexible_writer() {
  Writer w;
  w.set_flexible(true);
  return w;
}

TEST_F(Flexible, ApiVersionsV3AnswersInHeaderV0WithCompactRangesAndTags) {
  Writer w = flexible_writer();
  w.string("starling-test");  // client software name
  w.string("1.0");            // and version
  w.tags();
  Bytes keep;
  Reader r = call(18, 3, w.take(), keep);
  EXPECT_EQ(r.i16(), 0);
  std::map<int16_t, std::pair<int16_t, int16_t>> ranges;
  int32_t n = r.array_len();
  for (int32_t i = 0; i < n && r.ok(); ++i) {
    int16_t key = r.i16();
    int16_t min = r.i16();
    ranges[key] = {min, r.i16()};
    r.tags();
  }
  EXPECT_EQ(r.i32(), 0);  // throttle
  expect_fully_read(r, 18, 3);
  // What a current librdkafka (2.15) asks for first, up to the versions that
  // need what this broker does not have (topic ids: Fetch v13+).
  EXPECT_EQ(ranges[18].second, 3);
  EXPECT_EQ(ranges[3].second, 12);
  EXPECT_EQ(ranges[1].second, 12);
  EXPECT_EQ(ranges[0].second, 9);
  EXPECT_EQ(ranges.size(), supported_apis().size());
}

TEST_F(Flexible, ApiVersionsV3WithABodyThatDoesNotDecodeIsAnsweredWithInvalidRequest) {
  Writer w = flexible_writer();
  w.uvarint(50);  // a 49-byte name, with 3 bytes left
  w.raw(reinterpret_cast<const uint8_t*>("abc"), 3);
  Bytes keep;
  Reader r = call(18, 3, w.take(), keep);
  EXPECT_EQ(r.i16(), 42);  // INVALID_REQUEST, and the ranges still follow
  EXPECT_GT(r.array_len(), 10);
}

TEST_F(Flexible, ProduceV8AndV9ThenFetchV12AndListOffsetsV6ReadThemBack) {
  int64_t first = -1;
  for (int16_t v : {int16_t{8}, int16_t{9}}) {
    const bool flex = v >= 9;
    RawClient c(port());
    auto body = produce_body("ft", make_batch({{"p" + std::to_string(v), "q"}}), -1, v);
    auto got = flex ? c.call_flexible(0, v, body) : c.call(0, v, body);
    ASSERT_TRUE(got.has_value()) << "Produce v" << v;
    Reader r(*got);
    r.set_flexible(flex);
    ASSERT_EQ(r.array_len(), 1);
    EXPECT_EQ(r.string(), "ft");
    ASSERT_EQ(r.array_len(), 1);
    EXPECT_EQ(r.i32(), 0);
    EXPECT_EQ(r.i16(), 0) << "Produce v" << v;
    int64_t base = r.i64();
    EXPECT_GE(base, 1);
    if (first < 0) first = base;
    r.i64();                                       // log append time
    EXPECT_EQ(r.i64(), 0);                         // log start offset
    EXPECT_EQ(r.array_len(), 0);                   // record errors (v8+)
    EXPECT_EQ(r.nullable_string(), std::nullopt);  // error message (v8+)
    r.tags();
    r.tags();
    EXPECT_EQ(r.i32(), 0);  // throttle
    r.tags();
    EXPECT_TRUE(r.ok() && r.remaining() == 0) << "Produce v" << v;
  }

  Bytes keep;
  Reader f = call(1, 12, fetch_body(12, "ft", first), keep);
  EXPECT_EQ(f.i32(), 0);  // throttle
  EXPECT_EQ(f.i16(), 0);
  EXPECT_EQ(f.i32(), 0);  // session id
  ASSERT_EQ(f.array_len(), 1);
  EXPECT_EQ(f.string(), "ft");
  ASSERT_EQ(f.array_len(), 1);
  EXPECT_EQ(f.i32(), 0);
  EXPECT_EQ(f.i16(), 0);
  const int64_t high_watermark = f.i64();
  EXPECT_EQ(high_watermark, first + 4);
  EXPECT_EQ(f.i64(), high_watermark);  // last stable offset
  EXPECT_EQ(f.i64(), 0);               // log start offset
  EXPECT_EQ(f.array_len(), 0);         // aborted transactions
  EXPECT_EQ(f.i32(), -1);              // preferred read replica
  auto records = f.nullable_bytes();   // compact records
  ASSERT_TRUE(records.has_value());
  auto batches = validate_record_set(*records, 1 << 20);
  ASSERT_TRUE(batches.has_value());
  ASSERT_EQ(batches->size(), 2u);
  EXPECT_EQ((*batches)[0].header.base_offset, first);
  EXPECT_EQ((*batches)[1].header.base_offset, first + 2);
  f.tags();
  f.tags();
  expect_fully_read(f, 1, 12);

  Reader lo = call(2, 6, list_offsets_body(6, "ft", -1), keep);
  EXPECT_EQ(lo.i32(), 0);
  ASSERT_EQ(lo.array_len(), 1);
  EXPECT_EQ(lo.string(), "ft");
  ASSERT_EQ(lo.array_len(), 1);
  EXPECT_EQ(lo.i32(), 0);
  EXPECT_EQ(lo.i16(), 0);
  EXPECT_EQ(lo.i64(), -1);
  EXPECT_EQ(lo.i64(), high_watermark);
  EXPECT_EQ(lo.i32(), 0);  // leader epoch
  lo.tags();
  lo.tags();
  expect_fully_read(lo, 2, 6);
}

TEST_F(Flexible, MetadataV9ToV12DescribeTheBrokerAndTheTopic) {
  for (int16_t v = 9; v <= 12; ++v) {
    Bytes keep;
    Reader r = call(3, v, metadata_body(v, "ft", false), keep);
    EXPECT_EQ(r.i32(), 0);  // throttle
    ASSERT_EQ(r.array_len(), 1);
    EXPECT_EQ(r.i32(), 0);
    EXPECT_EQ(r.string(), "127.0.0.1");
    EXPECT_EQ(r.i32(), port());
    EXPECT_EQ(r.nullable_string(), std::nullopt);  // rack
    r.tags();
    EXPECT_TRUE(r.nullable_string().has_value());  // cluster id
    EXPECT_EQ(r.i32(), 0);                         // controller
    ASSERT_EQ(r.array_len(), 1);
    EXPECT_EQ(r.i16(), 0) << "v" << v;
    EXPECT_EQ(v >= 12 ? r.nullable_string() : r.string(), "ft");
    if (v >= 10) {
      EXPECT_EQ(r.i64(), 0);  // the zero topic id
      EXPECT_EQ(r.i64(), 0);
    }
    EXPECT_FALSE(r.boolean());
    ASSERT_EQ(r.array_len(), 1);
    EXPECT_EQ(r.i16(), 0);
    EXPECT_EQ(r.i32(), 0);  // partition
    EXPECT_EQ(r.i32(), 0);  // leader
    EXPECT_EQ(r.i32(), 0);  // leader epoch
    EXPECT_EQ(r.array_len(), 1);
    r.i32();
    EXPECT_EQ(r.array_len(), 1);
    r.i32();
    EXPECT_EQ(r.array_len(), 0);  // offline
    r.tags();
    r.i32();  // topic authorized operations
    r.tags();
    if (v <= 10) r.i32();  // cluster authorized operations
    expect_fully_read(r, 3, v);
  }
}

TEST_F(Flexible, MetadataForEveryTopicInLibrdkafkasPaddedFormIsServed) {
  // librdkafka 2.x (issue #5049) sends the all-topics request at v9+ with a
  // 4-byte null placeholder: 00 00 00 00, then its real fields.
  for (int16_t v = 9; v <= 12; ++v) {
    Bytes body = {0, 0, 0, 0, 0 /* allow auto-creation */};
    if (v <= 10) body.push_back(0);  // include cluster authorized operations
    body.push_back(0);               // include topic authorized operations
    body.push_back(0);               // tags
    Bytes keep;
    Reader r = call(3, v, body, keep);
    r.i32();
    ASSERT_EQ(r.array_len(), 1) << "v" << v;
    r.i32();
    r.string();
    r.i32();
    r.nullable_string();
    r.tags();
    r.nullable_string();
    r.i32();
    EXPECT_GE(r.array_len(), 1) << "v" << v << ": every topic, so at least ft";
    EXPECT_TRUE(r.ok()) << "v" << v;
  }
  // The same bytes one short are not that form: the connection closes.
  RawClient c(port());
  ASSERT_TRUE(c.send_request(3, 12, Bytes{0, 0, 0, 0, 0, 0}, 1, /*flexible_header=*/true));
  EXPECT_TRUE(c.closed_by_peer());
}

TEST_F(Flexible, AGroupLivesItsWholeLifeAtTheFlexibleVersions) {
  const std::string group = "fg";
  Bytes keep;
  Writer fc = flexible_writer();
  fc.string(group);
  fc.i8(0);
  fc.tags();
  Reader c = call(10, 3, fc.take(), keep);
  c.i32();
  EXPECT_EQ(c.i16(), 0);
  c.nullable_string();
  EXPECT_EQ(c.i32(), 0);
  EXPECT_EQ(c.string(), "127.0.0.1");
  EXPECT_EQ(c.i32(), port());
  expect_fully_read(c, 10, 3);

  Reader j = call(11, 6, join_group_body(6, group), keep);
  j.i32();
  EXPECT_EQ(j.i16(), 0);
  const int32_t generation = j.i32();
  EXPECT_EQ(j.string(), "range");
  const std::string leader = j.string();
  const std::string member = j.string();
  EXPECT_EQ(leader, member);
  ASSERT_EQ(j.array_len(), 1);
  EXPECT_EQ(j.string(), member);
  EXPECT_EQ(j.nullable_string(), std::nullopt);
  EXPECT_EQ(j.bytes(), (Bytes{0, 1}));
  j.tags();
  expect_fully_read(j, 11, 6);

  Reader s = call(14, 4, sync_group_body(4, group, generation, member, Bytes{7, 8}), keep);
  s.i32();
  EXPECT_EQ(s.i16(), 0);
  EXPECT_EQ(s.bytes(), (Bytes{7, 8}));
  expect_fully_read(s, 14, 4);

  Reader h = call(12, 4, heartbeat_body(4, group, generation, member), keep);
  h.i32();
  EXPECT_EQ(h.i16(), 0);
  expect_fully_read(h, 12, 4);

  Reader oc = call(8, 8, offset_commit_body(8, group, generation, member, "ft", 1), keep);
  oc.i32();
  ASSERT_EQ(oc.array_len(), 1);
  EXPECT_EQ(oc.string(), "ft");
  ASSERT_EQ(oc.array_len(), 1);
  EXPECT_EQ(oc.i32(), 0);
  EXPECT_EQ(oc.i16(), 0);
  oc.tags();
  oc.tags();
  expect_fully_read(oc, 8, 8);

  for (int16_t v : {int16_t{6}, int16_t{7}}) {
    Writer of = flexible_writer();
    of.string(group);
    of.array_len(1);
    of.string("ft");
    of.array_len(1);
    of.i32(0);
    of.tags();
    if (v >= 7) of.boolean(true);  // require stable
    of.tags();
    Reader o = call(9, v, of.take(), keep);
    o.i32();
    ASSERT_EQ(o.array_len(), 1);
    EXPECT_EQ(o.string(), "ft");
    ASSERT_EQ(o.array_len(), 1);
    EXPECT_EQ(o.i32(), 0);
    EXPECT_EQ(o.i64(), 1) << "OffsetFetch v" << v;
    EXPECT_EQ(o.i32(), -1);  // leader epoch as committed
    EXPECT_EQ(o.nullable_string(), "m");
    EXPECT_EQ(o.i16(), 0);
    o.tags();
    o.tags();
    EXPECT_EQ(o.i16(), 0);
    expect_fully_read(o, 9, v);
  }

  Reader d = call(15, 5, groups_body(15, 5, {group}), keep);
  d.i32();
  ASSERT_EQ(d.array_len(), 1);
  EXPECT_EQ(d.i16(), 0);
  EXPECT_EQ(d.string(), group);
  EXPECT_EQ(d.string(), "Stable");
  EXPECT_EQ(d.string(), "consumer");
  EXPECT_EQ(d.string(), "range");
  ASSERT_EQ(d.array_len(), 1);
  EXPECT_EQ(d.string(), member);
  EXPECT_EQ(d.nullable_string(), std::nullopt);
  EXPECT_EQ(d.string(), "raw-test");  // client id
  d.string();                         // client host
  EXPECT_EQ(d.bytes(), (Bytes{0, 1}));
  EXPECT_EQ(d.bytes(), (Bytes{7, 8}));
  d.tags();
  d.i32();
  d.tags();
  expect_fully_read(d, 15, 5);

  Writer lg = flexible_writer();
  lg.tags();
  Reader l = call(16, 3, lg.take(), keep);
  l.i32();
  EXPECT_EQ(l.i16(), 0);
  bool listed = false;
  int32_t n = l.array_len();
  for (int32_t i = 0; i < n && l.ok(); ++i) {
    listed = listed || l.string() == group;
    l.string();
    l.tags();
  }
  EXPECT_TRUE(listed);
  expect_fully_read(l, 16, 3);

  Writer lv = flexible_writer();
  lv.string(group);
  lv.array_len(1);
  lv.string(member);
  lv.nullable_string(std::nullopt);
  lv.tags();
  lv.tags();
  Reader le = call(13, 4, lv.take(), keep);
  le.i32();
  EXPECT_EQ(le.i16(), 0);
  ASSERT_EQ(le.array_len(), 1);
  EXPECT_EQ(le.string(), member);
  EXPECT_EQ(le.nullable_string(), std::nullopt);
  EXPECT_EQ(le.i16(), 0);
  le.tags();
  expect_fully_read(le, 13, 4);

  Reader dg = call(42, 2, groups_body(42, 2, {group}), keep);
  dg.i32();
  ASSERT_EQ(dg.array_len(), 1);
  EXPECT_EQ(dg.string(), group);
  EXPECT_EQ(dg.i16(), 0);
  dg.tags();
  expect_fully_read(dg, 42, 2);
}

TEST_F(Flexible, AdminApisAtTheirFlexibleVersions) {
  Bytes keep;
  Writer ip = flexible_writer();
  ip.nullable_string(std::nullopt);
  ip.i32(60000);
  ip.tags();
  Reader i = call(22, 2, ip.take(), keep);
  i.i32();
  EXPECT_EQ(i.i16(), 0);
  EXPECT_GE(i.i64(), 0);
  EXPECT_EQ(i.i16(), 0);
  expect_fully_read(i, 22, 2);

  {
    RawClient c(port());
    ASSERT_TRUE(c.call(3, 4, metadata_body(4, "fa", true)).has_value());
    ASSERT_TRUE(c.call(0, 7, produce_body("fa", make_batch({{"a", "b", "c"}}))).has_value());
  }
  Writer cp = flexible_writer();
  cp.array_len(1);
  cp.string("fa");
  cp.i32(3);
  cp.null_array();  // the broker places them
  cp.tags();
  cp.i32(5000);
  cp.boolean(false);
  cp.tags();
  Reader p = call(37, 2, cp.take(), keep);
  p.i32();
  ASSERT_EQ(p.array_len(), 1);
  EXPECT_EQ(p.string(), "fa");
  EXPECT_EQ(p.i16(), 0);
  EXPECT_EQ(p.nullable_string(), std::nullopt);
  p.tags();
  expect_fully_read(p, 37, 2);

  Writer dr = flexible_writer();
  dr.array_len(1);
  dr.string("fa");
  dr.array_len(1);
  dr.i32(0);
  dr.i64(2);
  dr.tags();
  dr.tags();
  dr.i32(5000);
  dr.tags();
  Reader r = call(21, 2, dr.take(), keep);
  r.i32();
  ASSERT_EQ(r.array_len(), 1);
  EXPECT_EQ(r.string(), "fa");
  ASSERT_EQ(r.array_len(), 1);
  EXPECT_EQ(r.i32(), 0);
  EXPECT_EQ(r.i64(), 2);  // the new low watermark
  EXPECT_EQ(r.i16(), 0);
  r.tags();
  r.tags();
  expect_fully_read(r, 21, 2);

  for (int16_t api : {int16_t{33}, int16_t{44}}) {
    const int16_t v = api == 33 ? 2 : 1;
    Writer ac = flexible_writer();
    ac.array_len(1);
    ac.i8(2);
    ac.string("fa");
    ac.array_len(1);
    ac.string("retention.ms");
    if (api == 44) ac.i8(0);  // SET
    ac.nullable_string(std::string("86400000"));
    ac.tags();
    ac.tags();
    ac.boolean(false);
    ac.tags();
    Reader a = call(api, v, ac.take(), keep);
    a.i32();
    ASSERT_EQ(a.array_len(), 1);
    EXPECT_EQ(a.i16(), 0) << "api " << api;
    EXPECT_EQ(a.nullable_string(), std::nullopt);
    EXPECT_EQ(a.i8(), 2);
    EXPECT_EQ(a.string(), "fa");
    a.tags();
    expect_fully_read(a, api, v);
  }

  Writer dt = flexible_writer();
  dt.array_len(1);
  dt.string("fa");
  dt.i32(5000);
  dt.tags();
  Reader t = call(20, 4, dt.take(), keep);
  t.i32();
  ASSERT_EQ(t.array_len(), 1);
  EXPECT_EQ(t.string(), "fa");
  EXPECT_EQ(t.i16(), 0);
  t.tags();
  expect_fully_read(t, 20, 4);
}

// A frame with a header v2 whose tagged fields are `header_tags` (raw bytes).
Bytes frame_with_header_tags(int16_t api, int16_t v, const Bytes& header_tags, const Bytes& body) {
  Writer w;
  w.i32(0);
  w.i16(api);
  w.i16(v);
  w.i32(3);
  w.nullable_string(std::string("hostile"));
  w.raw(header_tags.data(), header_tags.size());
  w.raw(body.data(), body.size());
  store_be32(w.buffer().data(), static_cast<int32_t>(w.size() - 4));
  return w.take();
}

TEST_F(Flexible, TaggedFieldsAClientAddsAreSkipped) {
  // Two unknown tags (1 and 7) in the header and one (0) at the body's end.
  const Bytes header_tags = {2, 1, 3, 'a', 'b', 'c', 7, 0};
  const Bytes body_tags = {1, 0, 2, 0xff, 0xff};
  RawClient c(port());
  ASSERT_TRUE(c.send_bytes(frame_with_header_tags(16, 3, header_tags, body_tags)));
  auto f = c.read_frame();
  ASSERT_TRUE(f.has_value()) << "ListGroups v3 with unknown tagged fields was not answered";
  Reader r(*f);
  r.set_flexible(true);
  EXPECT_EQ(r.i32(), 3);
  r.tags();
  r.i32();
  EXPECT_EQ(r.i16(), 0);
}

TEST_F(Flexible, MalformedCompactFieldsAndTaggedFieldsCloseTheConnection) {
  const Bytes empty_tags = {0};
  struct Case {
    std::string what;
    Bytes header_tags;
    Bytes body;
  };
  const std::vector<Case> cases = {
      {"tags out of order", {2, 5, 0, 3, 0}, {0}},
      {"a tag repeated", {2, 4, 0, 4, 0}, {0}},
      {"a tag's size past the frame", {1, 1, 100, 'x'}, {0}},
      {"more tags than bytes", {0x7f}, {0}},
      {"a varint of six bytes", {0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, {0}},
      {"a varint over 32 bits", {0xff, 0xff, 0xff, 0xff, 0x7f}, {0}},
      {"no header tags at all", {}, {}},
      // DescribeGroups v5 bodies: a group id array, a boolean, tags.
      {"a null group id", empty_tags, {2, 0, 0, 0}},
      {"a string of 40,000 bytes announced", empty_tags, {2, 0xc1, 0xb8, 0x02, 'a', 0, 0}},
      {"an array of 2^31 groups", empty_tags, {0x80, 0x80, 0x80, 0x80, 0x08, 0, 0}},
      {"trailing bytes after the body's tags", empty_tags, {2, 2, 'g', 0, 0, 9}},
  };
  for (const auto& k : cases) {
    RawClient c(port());
    const int16_t api = k.body.size() > 1 ? 15 : 16;  // DescribeGroups v5 or ListGroups v3
    const int16_t v = api == 15 ? 5 : 3;
    ASSERT_TRUE(c.send_bytes(frame_with_header_tags(api, v, k.header_tags, k.body)));
    EXPECT_TRUE(c.closed_by_peer()) << k.what << ": the connection stayed open";
  }
  // And the broker still serves.
  Bytes keep;
  Writer lg = flexible_writer();
  lg.tags();
  Reader l = call(16, 3, lg.take(), keep);
  l.i32();
  EXPECT_EQ(l.i16(), 0);
  EXPECT_TRUE(shared_broker->alive()) << shared_broker->log();
}

}  // namespace
}  // namespace starling::broker::testing
