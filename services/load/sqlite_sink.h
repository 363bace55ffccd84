#pragma once

#include <memory>

#include "services/load/sink.h"

struct sqlite3;
struct sqlite3_stmt;

namespace starling::load {

/// SQLite in WAL mode with synchronous=FULL: a committed batch survives a
/// crash of the process or the machine. The table is created from the
/// pipeline mapping; a mapped column missing from an existing table is added.
class SqliteSink final : public Sink {
 public:
  /// Throws std::runtime_error when the DB cannot be opened or migrated
  /// (startup only).
  SqliteSink(const std::string& path, const PipelineConfig& pipeline);
  ~SqliteSink() override;

  Status write(const SinkBatch& batch, const OutboxBuilder& outbox) override;
  Result<std::map<kafka::TopicPartition, int64_t>> offsets() override;
  Result<std::set<std::string>> compensated(const std::set<std::string>& saga_ids) override;
  Result<std::vector<kafka::OutboxEntry>> outbox(std::size_t max) override;
  Status outbox_done(const std::vector<uint64_t>& ids) override;
  Status ping() override;

 private:
  void open(const std::string& path);
  void close();
  Status exec(const std::string& sql);
  Status bind_row(const Row& row);

  const PipelineConfig& pipeline_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* upsert_ = nullptr;
  sqlite3_stmt* offset_ = nullptr;
  sqlite3_stmt* outbox_ = nullptr;
  sqlite3_stmt* delete_saga_ = nullptr;
  sqlite3_stmt* mark_compensated_ = nullptr;
  sqlite3_stmt* is_compensated_ = nullptr;
};

/// The SQL type a field maps to.
std::string sqlite_type(const google::protobuf::FieldDescriptor* f);

}  // namespace starling::load
