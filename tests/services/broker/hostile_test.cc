// The hostile corpus against a real starling-broker's Kafka port (labels
// `hostile` and `integration`): bytes no honest client sends, aimed at one
// broker process while 1000 idle connections are held open beside them.
// Afterwards the process must still be running, answer ApiVersions on a new
// connection and carry a librdkafka produce + consume round trip. Where Kafka
// defines the answer (an error code, or the connection closed) it is checked.
// The in-process decoders are fuzzed by broker_fuzz_request; this is the
// whole path through the socket, the framing and the process.
#include <gtest/gtest.h>
#include <poll.h>

#include <climits>
#include <functional>
#include <memory>
#include <random>
#include <thread>

#include "services/broker/messages.h"
#include "services/common/text.h"
#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/raw_client.h"
#include "tests/services/broker/rdkafka_helpers.h"
#include "tests/services/broker/request_bodies.h"
#include "tests/services/broker/test_batches.h"

namespace starling::broker::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kIdleConnections = 1000;
// Short enough that the slow-loris step ends in seconds, long enough that a
// request sent one byte every 50 ms still arrives whole.
constexpr int kReadTimeoutMs = 3000;

Bytes be32(int32_t v) {
  Writer w;
  w.i32(v);
  return w.take();
}

/// A request frame whose header carries `client_id` as raw bytes (or null).
Bytes frame_with_client_id(int16_t api_key, int16_t version, const std::optional<std::string>& client_id,
                           const Bytes& body, int32_t correlation_id = 1) {
  Writer w;
  size_t at = w.reserve_i32();
  w.i16(api_key);
  w.i16(version);
  w.i32(correlation_id);
  w.nullable_string(client_id);
  w.raw(body.data(), body.size());
  w.patch_i32(at, static_cast<int32_t>(w.size() - 4));
  return w.take();
}

/// The body of a response frame (after the correlation id).
std::optional<Bytes> body_of(const std::optional<Bytes>& frame) {
  if (!frame || frame->size() < 4) return std::nullopt;
  return Bytes(frame->begin() + 4, frame->end());
}

/// The three topic names no broker may accept, and whose echo must be made
/// valid UTF-8: invalid UTF-8, a NUL inside, and 10 KB.
std::vector<std::string> hostile_topic_names() {
  return {std::string("bad\xff\xfe\xc3", 6), std::string("nul\0inside", 10), std::string(size_t{10} * 1024, 'a'),
          "../escape"};
}

class Hostile : public ::testing::Test {
 protected:
  TempDir dir_;
  BrokerProcess broker_{dir_.path(), {"--request-read-timeout-ms", std::to_string(kReadTimeoutMs)}};

  std::unique_ptr<RawClient> connect() { return std::make_unique<RawClient>(broker_.port()); }

  /// Sends `bytes` on a new connection and expects the broker to close it.
  void expect_closes(const Bytes& bytes, const std::string& what) {
    SCOPED_TRACE(what);
    auto c = connect();
    ASSERT_TRUE(c->send_bytes(bytes));
    EXPECT_TRUE(c->closed_by_peer(10000)) << what << ": the connection was left open";
  }

  size_t open_descriptors() {
    size_t n = 0;
    std::error_code ec;
    for (auto it = fs::directory_iterator("/proc/" + std::to_string(broker_.pid()) + "/fd", ec);
         !ec && it != fs::directory_iterator(); it.increment(ec)) {
      ++n;
    }
    return n;
  }

  void frame_sizes() {
    for (int32_t size : {-1, INT32_MIN, 0, 9, (100 << 20) + 1, INT32_MAX}) {
      expect_closes(be32(size), "frame size " + std::to_string(size));
    }
  }

