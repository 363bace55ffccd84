#pragma once
// The durable cursor of each pipeline's source: where its next window starts.
// RocksDB under <data-dir>/cursors (a backfill: under its state dir); written (synced) only after Kafka has
// persisted every record of the window before it.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "services/common/error.h"

namespace rocksdb {
class DB;
}  // namespace rocksdb

namespace starling::extract {

class CursorStore {
 public:
  /// Opens (creating) the store in `dir`.
  static Result<std::unique_ptr<CursorStore>> open(const std::string& dir);
  ~CursorStore();
  CursorStore(const CursorStore&) = delete;
  CursorStore& operator=(const CursorStore&) = delete;

  /// The start of the pipeline's next window (Unix ms); nullopt before its first.
  Result<std::optional<int64_t>> since(const std::string& pipeline) const;
  /// Stores it with a synced write: it survives a kill -9 or a power cut.
  /// Clears the window in progress. `state`, when given, is stored in the
  /// same write (a backfill's seqs and windows so far).
  Status set_since(const std::string& pipeline, int64_t since_ms, const std::string* state = nullptr);
  /// The state last stored with set_since; nullopt before any.
  Result<std::optional<std::string>> state(const std::string& pipeline) const;

  /// The end of the window in progress, fixed before its first request, so
  /// a window redone after a crash asks for the very same pages (and gives
  /// the very same sagas) even at the live edge; nullopt when none is.
  Result<std::optional<int64_t>> until(const std::string& pipeline) const;
  Status set_until(const std::string& pipeline, int64_t until_ms);

 private:
  explicit CursorStore(std::unique_ptr<rocksdb::DB> db);
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace starling::extract
