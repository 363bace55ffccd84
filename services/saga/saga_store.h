#pragma once
// Where the coordinator keeps saga state. Records, consumed offsets and the
// outcome outbox are written in one atomic batch.

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
class ColumnFamilyHandle;
}  // namespace rocksdb

namespace starling::saga {

/// Threading: one writer (the consumer loop); readers (the HTTP API) may run
/// concurrently.
class SagaStore : public kafka::Outbox {
 public:
  virtual ~SagaStore() = default;
  virtual Result<std::optional<v1::SagaRecord>> get(const std::string& saga_id) = 0;
  virtual Status commit(const std::vector<v1::SagaRecord>& records,
                        const std::map<kafka::TopicPartition, int64_t>& next_offsets,
                        const std::vector<kafka::OutMessage>& outbox) = 0;
  virtual Result<std::map<kafka::TopicPartition, int64_t>> offsets() = 0;
  /// Visits every saga until `visit` returns false.
  virtual Status scan(const std::function<bool(const v1::SagaRecord&)>& visit) = 0;
};

/// RocksDB with column families "sagas", "offsets" and "outbox".
class RocksSagaStore final : public SagaStore {
 public:
  /// Throws std::runtime_error when the DB cannot be opened (startup only).
  explicit RocksSagaStore(const std::string& path);
  ~RocksSagaStore() override;

  Result<std::optional<v1::SagaRecord>> get(const std::string& saga_id) override;
  Status commit(const std::vector<v1::SagaRecord>& records, const std::map<kafka::TopicPartition, int64_t>& next_offsets,
                const std::vector<kafka::OutMessage>& outbox) override;
  Result<std::map<kafka::TopicPartition, int64_t>> offsets() override;
  Status scan(const std::function<bool(const v1::SagaRecord&)>& visit) override;
  Result<std::vector<kafka::OutboxEntry>> outbox(std::size_t max) override;
  Status outbox_done(uint64_t up_to) override;

 private:
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // default, sagas, offsets, outbox
  uint64_t next_outbox_id_ = 1;
};

}  // namespace starling::saga
