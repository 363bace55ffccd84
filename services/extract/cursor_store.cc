#include "services/extract/cursor_store.h"

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <filesystem>

namespace starling::extract {

namespace {
std::string key(const std::string& pipeline) { return "since/" + pipeline; }
std::string until_key(const std::string& pipeline) { return "until/" + pipeline; }
std::string state_key(const std::string& pipeline) { return "state/" + pipeline; }

Result<std::optional<int64_t>> get(rocksdb::DB& db, const std::string& k) {
  std::string value;
  const auto st = db.Get(rocksdb::ReadOptions{}, k, &value);
  if (st.IsNotFound()) return std::optional<int64_t>{};
  if (!st.ok()) return fail(Errc::kIo, "reading " + k + ": " + st.ToString());
  try {
    return std::optional<int64_t>{std::stoll(value)};
  } catch (const std::exception&) {
    return fail(Errc::kInternal, fmt::format("{} is corrupt: '{}'", k, value));
  }
}
}  // namespace

CursorStore::CursorStore(std::unique_ptr<rocksdb::DB> db) : db_(std::move(db)) {}
CursorStore::~CursorStore() = default;

Result<std::unique_ptr<CursorStore>> CursorStore::open(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  const auto st = rocksdb::DB::Open(options, dir, &raw);
  if (!st.ok()) return fail(Errc::kIo, fmt::format("opening the cursor store {}: {}", dir, st.ToString()));
  return std::unique_ptr<CursorStore>(new CursorStore(std::unique_ptr<rocksdb::DB>(raw)));
}

Result<std::optional<int64_t>> CursorStore::since(const std::string& pipeline) const {
  return get(*db_, key(pipeline));
}

Result<std::optional<int64_t>> CursorStore::until(const std::string& pipeline) const {
  return get(*db_, until_key(pipeline));
}

Result<std::optional<std::string>> CursorStore::state(const std::string& pipeline) const {
  std::string value;
  const auto st = db_->Get(rocksdb::ReadOptions{}, state_key(pipeline), &value);
  if (st.IsNotFound()) return std::optional<std::string>{};
  if (!st.ok()) return fail(Errc::kIo, "reading " + state_key(pipeline) + ": " + st.ToString());
  return std::optional<std::string>{std::move(value)};
}

Status CursorStore::set_since(const std::string& pipeline, int64_t since_ms, const std::string* state) {
  rocksdb::WriteBatch batch;
  batch.Put(key(pipeline), std::to_string(since_ms));
  if (state != nullptr) batch.Put(state_key(pipeline), *state);
  batch.Delete(until_key(pipeline));
  rocksdb::WriteOptions w;
  w.sync = true;
  const auto st = db_->Write(w, &batch);
  if (!st.ok()) return fail(Errc::kIo, "writing the cursor of " + pipeline + ": " + st.ToString());
  return {};
}

Status CursorStore::set_until(const std::string& pipeline, int64_t until_ms) {
  rocksdb::WriteOptions w;
  w.sync = true;
  const auto st = db_->Put(w, until_key(pipeline), std::to_string(until_ms));
  if (!st.ok()) return fail(Errc::kIo, "writing the window of " + pipeline + ": " + st.ToString());
  return {};
}

}  // namespace starling::extract
