#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "services/broker/partition_log.h"
#include "services/broker/producer_state.h"
#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/test_batches.h"

namespace starling::broker {
namespace {

namespace fs = std::filesystem;
using testing::BatchSpec;
using testing::make_batch;
using testing::TempDir;

Result<PartitionLog::AppendResult> append(PartitionLog& log, const Bytes& batch) {
  auto batches = validate_record_set(batch, 1 << 20);
  if (!batches) return std::unexpected(batches.error());
  return log.append(batch, *batches);
}

/// The code a result failed with, or kNone when it succeeded, so that a check
/// never reads the error of a success.
template <class T>
ErrorCode code_of(const Result<T>& r) {
  return r ? ErrorCode::kNone : r.error().code;
}

/// The offset ListOffsets would answer for `ts` (-1: none, -2: an error).
int64_t offset_at(const PartitionLog& log, int64_t ts) {
  auto r = log.offset_for_timestamp(ts);
  return r ? r->offset : -2;
}

std::vector<int64_t> base_offsets(const Bytes& records) {
  std::vector<int64_t> out;
  size_t pos = 0;
  while (pos < records.size()) {
    auto h = parse_batch_header(ByteView(records).subspan(pos));
    if (!h) break;
    EXPECT_TRUE(batch_crc_ok(ByteView(records).subspan(pos, h->total_size())));
    out.push_back(h->base_offset);
    pos += h->total_size();
  }
  return out;
}

TEST(PartitionLog, AssignsConsecutiveOffsetsAndReadsWholeBatches) {
  TempDir dir;
  auto log = PartitionLog::open(dir.path() / "t-0", {});
  EXPECT_EQ(append(*log, make_batch({{"a", "b"}}))->base_offset, 0);
  EXPECT_EQ(append(*log, make_batch({{"c"}}))->base_offset, 2);
  EXPECT_EQ(append(*log, make_batch({{"d", "e", "f"}}))->base_offset, 3);
  EXPECT_EQ(log->log_end_offset(), 6);
  auto all = log->read(0, 1 << 20);
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(base_offsets(all->records), (std::vector<int64_t>{0, 2, 3}));
  // Reading from inside a batch starts at that batch.
  EXPECT_EQ(base_offsets(log->read(4, 1 << 20)->records), (std::vector<int64_t>{3}));
  // A tiny max_bytes still returns the first whole batch.
  EXPECT_EQ(base_offsets(log->read(0, 10)->records), (std::vector<int64_t>{0}));
  EXPECT_TRUE(log->read(6, 100)->records.empty());
  EXPECT_EQ(code_of(log->read(7, 100)), ErrorCode::kOffsetOutOfRange);
}

TEST(PartitionLog, TornTailIsTruncatedAtReopenAndAppendsContinue) {
  TempDir dir;
  fs::path p = dir.path() / "t-0";
  {
    auto log = PartitionLog::open(p, {});
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(append(*log, make_batch({{"x", "y"}})).has_value());
  }
  // Given a crash in the middle of writing a fourth batch
  auto batch = make_batch({{"torn"}});
  {
    std::ofstream f(p / segment_file_name(0), std::ios::app | std::ios::binary);
    f.write(reinterpret_cast<const char*>(batch.data()), static_cast<std::streamsize>(batch.size() / 2));
  }
  // When the log is reopened
  auto log = PartitionLog::open(p, {});
  // Then the partial batch is gone and the log continues at offset 6
  EXPECT_EQ(log->truncated_bytes_at_open(), batch.size() / 2);
  EXPECT_EQ(log->log_end_offset(), 6);
  EXPECT_EQ(append(*log, make_batch({{"next"}}))->base_offset, 6);
  EXPECT_EQ(base_offsets(log->read(0, 1 << 20)->records), (std::vector<int64_t>{0, 2, 4, 6}));
}

TEST(PartitionLog, CorruptLastBatchIsTruncatedAtReopen) {
  TempDir dir;
  fs::path p = dir.path() / "t-0";
  uint64_t size_after_two = 0;
  {
    auto log = PartitionLog::open(p, {});
    ASSERT_TRUE(append(*log, make_batch({{"a"}})).has_value());
    ASSERT_TRUE(append(*log, make_batch({{"b"}})).has_value());
    size_after_two = log->size_bytes();
    ASSERT_TRUE(append(*log, make_batch({{"c"}})).has_value());
  }
  // Flip a byte in the payload of the last batch (a bad sector / partial page).
  int fd = ::open((p / segment_file_name(0)).c_str(), O_RDWR);
  off_t end = ::lseek(fd, 0, SEEK_END);
  uint8_t b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, end - 2), 1);
  b ^= 0xff;
  ASSERT_EQ(::pwrite(fd, &b, 1, end - 2), 1);
  ::close(fd);
  auto log = PartitionLog::open(p, {});
  EXPECT_EQ(log->log_end_offset(), 2);
  EXPECT_EQ(log->size_bytes(), size_after_two);
}

