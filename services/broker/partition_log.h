#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "services/broker/error.h"
#include "services/broker/file_cache.h"
#include "services/broker/producer_state.h"
#include "services/broker/record_batch.h"
#include "services/broker/wire.h"

namespace starling::broker {

struct LogConfig {
  /// A segment is closed and a new one started past this size; retention
  /// deletes whole closed segments, so this is also its granularity.
  uint64_t segment_bytes = 64ull << 20;
  /// -1: keep forever.
  int64_t retention_ms = -1;
  int64_t retention_bytes = -1;
  enum class Sync {
    /// append() fdatasyncs before returning (simple; used by unit tests).
    kInline,
    /// append() only writes; the owner fdatasyncs the files from
    /// unsynced_fds() (group commit, see Flusher) and then calls
    /// mark_durable(). Readers see data only once durable.
    kDeferred,
    /// append() only writes and data is visible at once; the owner calls
    /// flush() on a timer (Kafka's flush.ms).
    kInterval,
  };
  Sync sync = Sync::kInline;
  /// One sparse index entry per this many bytes of log.
  uint32_t index_interval_bytes = 4096;
  /// Read descriptors of closed segments, shared by every log of a broker.
  /// Null: the log makes its own of FileCache::kDefaultCapacity.
  std::shared_ptr<FileCache> files;
};

/// The log of one partition: a directory of segment files named by their
/// base offset (`00000000000000000042.log`), each holding v2 record batches
/// back to back exactly as produced, with the base offset rewritten.
///
/// The sparse offset index and the time index of each segment live in memory
/// and are rebuilt at open from a header-only scan (see README.md).
///
/// Descriptors: the active (last) segment keeps its file open for writing, as
/// does (kDeferred) a closed one until its data is durable; every other
/// segment is opened on demand through the shared FileCache.
///
/// Threading: not thread-safe; the broker uses it from its one I/O thread.
class PartitionLog {
 public:
  struct AppendResult {
    int64_t base_offset = -1;  // offset of the first batch (original offset for a duplicate)
    bool duplicate = false;
    /// The log must be durable up to here before the append may be acknowledged.
    int64_t durable_end_needed = 0;
  };

  struct ReadResult {
    Bytes records;  // whole batches only
  };

  /// Opens (creating if needed) the log in `dir`: scans every segment's
  /// headers, verifies the CRC of every batch of the last segment, truncates
  /// a torn or corrupt tail, and rebuilds indexes and producer state.
  /// Throws only on unusable directories (startup).
  static std::unique_ptr<PartitionLog> open(const std::filesystem::path& dir, const LogConfig& config);
  ~PartitionLog();
  PartitionLog(const PartitionLog&) = delete;
  PartitionLog& operator=(const PartitionLog&) = delete;

  /// Validates producer sequences for `batches` (already CRC-checked, from
  /// validate_record_set) inside `records`, assigns offsets and writes them.
  /// In every-batch mode the data is fdatasync'ed before this returns.
  Result<AppendResult> append(ByteView records, const std::vector<IncomingBatch>& batches);

  /// Whole batches starting with the one containing `offset`, up to
  /// `max_bytes` (the first batch is returned even if larger, as Kafka does so
  /// consumers never get stuck). OFFSET_OUT_OF_RANGE outside [start, end].
  /// With `allow_oversized_first` false an oversized first batch yields
  /// nothing (used for all but the first non-empty partition of a fetch).
  /// Only batches below high_watermark() are returned.
  Result<ReadResult> read(int64_t offset, size_t max_bytes, bool allow_oversized_first = true) const;

  /// The first record whose timestamp is >= ts, below the high watermark
  /// (Kafka's offsetsForTimes); offset and timestamp -1 when there is none.
  /// The time index finds the first batch whose max timestamp is >= ts (one
  /// binary search, then at most an index interval of batch headers), and
  /// only that batch is read and its records walked (find_record_at_or_after).
  Result<TimestampOffset> offset_for_timestamp(int64_t ts) const;

