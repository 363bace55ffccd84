#pragma once
// The clean stage's per-partition state: each device's last known values and
// the dedupe window of event ids. Keyed by partition, so a revoked partition's
// state is simply not read, and an assigned one resumes from what it stored.

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker-adapters/kafka/kafka.h"
#include "services/clean/rules.h"
#include "services/common/error.h"

namespace rocksdb {
class DB;
class WriteBatch;
struct Options;
}  // namespace rocksdb

namespace starling::clean {

/// The first copy of an event id in the dedupe window: when ingest took it,
/// and which (saga, seq) it had (event_fingerprint), so that the same event
/// of the same saga arriving again (a retried Idempotency-Key request or a
/// redelivered MQTT message re-produces identical envelopes) is told apart
/// from a duplicate.
struct FirstSeen {
  int64_t ingest_time_ms = 0;
  uint64_t fingerprint = 0;  // 0: stored before fingerprints (never matches)
};

/// StableHash (services/common/ids.h) of saga id and seq; never 0.
uint64_t event_fingerprint(const std::string& saga_id, uint32_t seq);

/// What the cleaner reads and stages while it cleans a batch. Reads see the
/// batch's own staged writes.
class CleanState {
 public:
  virtual ~CleanState() = default;
  /// Whether device(), put_device(), seen() and put_seen() may be called from
  /// several threads at once, each thread with partitions of its own.
  virtual bool concurrent_partitions() const { return false; }
  virtual DeviceMemory device(int32_t partition, const std::string& device_id) = 0;
  virtual void put_device(int32_t partition, const std::string& device_id, const DeviceMemory& memory) = 0;
  /// The first copy of this event id, if one was seen (within the window).
  virtual std::optional<FirstSeen> seen(int32_t partition, const std::string& event_id) = 0;
  virtual void put_seen(int32_t partition, const std::string& event_id, FirstSeen first) = 0;
};

/// In memory: for `starling test` and unit tests.
class MemoryCleanState final : public CleanState {
 public:
  DeviceMemory device(int32_t partition, const std::string& device_id) override;
  void put_device(int32_t partition, const std::string& device_id, const DeviceMemory& memory) override;
  std::optional<FirstSeen> seen(int32_t partition, const std::string& event_id) override;
  void put_seen(int32_t partition, const std::string& event_id, FirstSeen first) override;

 private:
  std::map<std::pair<int32_t, std::string>, DeviceMemory> devices_;
  std::map<std::pair<int32_t, std::string>, FirstSeen> seen_;
};

/// RocksDB under --data-dir. Writes are staged in memory (reads see them)
/// and applied by commit() in ONE WriteBatch together with the next input
/// offsets, so state and offsets never disagree: after a crash the stage
/// replays exactly the input its state has not seen.
///
/// Staged writes come in layers, one per batch: seal() closes the batch being
/// cleaned, so the next batch can be cleaned (reading through every staged
/// layer, as if they were committed) while the sealed one's outputs are still
/// in flight; commit() then writes the OLDEST layer only, with that batch's
/// offsets. So what is stored is always exactly "the input before the stored
/// offsets", as without layers, and a crash drops the uncommitted layers.
///
/// Keys: "o" topic \0 be32(partition) → be64 next offset; "v" be32(p) device →
/// DeviceMemory; "e" be32(p) event id → be64 ingest ms + be64 fingerprint;
/// "w" be32(p) → be64 highest ingest ms seen (the dedupe watermark).
///
/// Dedupe horizon: seen() answers "not seen" for an id first seen before the
/// partition's watermark (the highest ingest time of ANY earlier event,
/// staged or committed) minus the window. Ids that old are dropped by a
/// RocksDB compaction filter (against the committed watermark, which is never
/// ahead of the one seen() uses), so the answer never depends on whether they
/// are gone yet: it is the same for any batch boundaries, pipelined or not,
/// and after a crash. An event costs one "e" write and no delete; space is
/// bounded by the window plus what compaction has not reached yet.
///
/// Speed: device memories and watermarks are cached in memory (write-through
/// at commit; this process is the only writer of its RocksDB, so the cache
/// never goes stale). The dedupe ids are not cached (the window can hold more
/// ids than fit the memory budget); they are read from RocksDB, whose bloom
/// filters answer the usual "never seen".
///
/// Threads: the per-record calls may come from several threads at once for
/// distinct partitions. Staged writes and caches are split into stripes by
/// partition, each with its own mutex, so threads with partitions of their
/// own do not wait for each other (one mutex for all cost 10% of the CPU in
/// futex waits and wake-ups); RocksDB reads run outside any. Everything else
/// is for one thread, between batches.
class RocksCleanStore final : public CleanState {
 public:
  bool concurrent_partitions() const override { return true; }
  /// Opens or creates the store; throws std::runtime_error (startup only).
  /// `dedupe_window_ms` > 0 expires event ids older than the watermark minus it.
  RocksCleanStore(const std::string& path, int64_t dedupe_window_ms);
  ~RocksCleanStore() override;