TEST(PartitionLog, RollsSegmentsAndRetentionByBytesDeletesTheOldest) {
  TempDir dir;
  LogConfig cfg;
  cfg.segment_bytes = 1024;
  cfg.retention_bytes = 2048;
  auto log = PartitionLog::open(dir.path() / "t-0", cfg);
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(append(*log, make_batch({{std::string(200, 'x')}})).has_value());
  EXPECT_GT(log->segment_count(), 5u);
  size_t deleted = log->apply_retention(0);
  EXPECT_GT(deleted, 0u);
  EXPECT_LE(log->size_bytes(), 2048u + 1024u);
  EXPECT_GT(log->log_start_offset(), 0);
  EXPECT_EQ(code_of(log->read(0, 100)), ErrorCode::kOffsetOutOfRange);
  EXPECT_EQ(base_offsets(log->read(log->log_start_offset(), 300)->records).front(), log->log_start_offset());
  // Reads span segments.
  EXPECT_GT(base_offsets(log->read(log->log_start_offset(), 1 << 20)->records).size(), 5u);
  // Log start offset survives a reopen.
  int64_t start = log->log_start_offset();
  log.reset();
  log = PartitionLog::open(dir.path() / "t-0", cfg);
  EXPECT_EQ(log->log_start_offset(), start);
  EXPECT_EQ(log->log_end_offset(), 40);
}

