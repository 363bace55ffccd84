#pragma once

#include <string>

#include "services/load/sink.h"

struct pg_conn;

namespace starling::load {

/// PostgreSQL through libpq. A batch of new events is COPYed straight into
/// the table. When that hits an existing event id (a redelivery, a replay),
/// the batch is COPYed into a session-local staging table and moved with one
/// INSERT … ON CONFLICT (event_id) DO UPDATE. If the database refuses a row
/// (a constraint, a type), the batch falls back to row-by-row upserts under
/// savepoints so only the refused rows are dead-lettered. Rows, offsets, compensations and the outbox commit in one
/// transaction. A lost connection is re-established on the next write.
class PostgresSink final : public Sink {
 public:
  /// `dsn` is a libpq connection string. Throws std::runtime_error when the
  /// schema cannot be created or migrated (startup only); an unreachable
  /// server is retried until `connect_timeout_s`.
  PostgresSink(std::string dsn, const PipelineConfig& pipeline, int connect_timeout_s = 30);
  ~PostgresSink() override;

  Status write(const SinkBatch& batch, const OutboxBuilder& outbox) override;
  Result<std::map<kafka::TopicPartition, int64_t>> offsets() override;
  Result<std::set<std::string>> compensated(const std::set<std::string>& saga_ids) override;
  Result<std::vector<kafka::OutboxEntry>> outbox(std::size_t max) override;
  Status outbox_done(const std::vector<uint64_t>& ids) override;
  Status ping() override;

 private:
  Status connect();
  Status migrate();
  Status migrate_locked();  // migrate() inside its transaction and lock
  Status exec(const std::string& sql);
  Status write_once(const SinkBatch& batch, const OutboxBuilder& outbox);
  Status copy_rows(const std::vector<const Row*>& rows, const std::string& table);
  Status upsert_one(const Row& row, bool& refused, std::string& error);

  std::string dsn_;
  const PipelineConfig& pipeline_;
  pg_conn* conn_ = nullptr;
  std::string upsert_select_;  // INSERT … SELECT FROM staging … ON CONFLICT
  std::string upsert_values_;  // INSERT … VALUES ($1…) … ON CONFLICT
  std::string column_list_;    // the envelope and mapped columns, quoted, in COPY order
};

/// The PostgreSQL type a field maps to.
std::string postgres_type(const google::protobuf::FieldDescriptor* f);

}  // namespace starling::load
