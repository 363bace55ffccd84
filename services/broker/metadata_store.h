#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>

#include "services/broker/error.h"

namespace rocksdb {
class DB;
}

namespace starling::broker {

struct CommittedOffset {
  int64_t offset = -1;
  int32_t leader_epoch = -1;
  std::optional<std::string> metadata;
};

/// A topic as the store keeps it.
struct StoredTopic {
  int32_t partitions = 0;
  /// The topic configs that were set (name → value), see TopicConfig.
  std::map<std::string, std::string> configs;
};

/// Small, rarely written broker state that must survive restarts: the topic
/// list, committed group offsets and the next producer id. Kept in RocksDB
/// because every write is tiny, must be atomic and synced, and lookups are by
/// key (the logs themselves are segment files, see README.md).
///
/// Threading: RocksDB is thread-safe, but the broker calls this from its I/O
/// thread only. Every write is synced (WriteOptions::sync) before returning.
class MetadataStore {
 public:
  /// Throws at startup when the store cannot be opened.
  explicit MetadataStore(const std::filesystem::path& dir);
  ~MetadataStore();

  /// Throws at startup when a topic's record cannot be read.
  std::map<std::string, StoredTopic> load_topics() const;
  Result<void> put_topic(const std::string& name, const StoredTopic& topic);
  Result<void> delete_topic(const std::string& name);

  using OffsetKey = std::tuple<std::string, std::string, int32_t>;  // group, topic, partition
  std::map<OffsetKey, CommittedOffset> load_offsets() const;
  /// Writes all offsets of one commit in a single atomic batch.
  Result<void> put_offsets(const std::map<OffsetKey, CommittedOffset>& offsets);
  /// Deletes every committed offset of `group` in one synced batch
  /// (DeleteGroups); returns how many there were.
  Result<size_t> delete_group_offsets(const std::string& group);

  /// Reserves and persists a fresh producer id.
  Result<int64_t> next_producer_id();

 private:
  std::unique_ptr<rocksdb::DB> db_;
  int64_t next_producer_id_ = 1000;
};

}  // namespace starling::broker