TEST(PartitionLog, RetentionByTimeDeletesExpiredClosedSegments) {
  TempDir dir;
  LogConfig cfg;
  cfg.segment_bytes = 300;
  cfg.retention_ms = 1000;
  auto log = PartitionLog::open(dir.path() / "t-0", cfg);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(append(*log, make_batch({{std::string(200, 'x')}, 1000 + i})).has_value());
  // Appended "now", so nothing expires until the clock moves on.
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
                 .count();
  EXPECT_EQ(log->apply_retention(now), 0u);
  EXPECT_EQ(log->apply_retention(now + 10'000), 4u);  // the active segment stays
  EXPECT_EQ(log->log_start_offset(), 4);
}

TEST(PartitionLog, OffsetForTimestampFindsFirstBatchWithMaxTimestampAtLeastT) {
  TempDir dir;
  LogConfig cfg;
  cfg.segment_bytes = 500;
  cfg.index_interval_bytes = 100;
  auto log = PartitionLog::open(dir.path() / "t-0", cfg);
  for (int i = 0; i < 30; ++i)
    ASSERT_TRUE(append(*log, make_batch({{std::string(50, 'x')}, 1000 + 10 * i})).has_value());
  EXPECT_EQ(offset_at(*log, 0), 0);
  EXPECT_EQ(offset_at(*log, 1000), 0);
  EXPECT_EQ(offset_at(*log, 1001), 1);
  EXPECT_EQ(offset_at(*log, 1150), 15);
  EXPECT_EQ(offset_at(*log, 1290), 29);
  EXPECT_EQ(offset_at(*log, 1291), -1);
}

TEST(PartitionLog, OffsetForTimestampFindsTheFirstRecordAtOrAfterTInsideABatch) {
  TempDir dir;
  auto log = PartitionLog::open(dir.path() / "t-0", {});
  // Given offset 0 stamped 100, then one batch of offsets 1-4 whose records
  // are stamped out of order: 300, 200, 500, 400
  ASSERT_TRUE(append(*log, make_batch({{"a"}, 100})).has_value());
  ASSERT_TRUE(append(*log, make_batch({.values = {"b", "c", "d", "e"}, .record_timestamps = {300, 200, 500, 400}}))
                  .has_value());
  auto at = [&](int64_t ts) {
    auto r = log->offset_for_timestamp(ts);
    EXPECT_TRUE(r.has_value());
    return r ? std::pair{r->offset, r->timestamp} : std::pair{int64_t{-2}, int64_t{-2}};
  };
  // Then the answer is the first record in offset order stamped >= t, with its own timestamp
  EXPECT_EQ(at(100), (std::pair<int64_t, int64_t>{0, 100}));
  EXPECT_EQ(at(101), (std::pair<int64_t, int64_t>{1, 300}));
  EXPECT_EQ(at(300), (std::pair<int64_t, int64_t>{1, 300}));
  EXPECT_EQ(at(301), (std::pair<int64_t, int64_t>{3, 500}));
  EXPECT_EQ(at(450), (std::pair<int64_t, int64_t>{3, 500}));
  EXPECT_EQ(at(501), (std::pair<int64_t, int64_t>{-1, -1}));
}

TEST(PartitionLog, OffsetForTimestampTakesALogAppendTimeBatchsTimeForEveryRecord) {
  TempDir dir;
  auto log = PartitionLog::open(dir.path() / "t-0", {});
  // Given a LogAppendTime batch appended at 5000 whose records were created at 1000-1200
  ASSERT_TRUE(
      append(*log,
             make_batch({.values = {"a", "b", "c"}, .record_timestamps = {1000, 1100, 1200}, .log_append_time = 5000}))
          .has_value());
  // Then every record counts as stamped 5000, so any t up to 5000 is its first record
  for (int64_t t : {0, 1100, 1150, 5000}) {
    auto r = log->offset_for_timestamp(t);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->offset, 0) << t;
    EXPECT_EQ(r->timestamp, 5000) << t;
  }
  EXPECT_EQ(offset_at(*log, 5001), -1);
}

TEST(PartitionLog, OffsetForTimestampSeesOnlyDataBelowTheHighWatermark) {
  TempDir dir;
  LogConfig cfg;
  cfg.sync = LogConfig::Sync::kDeferred;
  auto log = PartitionLog::open(dir.path() / "t-0", cfg);
  ASSERT_TRUE(append(*log, make_batch({{"a"}, 100})).has_value());
  ASSERT_TRUE(append(*log, make_batch({{"b"}, 200})).has_value());
  log->mark_durable(1);
  // Offset 1 is written but not yet durable, so not readable: not an answer yet
  EXPECT_EQ(offset_at(*log, 150), -1);
  log->mark_durable(2);
  EXPECT_EQ(offset_at(*log, 150), 1);
}

TEST(PartitionLog, OffsetForTimestampFallsBackToTheBatchStartWhenItsRecordsDoNotDecode) {
  TempDir dir;
  auto log = PartitionLog::open(dir.path() / "t-0", {});
  ASSERT_TRUE(append(*log, make_batch({{"a"}, 100})).has_value());
  // Given a batch whose header is sound (CRC included) but whose first record
  // claims to be longer than the batch
  Bytes bad = make_batch({.values = {"b", "c"}, .record_timestamps = {200, 300}});
  bad[batch_layout::kHeaderSize] = 0x7e;  // zigzag varint 63
  store_be32(bad.data() + batch_layout::kCrc, static_cast<int32_t>(crc32c(bad.data() + batch_layout::kAttributes,
                                                                          bad.size() - batch_layout::kAttributes)));
  ASSERT_TRUE(append(*log, bad).has_value());
  // Then the lookup answers the batch's first offset (at or before the exact
  // one), without reading past it
  auto r = log->offset_for_timestamp(250);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->offset, 1);
  EXPECT_EQ(r->timestamp, 200);
}