  /// fdatasync of segments written since the last flush.
  Result<void> flush();
  bool dirty() const { return dirty_; }

  /// Deletes closed segments past retention. Returns how many were deleted.
  size_t apply_retention(int64_t now_ms);

  /// Sets the roll size and retention of this log (a topic's segment.bytes,
  /// retention.ms, retention.bytes); they apply from the next append and sweep.
  void set_limits(uint64_t segment_bytes, int64_t retention_ms, int64_t retention_bytes);

  /// DeleteRecords: moves the log start offset up to `offset` (-1: the high
  /// watermark) and deletes the closed segments wholly below it. The new start
  /// is persisted (`log-start-offset` in the log's directory, written to a
  /// temporary file, fsynced and renamed) before anything is deleted, so it
  /// never moves back. An offset below the start changes nothing; one past
  /// the high watermark is OFFSET_OUT_OF_RANGE. Returns the log start offset.
  Result<int64_t> delete_records_before(int64_t offset);

  int64_t log_start_offset() const;
  int64_t log_end_offset() const { return next_offset_; }
  /// End of the durable (and so readable) prefix of the log.
  int64_t high_watermark() const { return config_.sync == LogConfig::Sync::kDeferred ? durable_end_ : next_offset_; }
  /// kDeferred: descriptors of the segments holding not-yet-durable data.
  std::vector<int> unsynced_fds() const;
  /// kDeferred: everything below `end` has been fdatasync'ed.
  void mark_durable(int64_t end);
  uint64_t size_bytes() const;
  size_t segment_count() const { return segments_.size(); }
  const ProducerStateTable& producers() const { return producers_; }
  /// How many bytes recovery cut from the tail at open (tests, logging).
  uint64_t truncated_bytes_at_open() const { return truncated_at_open_; }

 private:
  /// Closes, forgets and deletes the first segment file (the caller fsyncs the directory).
  void remove_oldest_segment();
  struct IndexEntry {
    int64_t key;  // offset (offset index) or max timestamp so far (time index)
    uint32_t position;
  };
  struct Segment {
    int64_t base_offset = 0;
    /// Write descriptor: the active segment's, or a closed one's until its
    /// data is durable; -1 otherwise (reads go through the FileCache).
    int fd = -1;
    uint64_t size = 0;
    int64_t max_timestamp = -1;
    int64_t last_append_ms = 0;
    uint64_t last_offset_index_pos = 0;
    uint64_t last_time_index_pos = 0;
    std::vector<IndexEntry> offset_index;
    std::vector<IndexEntry> time_index;
    std::filesystem::path path;
  };

  PartitionLog(std::filesystem::path dir, LogConfig config) : dir_(std::move(dir)), config_(std::move(config)) {}
  void load();
  /// Deletes closed segments whose records are all below log_start_.
  void delete_segments_below_start();
  void recover_segment(Segment& seg, bool verify_crc, bool is_last);
  void index_batch(Segment& seg, const BatchHeader& h, uint64_t position);
  Segment& roll(int64_t base_offset);
  const Segment* segment_for(int64_t offset) const;
  /// A descriptor to read `seg` with: its write descriptor or a cached one,
  /// valid while the returned handle lives.
  struct ReadFd {
    int fd = -1;
    FileCache::Handle hold;
  };
  Result<ReadFd> read_fd(const Segment& seg) const;
  /// Closes the write descriptor of a segment that is no longer active.
  void release_write_fd(Segment& seg);
  uint64_t seek(const Segment& seg, int fd, int64_t offset) const;

  std::filesystem::path dir_;
  LogConfig config_;
  std::vector<std::unique_ptr<Segment>> segments_;
  int64_t next_offset_ = 0;
  int64_t durable_end_ = 0;
  /// Set by DeleteRecords; the log starts at the larger of this and the
  /// first segment's base offset.
  int64_t log_start_ = 0;
  bool dirty_ = false;
  uint64_t truncated_at_open_ = 0;
  ProducerStateTable producers_;
};

/// Name of a segment file for a base offset.
std::string segment_file_name(int64_t base_offset);

}  // namespace starling::broker