  void truncated_frames_then_close() {
    // Announced sizes the client never completes: the broker must give the
    // bytes it charged to the in-flight budget back when the client leaves.
    for (int i = 0; i < 20; ++i) {
      auto c = connect();
      Bytes frame = request_frame(3, 4, metadata_body(4, "never", true));
      frame.resize(frame.size() - 5);
      ASSERT_TRUE(c->send_bytes(frame));
    }
    // A whole frame whose body stops short: undecodable, closed.
    expect_closes(request_frame(0, 7, {0, 0, 0}), "truncated Produce body");
    for (int i = 0; i < 5; ++i) {
      auto c = connect();
      Bytes b = be32(1 << 20);  // 1 MiB announced, 1000 bytes sent
      b.resize(1004, 0);
      ASSERT_TRUE(c->send_bytes(b));
    }
  }

  void random_bytes() {
    std::mt19937 rng(4242);
    // Unframed noise: whatever it announces, it ends with the client leaving.
    for (int i = 0; i < 50; ++i) {
      auto c = connect();
      Bytes noise(1 + rng() % 2000);
      for (auto& b : noise) b = static_cast<uint8_t>(rng());
      c->send_bytes(noise);
      (void)c->read_frame(50);
    }
    // Well-framed requests of every API with garbage bodies.
    for (int i = 0; i < 300; ++i) {
      auto c = connect();
      Bytes body(rng() % 300);
      for (auto& b : body) b = static_cast<uint8_t>(rng() % 5 == 0 ? 0xff : rng() % 4);
      auto api = find_api(static_cast<int16_t>(rng() % 23));
      auto key = api ? static_cast<int16_t>(api->key) : int16_t{1};
      auto version = static_cast<int16_t>(
          api ? api->min_version + static_cast<int>(rng() % (api->max_version - api->min_version + 1)) : 4);
      c->send_request(key, version, body);
      (void)c->read_frame(50);
    }
  }

  void unknown_api_keys() {
    for (int16_t key : {int16_t{-1}, int16_t{999}, int16_t{INT16_MAX}}) {
      expect_closes(request_frame(key, 0, {}), "api key " + std::to_string(key));
    }
  }

  void unsupported_versions() {
    // ApiVersions past v3: answered in v0 format with UNSUPPORTED_VERSION and
    // the list, as Kafka does, so that clients can fall back.
    {
      auto c = connect();
      ASSERT_TRUE(c->send_bytes(request_frame(18, 99, {0, 0, 0}, 11, /*flexible_header=*/true)));
      auto f = c->read_frame();
      if (!f) FAIL() << "ApiVersions v99 was not answered";
      Reader r(*f);
      EXPECT_EQ(r.i32(), 11);
      EXPECT_EQ(r.i16(), 35);  // UNSUPPORTED_VERSION
      EXPECT_GT(r.array_len(6), 0);
    }
    // Any other API at a version it does not advertise: the connection closes.
    expect_closes(request_frame(0, 99, {}), "Produce v99");
    expect_closes(request_frame(1, 3, {}), "Fetch v3");
    // Produce v0-2 are advertised (README "APIs") but a body that does not
    // decode still closes.
    expect_closes(request_frame(0, 2, {}), "truncated Produce v2 body");
    expect_closes(request_frame(1, -1, {}), "Fetch v-1");
    expect_closes(request_frame(3, 13, metadata_body(12, "t", false), 1, true), "Metadata v13");
    // A flexible version sent with a classic header and body: the header's
    // tagged fields and the compact fields do not decode.
    expect_closes(request_frame(3, 9, metadata_body(8, "t", false)), "Metadata v9 in the classic form");
  }