TEST(RecordBatch, FindRecordAtOrAfterSurvivesEveryTruncationAndRandomRecords) {
  Bytes batch = make_batch({.values = {"one", "two", "three"}, .record_timestamps = {10, 20, 30}});
  auto ok = find_record_at_or_after(batch, 25);
  ASSERT_TRUE(ok.has_value());
  ASSERT_TRUE(ok->has_value());
  EXPECT_EQ((*ok)->offset, 2);
  for (size_t n = 0; n < batch.size(); ++n) {
    // A batch cut short is an error, never a read past its end
    EXPECT_FALSE(find_record_at_or_after(ByteView(batch).first(n), 25).has_value()) << n;
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    Bytes b = batch;
    for (size_t p = batch_layout::kHeaderSize; p < b.size(); ++p) b[p] = static_cast<uint8_t>(rng());
    auto r = find_record_at_or_after(b, 25);
    if (r && *r) {
      EXPECT_GE((*r)->offset, 0);
      EXPECT_LE((*r)->offset, 2);
    }
  }
}

size_t open_descriptors() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

TEST(PartitionLog, ClosedSegmentsAreReadThroughABoundedCacheOfDescriptors) {
  TempDir dir;
  LogConfig cfg;
  cfg.segment_bytes = 100;  // one batch per segment
  cfg.files = std::make_shared<FileCache>(8);
  {
    auto log = PartitionLog::open(dir.path() / "t-0", cfg);
    for (int i = 0; i < 300; ++i) ASSERT_TRUE(append(*log, make_batch({{"v" + std::to_string(i)}})).has_value());
    ASSERT_EQ(log->segment_count(), 300u);
  }
  // Given a reopened log of 300 segments
  size_t before = open_descriptors();
  auto log = PartitionLog::open(dir.path() / "t-0", cfg);
  // Then only the active segment is open
  EXPECT_EQ(open_descriptors(), before + 1);
  // When every offset is read, one segment at a time and across segments
  for (int64_t o = 0; o < 300; ++o) {
    auto rd = log->read(o, 1);
    ASSERT_TRUE(rd.has_value()) << o;
    EXPECT_EQ(base_offsets(rd->records), (std::vector<int64_t>{o}));
  }
  EXPECT_EQ(base_offsets(log->read(0, 1 << 20)->records).size(), 300u);
  EXPECT_EQ(offset_at(*log, 0), 0);
  // Then at most the cache's 8 closed segments are open besides the active one
  EXPECT_LE(cfg.files->size(), 8u);
  EXPECT_LE(open_descriptors(), before + 1 + 8);
  // And retention closes what it deletes
  LogConfig keep_one = cfg;
  keep_one.retention_bytes = 0;
  log.reset();
  EXPECT_EQ(cfg.files->size(), 0u);  // a closed log leaves nothing in the cache
  log = PartitionLog::open(dir.path() / "t-0", keep_one);
  ASSERT_TRUE(log->read(0, 1).has_value());
  EXPECT_EQ(log->apply_retention(0), 299u);
  EXPECT_EQ(cfg.files->size(), 0u);
  EXPECT_EQ(open_descriptors(), before + 1);
}

TEST(PartitionLog, DeferredSyncKeepsAClosedSegmentsWriteDescriptorUntilItIsDurable) {
  TempDir dir;
  LogConfig cfg;
  cfg.sync = LogConfig::Sync::kDeferred;
  cfg.segment_bytes = 100;
  auto log = PartitionLog::open(dir.path() / "t-0", cfg);
  size_t before = open_descriptors();
  // Given two appends not yet durable, the second rolling to a new segment
  ASSERT_TRUE(append(*log, make_batch({{"a"}})).has_value());
  ASSERT_TRUE(append(*log, make_batch({{"b"}})).has_value());
  ASSERT_EQ(log->segment_count(), 2u);
  // Then the flusher is handed both segments' (open) descriptors
  auto fds = log->unsynced_fds();
  ASSERT_EQ(fds.size(), 2u);
  for (int fd : fds) EXPECT_EQ(::fdatasync(fd), 0);
  EXPECT_EQ(open_descriptors(), before + 1);
  // And once durable, the closed segment gives its descriptor up
  log->mark_durable(2);
  EXPECT_EQ(log->high_watermark(), 2);
  EXPECT_EQ(open_descriptors(), before);
  EXPECT_EQ(log->unsynced_fds().size(), 1u);
  EXPECT_EQ(base_offsets(log->read(0, 1 << 20)->records), (std::vector<int64_t>{0, 1}));
}

BatchSpec idem(int64_t pid, int16_t epoch, int32_t seq, int n = 1) {
  BatchSpec s;
  s.values.assign(static_cast<size_t>(n), "v");
  s.producer_id = pid;
  s.producer_epoch = epoch;
  s.base_sequence = seq;
  return s;
}