  DeviceMemory device(int32_t partition, const std::string& device_id) override;
  void put_device(int32_t partition, const std::string& device_id, const DeviceMemory& memory) override;
  std::optional<FirstSeen> seen(int32_t partition, const std::string& event_id) override;
  void put_seen(int32_t partition, const std::string& event_id, FirstSeen first) override;

  /// Next offset to read per partition, as last committed.
  std::map<kafka::TopicPartition, int64_t> offsets();
  /// Closes the batch staged so far (possibly empty) as one layer; later
  /// writes start the next layer. One seal() per batch, one commit() per seal.
  void seal();
  /// Writes the oldest staged layer (sealed or not) and the offsets after
  /// its batch atomically (one WriteBatch). On failure the layer stays, so a
  /// retry writes the same batch. Same as prepare_commit, write, finish_commit.
  Status commit(const std::map<kafka::TopicPartition, int64_t>& next_offsets);

  /// commit() in three steps, so that the RocksDB write (the costly part) can
  /// run on another thread while this one cleans the next batch:
  /// prepare_commit() builds the oldest layer's WriteBatch; write() applies it
  /// and touches nothing but RocksDB, so it may run on any thread (and be
  /// retried after a failure); finish_commit(), once write() succeeded, moves
  /// the layer into the caches. Between prepare and finish this thread may
  /// clean, seal and read as usual (the layer is read from memory or from
  /// RocksDB: both hold the same), but not commit or roll back.
  struct PreparedCommit {
    PreparedCommit();
    PreparedCommit(PreparedCommit&&) noexcept;
    PreparedCommit& operator=(PreparedCommit&&) noexcept;
    ~PreparedCommit();
    std::unique_ptr<rocksdb::WriteBatch> batch;
    std::map<int32_t, int64_t> watermarks;  // as of this batch
  };
  PreparedCommit prepare_commit(const std::map<kafka::TopicPartition, int64_t>& next_offsets);
  Status write(PreparedCommit& commit);
  void finish_commit(PreparedCommit& commit);
  /// Drops every staged layer.
  void rollback();
  /// Staged layers not yet committed (sealed ones, and the open one if it
  /// holds anything).
  std::size_t staged_layers() const;
  /// Every key and value after a full compaction (so every event id beyond
  /// the horizon is gone): what the committed state means, for tests that
  /// compare two stores.
  std::map<std::string, std::string> dump();

  class Expiry;  // the compaction filter (state.cc)

 private:
  std::optional<std::string> db_get(const std::string& key);
  /// The committed watermark of a partition (none: nothing committed there).
  std::optional<int64_t> committed_watermark(int32_t partition) const;

  static constexpr std::size_t kStripes = 16;
  static std::size_t stripe_of(int32_t partition);
  // One batch's staged writes of the partitions of one stripe (nothing of
  // these is in RocksDB until commit()).
  struct Stripe {
    std::unordered_map<std::string, DeviceMemory> devices;  // "v" key → memory
    std::unordered_map<std::string, FirstSeen> seen;        // "e" key → first copy
    std::map<int32_t, int64_t> watermarks;                  // partition → highest ingest ms put
    bool empty() const { return devices.empty() && seen.empty() && watermarks.empty(); }
  };
  struct Layer {
    std::array<Stripe, kStripes> stripes;
  };
  struct alignas(64) StripeMutex {  // a cache line each: no false sharing between threads
    std::mutex mu;
  };

  int64_t window_ms_;
  // Outlives db_; also holds the committed watermarks (read at open, set
  // by finish_commit), which its filter expires ids against.
  std::unique_ptr<Expiry> expiry_;
  std::unique_ptr<rocksdb::DB> db_;
  // The batch being cleaned takes writes in open_; seal() moves it to the
  // back of sealed_ (oldest first). Per-record calls never change either
  // container, only open_'s stripes.
  Layer open_;
  std::deque<Layer> sealed_;
  // Committed, cached, by stripe: "v" key → memory (empty: none stored).
  std::array<std::unordered_map<std::string, DeviceMemory>, kStripes> devices_;
  // Guard open_'s stripes and devices_ for the per-record calls.
  std::array<StripeMutex, kStripes> mu_;
};

/// The RocksDB options RocksCleanStore opens with, but its compaction
/// filter (bench/clean's floor opens a bare store with them).
rocksdb::Options store_options();

/// The binary form of a DeviceMemory in the store.
std::string encode_memory(const DeviceMemory& memory);
DeviceMemory decode_memory(const std::string& bytes);

}  // namespace starling::clean