  void client_ids() {
    // Invalid UTF-8 in the client id is a client id: the request is served,
    // and where the broker echoes it (member ids, DescribeGroups) it is
    // made valid UTF-8 first.
    const std::string bad_id("cl\xff\xfe-\xc3", 6);
    auto c = connect();
    ASSERT_TRUE(c->send_bytes(frame_with_client_id(18, 0, bad_id, {}, 1)));
    auto api_versions = body_of(c->read_frame());
    if (!api_versions) FAIL() << "ApiVersions with a non-UTF-8 client id was not answered";
    ASSERT_TRUE(c->send_bytes(frame_with_client_id(11, 0, bad_id, join_group_body(0, "hostile-group"), 2)));
    auto join = body_of(c->read_frame());
    if (!join) FAIL() << "JoinGroup with a non-UTF-8 client id was not answered";
    Reader jr(*join);
    EXPECT_EQ(jr.i16(), 0);
    jr.i32();
    jr.string();
    jr.string();
    std::string member = jr.string();
    EXPECT_TRUE(is_utf8(member)) << "member id echoes the client id's bytes: " << excerpt(member);
    Writer describe;
    describe.array_len(1);
    describe.string("hostile-group");
    ASSERT_TRUE(c->send_bytes(frame_with_client_id(15, 0, bad_id, describe.take(), 3)));
    auto described = body_of(c->read_frame());
    if (!described) FAIL();
    Reader dr(*described);
    ASSERT_EQ(dr.array_len(), 1);
    EXPECT_EQ(dr.i16(), 0);
    dr.string();  // group id
    dr.string();  // state
    dr.string();  // protocol type
    dr.string();  // protocol
    ASSERT_EQ(dr.array_len(), 1);
    dr.string();  // member id
    std::string echoed = dr.string();
    EXPECT_TRUE(dr.ok());
    EXPECT_TRUE(is_utf8(echoed)) << "DescribeGroups echoes the client id's bytes: " << excerpt(echoed);

    // A client id whose length runs past the frame.
    Bytes past = frame_with_client_id(18, 0, std::string("x"), {});
    past[12] = 0x10;  // length 0x1001
    expect_closes(past, "client id length past the frame");
  }

  void topic_names() {
    auto c = connect();
    for (const auto& name : hostile_topic_names()) {
      SCOPED_TRACE("topic " + excerpt(name));
      // Metadata v4 with auto-create: INVALID_TOPIC_EXCEPTION, nothing created.
      auto md = c->call(3, 4, metadata_body(4, name, true));
      if (!md) FAIL() << "Metadata was not answered";
      Reader r(*md);
      r.i32();  // throttle
      for (int32_t n = r.array_len(), i = 0; i < n; ++i) {
        r.i32();
        r.string();
        r.i32();
        r.nullable_string();
      }
      r.nullable_string();  // cluster id
      r.i32();              // controller
      ASSERT_EQ(r.array_len(), 1);
      EXPECT_EQ(r.i16(), 17);  // INVALID_TOPIC_EXCEPTION
      std::string echoed = r.string();
      EXPECT_TRUE(r.ok());
      EXPECT_TRUE(is_utf8(echoed)) << "Metadata echoes the name's bytes";

      // CreateTopics v1: INVALID_TOPIC_EXCEPTION, and the message is UTF-8.
      Writer ct;
      ct.array_len(1);
      ct.string(name);
      ct.i32(1);
      ct.i16(1);
      ct.array_len(0);
      ct.array_len(0);
      ct.i32(5000);
      ct.boolean(false);
      auto created = c->call(19, 1, ct.take());
      if (!created) FAIL() << "CreateTopics was not answered";
      Reader cr(*created);
      ASSERT_EQ(cr.array_len(), 1);
      EXPECT_TRUE(is_utf8(cr.string())) << "CreateTopics echoes the name's bytes";
      EXPECT_EQ(cr.i16(), 17);
      auto message = cr.nullable_string();
      EXPECT_TRUE(cr.ok());
      if (!message) FAIL();
      EXPECT_TRUE(is_utf8(*message)) << "CreateTopics' error message quotes the name's bytes";
      EXPECT_LE(message->size(), 512u) << "CreateTopics' error message quotes the whole name";

      // Produce v7: the topic does not exist.
      auto produced = c->call(0, 7, produce_body(name, make_batch({{"x"}})));
      if (!produced) FAIL() << "Produce was not answered";
      Reader pr(*produced);
      ASSERT_EQ(pr.array_len(), 1);
      EXPECT_TRUE(is_utf8(pr.string())) << "Produce echoes the name's bytes";
      ASSERT_EQ(pr.array_len(), 1);
      pr.i32();
      int16_t err = pr.i16();
      EXPECT_TRUE(err == 3 || err == 17) << "Produce error " << err;
    }
    // Nothing was created, least of all outside the log directory.
    EXPECT_FALSE(fs::exists(dir_.path() / "data" / "escape-0"));
    EXPECT_TRUE(fs::is_empty(dir_.path() / "data" / "logs"));
  }

