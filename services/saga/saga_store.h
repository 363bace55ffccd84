#pragma once
// Where the coordinator keeps saga state. Records, their deadline index
// entries, retention's aggregates, consumed offsets and the outcome outbox are
// written in one atomic batch.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "broker-adapters/kafka/kafka.h"
#include "broker-adapters/kafka/outbox.h"
#include "services/common/error.h"
#include "starling/v1/saga.pb.h"

namespace rocksdb {
class DB;
class Statistics;
class ColumnFamilyHandle;
}  // namespace rocksdb

namespace starling::saga {

/// A record to store. Its deadline index entry moves from old_deadline_ms to
/// record.deadline_ms() (0: no entry) in the same batch, and its listing
/// entries from (old_state, old_created_ms) to the record's (old_state
/// UNSPECIFIED: the saga is new).
struct SagaWrite {
  v1::SagaRecord record;
  int64_t old_deadline_ms = 0;
  v1::SagaState old_state = v1::SAGA_STATE_UNSPECIFIED;
  int64_t old_created_ms = 0;
};

/// One page of a pipeline's sagas, newest first (by creation time), from the
/// listing index: O(page), whatever the number of sagas stored.
struct ListQuery {
  std::string pipeline;
  std::optional<v1::SagaState> state;  // none: every state
  int64_t since_ms = 0;                // created at or after
  int64_t until_ms = INT64_MAX;        // created before
  std::string after;                   // the page token: the last entry of the previous page ("": the first page)
  std::size_t limit = 100;
};
struct ListPage {
  std::vector<v1::SagaRecord> sagas;
  std::string next;  // "" on the last page
};

/// Everything one coordinator step applies, atomically.
struct SagaCommit {
  std::vector<SagaWrite> sagas;
  /// Finished sagas retention removes: their record and index entry go, and
  /// their counts are added to the aggregate of (pipeline, creation hour).
  std::vector<v1::SagaRecord> removed;
  std::map<kafka::TopicPartition, int64_t> next_offsets;
  std::vector<kafka::OutMessage> outbox;
};

inline constexpr int64_t kHourMs = 3'600'000;

/// Threading: one writer (the consumer loop) and one relay (outbox() and
/// outbox_done(), which may run beside the writer); readers (the HTTP API) may run
/// concurrently.
class SagaStore : public kafka::Outbox {
 public:
  ~SagaStore() override = default;
  virtual Result<std::optional<v1::SagaRecord>> get(const std::string& saga_id) = 0;
  virtual Status commit(const SagaCommit& batch) = 0;
  virtual Result<std::map<kafka::TopicPartition, int64_t>> offsets() = 0;
  /// Visits sagas in saga-id order, starting after `after` ("" from the
  /// first), until `visit` returns false. The order is stable across calls,
  /// which is what paging relies on.
  virtual Status scan(const std::function<bool(const v1::SagaRecord&)>& visit, const std::string& after = {}) = 0;
  /// Visits deadline index entries with deadline <= now_ms, earliest first,
  /// until `visit` returns false.
  virtual Status due(int64_t now_ms,
                     const std::function<bool(int64_t deadline_ms, const std::string& saga_id)>& visit) = 0;
  /// Aggregates of removed sagas of `pipeline`, keyed by creation hour (Unix
  /// ms of the hour's start), for hours in [from_ms, to_ms).
  virtual Result<std::map<int64_t, v1::SagaAggregate>> aggregates(const std::string& pipeline, int64_t from_ms,
                                                                  int64_t to_ms) = 0;
  /// A page of a pipeline's sagas, newest first (see ListQuery).
  virtual Result<ListPage> list(const ListQuery& query) = 0;

  /// Records (without index entries), offsets and outbox in one batch.
  Status commit(const std::vector<v1::SagaRecord>& records,
                const std::map<kafka::TopicPartition, int64_t>& next_offsets,
                const std::vector<kafka::OutMessage>& outbox) {
    SagaCommit c;
    for (const auto& r : records) c.sagas.push_back({r, r.deadline_ms(), v1::SAGA_STATE_UNSPECIFIED, 0});
    c.next_offsets = next_offsets;
    c.outbox = outbox;
    return commit(c);
  }
};

/// RocksDB with column families "sagas" (saga id → SagaRecord), "deadlines"
/// (be64 deadline ms + saga id → ""), "aggregates" (pipeline \0 be64 hour →
/// SagaAggregate), "listing" (pipeline \0 state byte, or 0 for any state,
/// then be64 of the creation time inverted, then saga id → ""; newest first),
/// "offsets" and "outbox". A listing entry a write left behind is skipped
/// on read (the record is the truth) and removed with the saga.
class RocksSagaStore final : public SagaStore {
 public:
  /// Throws std::runtime_error when the DB cannot be opened (startup only).
  explicit RocksSagaStore(const std::string& path);
  ~RocksSagaStore() override;

  using SagaStore::commit;
  Result<std::optional<v1::SagaRecord>> get(const std::string& saga_id) override;
  Status commit(const SagaCommit& batch) override;
  Result<std::map<kafka::TopicPartition, int64_t>> offsets() override;
  Status scan(const std::function<bool(const v1::SagaRecord&)>& visit, const std::string& after = {}) override;
  Status due(int64_t now_ms, const std::function<bool(int64_t, const std::string&)>& visit) override;
  Result<std::map<int64_t, v1::SagaAggregate>> aggregates(const std::string& pipeline, int64_t from_ms,
                                                          int64_t to_ms) override;
  Result<ListPage> list(const ListQuery& query) override;
  Result<std::vector<kafka::OutboxEntry>> outbox(std::size_t max) override;
  Status outbox_done(const std::vector<uint64_t>& ids) override;
  /// How many times RocksDB synced its WAL (RocksDB's own count).
  uint64_t wal_syncs() const;

 private:
  /// Builds the listing index of a store written before it existed.
  void build_listing();

  std::shared_ptr<rocksdb::Statistics> statistics_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // see Cf in saga_store.cc
  std::atomic<uint64_t> next_outbox_id_{1};            // written by commit(), read by the relay
  uint64_t relayed_ = 0;                               // ids <= relayed_ are relayed and deleted (the relay's own)
};

}  // namespace starling::saga