TEST(Idempotence, RetriedBatchIsAcknowledgedWithItsOriginalOffsetAndStoredOnce) {
  TempDir dir;
  auto log = PartitionLog::open(dir.path() / "t-0", {});
  auto first = make_batch(idem(7, 0, 0, 2));
  EXPECT_EQ(append(*log, first)->base_offset, 0);
  EXPECT_EQ(append(*log, make_batch(idem(7, 0, 2, 3)))->base_offset, 2);
  auto retry = append(*log, first);
  ASSERT_TRUE(retry.has_value());
  EXPECT_TRUE(retry->duplicate);
  EXPECT_EQ(retry->base_offset, 0);
  EXPECT_EQ(log->log_end_offset(), 5);
}

TEST(Idempotence, SequenceGapIsOutOfOrder) {
  TempDir dir;
  auto log = PartitionLog::open(dir.path() / "t-0", {});
  ASSERT_TRUE(append(*log, make_batch(idem(7, 0, 0))).has_value());
  EXPECT_EQ(code_of(append(*log, make_batch(idem(7, 0, 5)))), ErrorCode::kOutOfOrderSequenceNumber);
  EXPECT_EQ(log->log_end_offset(), 1);
}

TEST(Idempotence, StaleEpochIsFencedAndNewEpochMustStartAtZero) {
  TempDir dir;
  auto log = PartitionLog::open(dir.path() / "t-0", {});
  ASSERT_TRUE(append(*log, make_batch(idem(7, 3, 0))).has_value());
  EXPECT_EQ(code_of(append(*log, make_batch(idem(7, 2, 1)))), ErrorCode::kInvalidProducerEpoch);
  EXPECT_EQ(code_of(append(*log, make_batch(idem(7, 4, 1)))), ErrorCode::kOutOfOrderSequenceNumber);
  EXPECT_TRUE(append(*log, make_batch(idem(7, 4, 0))).has_value());
}

TEST(Idempotence, OnlyTheLastFiveBatchesAreRemembered) {
  ProducerStateTable table;
  for (int i = 0; i < 7; ++i) {
    auto b = make_batch(idem(1, 0, i));
    table.record(*parse_batch_header(b), i);
  }
  EXPECT_EQ(table.find(1)->batches.size(), ProducerStateTable::kCachedBatches);
  auto recent = make_batch(idem(1, 0, 3));
  EXPECT_TRUE(table.check(*parse_batch_header(recent))->duplicate);
  // Sequence 1 fell out of the cache, so it is now simply out of order.
  auto old = make_batch(idem(1, 0, 1));
  EXPECT_EQ(code_of(table.check(*parse_batch_header(old))), ErrorCode::kOutOfOrderSequenceNumber);
}

TEST(Idempotence, ProducerStateIsRebuiltFromTheLogAfterRestart) {
  TempDir dir;
  auto first = make_batch(idem(9, 1, 0, 4));
  {
    auto log = PartitionLog::open(dir.path() / "t-0", {});
    ASSERT_TRUE(append(*log, make_batch({{"plain"}})).has_value());
    ASSERT_TRUE(append(*log, first).has_value());
  }
  auto log = PartitionLog::open(dir.path() / "t-0", {});
  auto retry = append(*log, first);
  ASSERT_TRUE(retry.has_value());
  EXPECT_TRUE(retry->duplicate);
  EXPECT_EQ(retry->base_offset, 1);
  EXPECT_EQ(code_of(append(*log, make_batch(idem(9, 0, 4)))), ErrorCode::kInvalidProducerEpoch);
  EXPECT_EQ(append(*log, make_batch(idem(9, 1, 4)))->base_offset, 5);
}

TEST(Idempotence, SequenceWrapsAroundAtInt32Max) {
  ProducerStateTable table;
  auto b = make_batch(idem(1, 0, INT32_MAX - 1, 2));
  auto h = *parse_batch_header(b);
  EXPECT_EQ(h.last_sequence(), INT32_MAX);
  table.record(h, 0);
  auto next = make_batch(idem(1, 0, 0));
  EXPECT_TRUE(table.check(*parse_batch_header(next)).has_value());
}

}  // namespace
}  // namespace starling::broker