  void array_counts() {
    auto huge_count = [](auto before) {
      Writer w;
      before(w);
      w.i32(INT32_MAX);
      return w.take();
    };
    expect_closes(request_frame(3, 1, huge_count([](Writer&) {})), "Metadata topics INT32_MAX");
    expect_closes(request_frame(0, 7, huge_count([](Writer& w) {
                                  w.nullable_string(std::nullopt);
                                  w.i16(-1);
                                  w.i32(5000);
                                })),
                  "Produce topics INT32_MAX");
    expect_closes(request_frame(0, 7, huge_count([](Writer& w) {
                                  w.nullable_string(std::nullopt);
                                  w.i16(-1);
                                  w.i32(5000);
                                  w.array_len(1);
                                  w.string("t");
                                })),
                  "Produce partitions INT32_MAX");
    expect_closes(request_frame(19, 1, huge_count([](Writer&) {})), "CreateTopics topics INT32_MAX");
    expect_closes(request_frame(1, 4, huge_count([](Writer& w) {
                                  w.i32(-1);
                                  w.i32(0);
                                  w.i32(1);
                                  w.i32(1 << 20);
                                  w.i8(0);
                                })),
                  "Fetch topics INT32_MAX");
    expect_closes(request_frame(3, 1, be32(-2)), "Metadata topics -2");
  }

  void record_batches() {
    auto c = connect();
    ASSERT_TRUE(c->call(3, 4, metadata_body(4, "batches", true)).has_value());
    auto produce = [&](const Bytes& records) -> int16_t {
      auto resp = c->call(0, 7, produce_body("batches", records));
      if (!resp) return -100;
      Reader r(*resp);
      r.array_len();
      r.string();
      r.array_len();
      r.i32();
      return r.i16();
    };
    Bytes good = make_batch({{"hello"}});
    Bytes bad_crc = good;
    bad_crc[bad_crc.size() - 3] ^= 0x10;
    EXPECT_EQ(produce(bad_crc), 2);  // CORRUPT_MESSAGE
    Bytes longer = good;             // batchLength (at byte 8) claims 100 bytes more than sent
    auto set_length = [](Bytes& b, int32_t v) {
      Bytes len = be32(v);
      std::copy(len.begin(), len.end(), b.begin() + 8);
    };
    set_length(longer, static_cast<int32_t>(good.size() - 12 + 100));
    EXPECT_NE(produce(longer), 0) << "a batch longer than its record set was accepted";
    Bytes shorter = good;
    set_length(shorter, static_cast<int32_t>(good.size() - 12 - 10));
    EXPECT_NE(produce(shorter), 0) << "a batch shorter than its record set was accepted";
    Bytes negative = good;
    set_length(negative, -1);
    EXPECT_NE(produce(negative), 0);
    // The records' own length running past the frame closes the connection.
    Bytes past = request_frame(0, 7, produce_body("batches", good));
    Bytes len = be32(1 << 30);
    std::copy(len.begin(), len.end(), past.end() - static_cast<ptrdiff_t>(good.size()) - 4);
    expect_closes(past, "records length past the frame");
    // None of them was stored: a good batch lands at offset 0.
    auto ok = c->call(0, 7, produce_body("batches", good));
    if (!ok) FAIL();
    Reader r(*ok);
    r.array_len();
    r.string();
    r.array_len();
    r.i32();
    EXPECT_EQ(r.i16(), 0);
    EXPECT_EQ(r.i64(), 0);
  }

  void slow_frame() {
    // One byte every 50 ms, whole within the read timeout: answered.
    auto c = connect();
    Bytes frame = request_frame(18, 0, {}, 21);
    for (uint8_t b : frame) {
      ASSERT_TRUE(c->send_bytes({b}));
      std::this_thread::sleep_for(50ms);  // the pace is the input, not a wait
    }
    auto f = c->read_frame();
    if (!f) FAIL() << "a slow but timely request was not answered";
    EXPECT_EQ(load_be32(f->data()), 21);
  }

