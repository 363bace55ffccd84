// The Broker in-process: requests through Broker::handle() on an io_context
// the test polls, with a temporary data directory.
#include "services/broker/broker.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <optional>

#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/request_bodies.h"
#include "tests/services/broker/test_batches.h"

namespace starling::broker {
namespace {

using testing::make_batch;
using testing::metadata_body;
using testing::produce_body;
using testing::TempDir;

/// A request frame (without its size): header v1, then `body`.
Bytes request(int16_t api_key, int16_t version, int32_t correlation_id, const Bytes& body) {
  Writer w;
  w.i16(api_key);
  w.i16(version);
  w.i32(correlation_id);
  w.nullable_string(std::string("broker-test"));
  w.raw(body.data(), body.size());
  return w.take();
}

/// Fetch v11 of partitions 0..n-1 of `topic` from offset 0.
Bytes fetch_all_partitions(const std::string& topic, int32_t n, int32_t max_wait_ms, int32_t min_bytes) {
  Writer w;
  w.i32(-1);
  w.i32(max_wait_ms);
  w.i32(min_bytes);
  w.i32(1 << 20);
  w.i8(0);
  w.i32(0);
  w.i32(-1);
  w.array_len(1);
  w.string(topic);
  w.array_len(n);
  for (int32_t p = 0; p < n; ++p) {
    w.i32(p);
    w.i32(-1);  // current leader epoch
    w.i64(0);   // fetch offset
    w.i64(-1);  // log start offset
    w.i32(1 << 20);
  }
  w.array_len(0);
  w.string("rack");
  return w.take();
}

class InProcessBroker {
 public:
  explicit InProcessBroker(int32_t partitions) {
    BrokerConfig config;
    config.data_dir = dir_.path() / "data";
    config.default_partitions = partitions;
    // Interval flush: appends are visible, and wake fetches, at once.
    config.flush_interval_ms = 60'000;
    broker_ = std::make_unique<Broker>(io_.get_executor(), config);
  }
  /// Starts a request; `out` gets the reply when it completes (see run()).
  void start(Bytes frame, std::optional<Result<Reply>>& out) {
    asio::co_spawn(
        io_,
        [this, frame = std::move(frame), &out]() mutable -> asio::awaitable<void> {
          out = co_await broker_->handle(std::move(frame), "test");
        },
        asio::detached);
    run();
  }
  Result<Reply> call(Bytes frame) {
    std::optional<Result<Reply>> out;
    start(std::move(frame), out);
    EXPECT_TRUE(out.has_value());
    return out ? std::move(*out) : fail(ErrorCode::kUnknownServerError, "no reply");
  }
  void run() {
    io_.restart();
    io_.poll();
  }
  Broker& broker() { return *broker_; }

 private:
  TempDir dir_;
  asio::io_context io_;
  std::unique_ptr<Broker> broker_;
};

TEST(Broker, AParkedFetchWokenByAppendsRereadsOnlyThePartitionsThatGrew) {
  constexpr int32_t kPartitions = 8;
  InProcessBroker b(kPartitions);
  ASSERT_TRUE(b.call(request(3, 4, 1, metadata_body(4, "wide", true))).has_value());
  ASSERT_NE(b.broker().log("wide", kPartitions - 1), nullptr);
  // Given a fetch of 8 empty partitions parked until 4000 bytes arrive
  std::optional<Result<Reply>> fetched;
  b.start(request(1, 11, 2, fetch_all_partitions("wide", kPartitions, 600'000, 4000)), fetched);
  ASSERT_FALSE(fetched.has_value());
  uint64_t reads_at_park = b.broker().fetch_partition_reads();
  EXPECT_EQ(reads_at_park, static_cast<uint64_t>(kPartitions));
  // When 20 small appends to partition 0 wake it 20 times
  constexpr int kWakes = 20;
  for (int i = 0; i < kWakes; ++i) {
    ASSERT_TRUE(b.call(request(0, 7, 10 + i, produce_body("wide", make_batch({{"small"}})))).has_value());
    ASSERT_FALSE(fetched.has_value()) << "woken " << i;
  }
  // Then each wake re-read partition 0 only, not the 7 that did not move
  EXPECT_EQ(b.broker().fetch_partition_reads() - reads_at_park, static_cast<uint64_t>(kWakes));
  // And once enough arrived, the reply carries every batch of partition 0
  ASSERT_TRUE(b.call(request(0, 7, 99, produce_body("wide", make_batch({{std::string(5000, 'x')}})))).has_value());
  ASSERT_TRUE(fetched.has_value());
  ASSERT_TRUE(fetched->has_value());
  Bytes frame;
  for (const auto& part : (*fetched)->buffers) frame.insert(frame.end(), part.begin(), part.end());
  Reader r(frame);
  r.i32();  // size
  EXPECT_EQ(r.i32(), 2);
  r.i32();
  EXPECT_EQ(r.i16(), 0);
  r.i32();
  ASSERT_EQ(r.array_len(), 1);
  EXPECT_EQ(r.string(), "wide");
  ASSERT_EQ(r.array_len(), kPartitions);
  EXPECT_EQ(r.i32(), 0);
  EXPECT_EQ(r.i16(), 0);
  EXPECT_EQ(r.i64(), kWakes + 1);  // high watermark
  r.i64();
  r.i64();
  r.array_len();
  r.i32();
  auto records = r.nullable_bytes();
  ASSERT_TRUE(records.has_value());
  int batches = 0;
  size_t pos = 0;
  while (pos < records->size()) {
    auto h = parse_batch_header(records->subspan(pos));
    ASSERT_TRUE(h.has_value());
    EXPECT_EQ(h->base_offset, batches);
    ++batches;
    pos += h->total_size();
  }
  EXPECT_EQ(batches, kWakes + 1);
  for (int32_t p = 1; p < kPartitions; ++p) {
    EXPECT_EQ(r.i32(), p);
    EXPECT_EQ(r.i16(), 0);
    EXPECT_EQ(r.i64(), 0);
    r.i64();
    r.i64();
    r.array_len();
    r.i32();
    auto empty = r.nullable_bytes();
    ASSERT_TRUE(empty.has_value());
    EXPECT_TRUE(empty->empty());
  }
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.remaining(), 0u);
}

}  // namespace
}  // namespace starling::broker
