// Integration tests of the broker's resource limits (README "Limits"): a real
// starling-broker, raw sockets, and low descriptor limits.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <thread>

#include "services/broker/messages.h"
#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/raw_client.h"
#include "tests/services/broker/request_bodies.h"
#include "tests/services/broker/test_batches.h"

namespace starling::broker::testing {
namespace {

struct FetchedPartition {
  int16_t error = -1;
  int64_t high_watermark = -1;
  Bytes records;
};

/// The one partition of a Fetch v11 response body (after the correlation id).
FetchedPartition parse_fetch_v11(const Bytes& body) {
  FetchedPartition out;
  Reader r(body);
  r.i32();  // throttle
  r.i16();  // error
  r.i32();  // session id
  if (r.array_len() != 1) return out;
  r.string();
  if (r.array_len() != 1) return out;
  r.i32();
  out.error = r.i16();
  out.high_watermark = r.i64();
  r.i64();  // last stable offset
  r.i64();  // log start offset
  r.array_len();
  r.i32();  // preferred read replica
  auto records = r.nullable_bytes();
  if (records) out.records.assign(records->begin(), records->end());
  return out;
}

/// Error code and base offset of the one partition of a Produce v7 response body.
std::pair<int16_t, int64_t> parse_produce(const Bytes& body) {
  Reader r(body);
  r.array_len();
  r.string();
  r.array_len();
  r.i32();
  int16_t err = r.i16();
  int64_t offset = r.i64();
  return {err, offset};
}

std::string segment_name(int64_t base_offset) {
  char name[32];
  std::snprintf(name, sizeof name, "%020lld.log", static_cast<long long>(base_offset));
  return name;
}

TEST(Limits, RestartWithAThousandSegmentsUnderUlimit256ServesTheOldestData) {
  // Given a topic whose partition holds 1000 segments of one batch each
  // (written as files: the same bytes the broker writes, base offsets
  // rewritten, which the CRC does not cover)
  TempDir dir;
  {
    BrokerProcess broker(dir.path(), {"--partitions", "1"});
    RawClient c(broker.port());
    ASSERT_TRUE(c.call(3, 4, metadata_body(4, "many", true)).has_value());
    ASSERT_EQ(broker.stop(), 0);
  }
  fs::path part = dir.path() / "data" / "logs" / "many-0";
  ASSERT_TRUE(fs::exists(part));
  for (const auto& e : fs::directory_iterator(part)) fs::remove(e.path());
  constexpr int kSegments = 1000;
  for (int i = 0; i < kSegments; ++i) {
    Bytes batch = make_batch({{"segment-" + std::to_string(i)}});
    store_be64(batch.data(), i);
    std::ofstream f(part / segment_name(i), std::ios::binary);
    f.write(reinterpret_cast<const char*>(batch.data()), static_cast<std::streamsize>(batch.size()));
  }
  // When the broker restarts with at most 256 open descriptors
  // (BrokerProcess throws with the broker's log if it exits instead)
  BrokerProcess broker(dir.path(), {"--partitions", "1", "--segment-bytes", "1024"}, 256);
  // Then it serves Metadata, a Fetch of the oldest segment and a Produce
  RawClient c(broker.port());
  ASSERT_TRUE(c.call(3, 4, metadata_body(4, "many", false)).has_value());
  auto fetched = c.call(1, 11, fetch_body(11, "many", 0));
  ASSERT_TRUE(fetched.has_value()) << broker.log();
  auto p = parse_fetch_v11(*fetched);
  EXPECT_EQ(p.error, 0);
  EXPECT_EQ(p.high_watermark, kSegments);
  auto h = parse_batch_header(p.records);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->base_offset, 0);
  EXPECT_TRUE(batch_crc_ok(ByteView(p.records).subspan(0, h->total_size())));
  std::string want = "segment-0";
  EXPECT_NE(std::search(p.records.begin(), p.records.end(), want.begin(), want.end()), p.records.end());
  // Every segment is read (one by one, through the bounded cache of open files).
  for (int64_t offset = 1; offset < kSegments; offset += 37) {
    auto f = c.call(1, 11, fetch_body(11, "many", offset));
    ASSERT_TRUE(f.has_value());
    auto fp = parse_fetch_v11(*f);
    ASSERT_EQ(fp.error, 0) << "offset " << offset;
    auto fh = parse_batch_header(fp.records);
    ASSERT_TRUE(fh.has_value()) << "offset " << offset;
    EXPECT_EQ(fh->base_offset, offset);
  }
  auto produced = c.call(0, 7, produce_body("many", make_batch({{"after restart"}})));
  ASSERT_TRUE(produced.has_value());
  EXPECT_EQ(parse_produce(*produced), std::make_pair(int16_t{0}, int64_t{kSegments}));
  EXPECT_TRUE(broker.alive());
}

size_t count_lines_containing(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (const auto& l : lines(text)) n += l.find(needle) != std::string::npos ? 1 : 0;
  return n;
}

TEST(Limits, OutOfDescriptorsInAcceptBacksOffServesOpenConnectionsAndRecovers) {
#if defined(__SANITIZE_ADDRESS__)
  // UBSan's vptr check (dev preset) verifies each new object type by writing
  // to a pipe and reports any virtual call at EMFILE as an invalid vptr, so a
  // sanitized broker dies of its sanitizer here. Run in the release preset.
  GTEST_SKIP() << "sanitizers need descriptors of their own at EMFILE";
#endif
  // Given a broker limited to 64 descriptors and more clients than that
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--partitions", "1"}, 64);
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < 100; ++i) clients.push_back(std::make_unique<RawClient>(broker.port()));
  // When accept has failed with EMFILE for a while (the first client was
  // accepted: it gets an answer once the broker reached the connections
  // behind it, so the broker has seen all of them by then)
  auto api_versions_ok = [](RawClient& c) {
    auto resp = c.call(18, 0, {});
    return resp.has_value() && Reader(*resp).i16() == 0;
  };
  ASSERT_TRUE(api_versions_ok(*clients.front())) << broker.log();
  for (int i = 0; i < 20 && count_lines_containing(broker.log(), "accept failed") == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_GT(count_lines_containing(broker.log(), "accept failed"), 0u) << "no EMFILE: " << broker.log();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  // Then it did not spin logging the failure (one line a second), and it
  // still serves the connections it has
  EXPECT_LT(count_lines_containing(broker.log(), "accept failed"), 10u);
  EXPECT_TRUE(api_versions_ok(*clients.front()));
  // And once clients go away, new connections are served again
  clients.clear();
  RawClient late(broker.port());
  EXPECT_TRUE(api_versions_ok(late)) << broker.log().substr(0, 4000);
  EXPECT_TRUE(broker.alive());
}

}  // namespace
}  // namespace starling::broker::testing