  void slow_loris() {
    // One byte every 50 ms of a 1000-byte frame would take 50 s: the read
    // timeout closes the connection first.
    auto c = connect();
    Bytes frame = request_frame(18, 0, Bytes(978, 0));
    size_t sent = 0;
    bool closed = false;
    while (sent < frame.size() && !closed) {
      if (!c->send_bytes({frame[sent]})) break;
      ++sent;
      closed = c->closed_by_peer(50);
    }
    EXPECT_TRUE(closed || sent < frame.size()) << "the slow frame was read whole";
    EXPECT_LT(sent * 50, static_cast<size_t>(kReadTimeoutMs) * 3) << "closed only after " << sent << " bytes";
  }

  void expect_serving() {
    ASSERT_TRUE(broker_.alive()) << broker_.log();
    auto c = connect();
    auto resp = c->call(18, 0, {});
    if (!resp) FAIL() << "ApiVersions on a new connection was not answered";
    Reader r(*resp);
    EXPECT_EQ(r.i16(), 0);
  }
};

TEST_F(Hostile, TheCorpusClosesOnlyItsOwnConnectionsAndARoundTripThenWorksBesideAThousandIdleConnections) {
  // Given 1000 connections that connect and never send anything
  const size_t before = open_descriptors();
  std::vector<std::unique_ptr<RawClient>> idle;
  idle.reserve(kIdleConnections);
  for (int i = 0; i < kIdleConnections; ++i) idle.push_back(connect());
  auto all_accepted = [&] { return open_descriptors() >= before + kIdleConnections; };
  for (int i = 0; i < 1000 && !all_accepted(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(all_accepted()) << "the broker did not accept them all";

  // When the corpus is aimed at the broker beside them
  const std::pair<const char*, std::function<void()>> steps[] = {
      {"frame sizes", [this] { frame_sizes(); }},
      {"truncated frames, then close", [this] { truncated_frames_then_close(); }},
      {"random bytes", [this] { random_bytes(); }},
      {"unknown api keys", [this] { unknown_api_keys(); }},
      {"unsupported versions", [this] { unsupported_versions(); }},
      {"client ids", [this] { client_ids(); }},
      {"topic names", [this] { topic_names(); }},
      {"array counts", [this] { array_counts(); }},
      {"record batches", [this] { record_batches(); }},
      {"slow frame", [this] { slow_frame(); }},
      {"slow loris", [this] { slow_loris(); }},
  };
  for (const auto& [name, step] : steps) {
    SCOPED_TRACE(name);
    step();
    expect_serving();
    ASSERT_TRUE(broker_.alive()) << "after " << name << ": " << broker_.log();
  }

  // Then a librdkafka producer and consumer round-trip 100 messages through a new topic
  {
    Producer producer(broker_.bootstrap(), {{"enable.idempotence", "true"}, {"acks", "all"}, {"linger.ms", "5"}});
    for (int i = 0; i < 100; ++i) producer.produce("after-hostile", "m" + std::to_string(i));
    ASSERT_TRUE(producer.flush()) << broker_.log();
    for (const auto& d : producer.deliveries()) ASSERT_EQ(d.err, RD_KAFKA_RESP_ERR_NO_ERROR);
    Consumer consumer(broker_.bootstrap(), {{"group.id", "after-hostile"}});
    consumer.assign("after-hostile", 1);
    auto got = consumer.consume(100, 20s);
    ASSERT_EQ(got.size(), 100u);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(got[static_cast<size_t>(i)].value, "m" + std::to_string(i));
  }
  // And the idle connections were left alone (the idle timeout is 10 minutes)
  size_t closed = 0;
  for (auto& c : idle) closed += c->closed_by_peer(0) ? 1 : 0;
  EXPECT_EQ(closed, 0u);
  EXPECT_TRUE(broker_.alive());
}

}  // namespace
}  // namespace starling::broker::testing
