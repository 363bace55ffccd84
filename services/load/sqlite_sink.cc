#include "services/load/sqlite_sink.h"

#include <fmt/format.h>
#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/util/time_util.h>
#include <sqlite3.h>

#include <set>
#include <stdexcept>

#include "services/common/records.h"

namespace starling::load {

using google::protobuf::FieldDescriptor;

namespace {

// Identifiers were validated as [A-Za-z_][A-Za-z0-9_]* at config load; quoting
// them too means no data or name can ever change the statement.
std::string q(const std::string& ident) { return "\"" + ident + "\""; }

constexpr const char* kEnvelopeColumns[] = {"event_id",      "saga_id",        "seq",
                                            "event_time_ms", "ingest_time_ms", kDeviceColumn};

}  // namespace

std::string sqlite_type(const FieldDescriptor* f) {
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
    case FieldDescriptor::CPPTYPE_BOOL:
      return "INTEGER";
    case FieldDescriptor::CPPTYPE_FLOAT:
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return "REAL";
    default:
      return "TEXT";  // strings, enum names, RFC 3339 timestamps
  }
}

SqliteSink::SqliteSink(const std::string& path, const PipelineConfig& pipeline) : pipeline_(pipeline) {
  try {
    open(path);
  } catch (...) {
    close();  // the destructor does not run when a constructor throws
    throw;
  }
}

void SqliteSink::open(const std::string& path) {
  const auto& pipeline = pipeline_;
  if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) {
    throw std::runtime_error(fmt::format("{}: {}", path, sqlite3_errmsg(db_)));
  }
  auto must = [&](const std::string& sql) {
    if (auto st = exec(sql); !st) throw std::runtime_error(fmt::format("{}: {}", path, st.error().message));
  };
  // First, so that every statement below waits for another loader of the
  // same file (instances of one pipeline share it) instead of failing.
  must("PRAGMA busy_timeout=5000");
  must("PRAGMA journal_mode=WAL");
  must("PRAGMA synchronous=FULL");
  // The schema is read and changed in one write transaction, so two loaders
  // starting together do not both add the same column.
  must("BEGIN IMMEDIATE");
  std::string cols =
      "event_id TEXT PRIMARY KEY, saga_id TEXT NOT NULL, seq INTEGER NOT NULL, "
      "event_time_ms INTEGER NOT NULL, ingest_time_ms INTEGER NOT NULL, " +
      q(kDeviceColumn) + " TEXT";
  for (const auto& c : pipeline.columns) cols += fmt::format(", {} {}", q(c.name), sqlite_type(c.descriptor));
  must(fmt::format("CREATE TABLE IF NOT EXISTS {} ({})", q(pipeline.table), cols));
  must(fmt::format("CREATE INDEX IF NOT EXISTS {} ON {} (saga_id)", q(pipeline.table + "_saga"), q(pipeline.table)));
  must(
      "CREATE TABLE IF NOT EXISTS _starling_offsets (topic TEXT NOT NULL, partition INTEGER NOT NULL, "
      "next_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition))");
  must("CREATE TABLE IF NOT EXISTS _starling_compensated (saga_id TEXT PRIMARY KEY, rows_deleted INTEGER NOT NULL)");
  must(
      "CREATE TABLE IF NOT EXISTS _starling_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
      "key BLOB NOT NULL, value BLOB NOT NULL)");

  // A column added to the mapping is added to the table; one whose type
  // changed is refused, since rewriting stored data is not ours to decide.
  std::map<std::string, std::string> existing;
  sqlite3_stmt* info = nullptr;
  sqlite3_prepare_v2(db_, fmt::format("PRAGMA table_info({})", q(pipeline.table)).c_str(), -1, &info, nullptr);
  while (sqlite3_step(info) == SQLITE_ROW) {
    existing[reinterpret_cast<const char*>(sqlite3_column_text(info, 1))] =
        reinterpret_cast<const char*>(sqlite3_column_text(info, 2));
  }
  sqlite3_finalize(info);
  // Tables made before the device column: its rows have NULL there and are
  // not checked; every row written from now on is.
  if (!existing.contains(kDeviceColumn)) {
    must(fmt::format("ALTER TABLE {} ADD COLUMN {} TEXT", q(pipeline.table), q(kDeviceColumn)));
  }
  must(
      fmt::format("CREATE TRIGGER IF NOT EXISTS {0} BEFORE UPDATE ON {1} FOR EACH ROW "
                  "WHEN OLD.{2} IS NOT NULL AND NEW.{2} IS NOT OLD.{2} "
                  "BEGIN SELECT RAISE(ABORT, '{3}: this event id was loaded for another device'); END",
                  q(pipeline.table + "_event_id_conflict"), q(pipeline.table), q(kDeviceColumn), kEventIdConflict));
  for (const auto& c : pipeline.columns) {
    auto it = existing.find(c.name);
    if (it == existing.end()) {
      must(fmt::format("ALTER TABLE {} ADD COLUMN {} {}", q(pipeline.table), q(c.name), sqlite_type(c.descriptor)));
    } else if (it->second != sqlite_type(c.descriptor)) {
      throw std::runtime_error(
          fmt::format("{}: column {}.{} is {} in the database but the pipeline maps field {} of type {}; "
                      "migrate the table by hand or map a new column",
                      path, pipeline.table, c.name, it->second, c.field, sqlite_type(c.descriptor)));
    }
  }
  must("COMMIT");

  std::string names;
  std::string params;
  std::string updates;
  int n = 0;
  auto add = [&](const std::string& name) {
    names += (n ? ", " : "") + q(name);
    params += (n ? ", ?" : "?");
    if (name != "event_id") updates += (updates.empty() ? "" : ", ") + fmt::format("{0} = excluded.{0}", q(name));
    ++n;
  };
  for (const auto* c : kEnvelopeColumns) add(c);
  for (const auto& c : pipeline.columns) add(c.name);
  // A row is rewritten only when its content changed: a redelivery or a
  // replay that yields the same values leaves it (and its saga_id) alone, so
  // replaying a range twice changes nothing, and a row that a replay did
  // change carries the replay's saga id.
  std::string differs = fmt::format(
      "excluded.event_time_ms IS NOT {0}.event_time_ms OR excluded.ingest_time_ms IS NOT {0}.ingest_time_ms OR "
      "excluded.{1} IS NOT {0}.{1}",
      q(pipeline.table), q(kDeviceColumn));
  for (const auto& c : pipeline.columns)
    differs += fmt::format(" OR excluded.{0} IS NOT {1}.{0}", q(c.name), q(pipeline.table));
  const auto upsert = fmt::format("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (event_id) DO UPDATE SET {} WHERE {}",
                                  q(pipeline.table), names, params, updates, differs);
  auto prepare = [&](const std::string& sql, sqlite3_stmt** stmt) {
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, stmt, nullptr) != SQLITE_OK)
      throw std::runtime_error(fmt::format("{}: prepare {}: {}", path, sql, sqlite3_errmsg(db_)));
  };
  prepare(upsert, &upsert_);
  prepare(
      "INSERT INTO _starling_offsets (topic, partition, next_offset) VALUES (?, ?, ?) "
      "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
      &offset_);
  prepare("INSERT INTO _starling_outbox (topic, key, value) VALUES (?, ?, ?)", &outbox_);
  prepare(fmt::format("DELETE FROM {} WHERE saga_id = ?", q(pipeline.table)), &delete_saga_);
  prepare("INSERT OR IGNORE INTO _starling_compensated (saga_id, rows_deleted) VALUES (?, ?)", &mark_compensated_);
  prepare("SELECT 1 FROM _starling_compensated WHERE saga_id = ?", &is_compensated_);
}

SqliteSink::~SqliteSink() { close(); }

void SqliteSink::close() {
  sqlite3_finalize(upsert_);
  sqlite3_finalize(offset_);
  sqlite3_finalize(outbox_);
  sqlite3_finalize(delete_saga_);
  sqlite3_finalize(mark_compensated_);
  sqlite3_finalize(is_compensated_);
  sqlite3_close(db_);
  upsert_ = offset_ = outbox_ = delete_saga_ = mark_compensated_ = is_compensated_ = nullptr;
  db_ = nullptr;
}

Status SqliteSink::exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return fail(Errc::kIo, fmt::format("{}: {}", sql.substr(0, 60), msg));
  }
  return {};
}

Status SqliteSink::bind_row(const Row& row) {
  auto* s = upsert_;
  const auto& e = row.envelope;
  sqlite3_bind_text(s, 1, e.event_id().data(), static_cast<int>(e.event_id().size()), SQLITE_TRANSIENT);
  sqlite3_bind_text(s, 2, e.saga_id().data(), static_cast<int>(e.saga_id().size()), SQLITE_TRANSIENT);
  sqlite3_bind_int64(s, 3, e.seq());
  sqlite3_bind_int64(s, 4, e.event_time_ms());
  sqlite3_bind_int64(s, 5, e.ingest_time_ms());
  sqlite3_bind_text(s, 6, e.device_id().data(), static_cast<int>(e.device_id().size()), SQLITE_TRANSIENT);
  const auto& m = *row.record;
  const auto* r = m.GetReflection();
  int i = 7;
  for (const auto& c : pipeline_.columns) {
    const auto* f = c.descriptor;
    if (f->has_presence() && !r->HasField(m, f)) {
      sqlite3_bind_null(s, i++);
      continue;
    }
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        sqlite3_bind_int64(s, i, r->GetInt32(m, f));
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        sqlite3_bind_int64(s, i, r->GetInt64(m, f));
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        sqlite3_bind_int64(s, i, r->GetUInt32(m, f));
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        sqlite3_bind_int64(s, i, static_cast<int64_t>(r->GetUInt64(m, f)));
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        sqlite3_bind_int64(s, i, r->GetBool(m, f) ? 1 : 0);
        break;
      case FieldDescriptor::CPPTYPE_FLOAT:
        sqlite3_bind_double(s, i, r->GetFloat(m, f));
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        sqlite3_bind_double(s, i, r->GetDouble(m, f));
        break;
      default: {
        const auto text = field_text(m, f);
        sqlite3_bind_text(s, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
      }
    }
    ++i;
  }
  return {};
}

namespace {

// Errors that mean "this row is wrong", as opposed to "the database is not
// available": the first kind goes to the dead-letter topic, the second is retried.
bool row_refused(int rc) {
  const int primary = rc & 0xff;
  return primary == SQLITE_CONSTRAINT || primary == SQLITE_MISMATCH || primary == SQLITE_TOOBIG ||
         primary == SQLITE_RANGE;
}

}  // namespace

Status SqliteSink::write(const SinkBatch& batch, const OutboxBuilder& outbox) {
  if (auto st = exec("BEGIN IMMEDIATE"); !st) return st;
  auto rollback = [&](const std::string& what) -> Status {
    const std::string msg = fmt::format("{}: {}", what, sqlite3_errmsg(db_));
    (void)exec("ROLLBACK");
    return fail(Errc::kUnavailable, msg);
  };
  std::vector<RowResult> results(batch.rows.size());
  for (std::size_t i = 0; i < batch.rows.size(); ++i) {
    const auto& row = batch.rows[i];
    // In SQLite a failed statement undoes only its own changes and the
    // transaction stays open, so a refused row needs no savepoint.
    sqlite3_reset(upsert_);
    sqlite3_clear_bindings(upsert_);
    (void)bind_row(row);
    const int rc = sqlite3_step(upsert_);
    if (rc == SQLITE_DONE) {
      results[i].written = true;
    } else if (row_refused(sqlite3_extended_errcode(db_))) {
      results[i].error = sqlite3_errmsg(db_);
      sqlite3_reset(upsert_);
    } else {
      return rollback("upsert event " + row.envelope.event_id());
    }
  }
  for (const auto& saga : batch.compensate) {
    sqlite3_reset(delete_saga_);
    sqlite3_bind_text(delete_saga_, 1, saga.data(), static_cast<int>(saga.size()), SQLITE_TRANSIENT);
    if (sqlite3_step(delete_saga_) != SQLITE_DONE) return rollback("compensate saga " + saga);
    const auto deleted = sqlite3_changes(db_);
    sqlite3_reset(mark_compensated_);
    sqlite3_bind_text(mark_compensated_, 1, saga.data(), static_cast<int>(saga.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(mark_compensated_, 2, deleted);
    if (sqlite3_step(mark_compensated_) != SQLITE_DONE) return rollback("mark saga compensated");
  }
  for (const auto& [tp, off] : batch.next_offsets) {
    sqlite3_reset(offset_);
    sqlite3_bind_text(offset_, 1, tp.topic.data(), static_cast<int>(tp.topic.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(offset_, 2, tp.partition);
    sqlite3_bind_int64(offset_, 3, off);
    if (sqlite3_step(offset_) != SQLITE_DONE) return rollback("store offset");
  }
  for (const auto& m : outbox ? outbox(results) : std::vector<kafka::OutMessage>{}) {
    sqlite3_reset(outbox_);
    sqlite3_bind_text(outbox_, 1, m.topic.data(), static_cast<int>(m.topic.size()), SQLITE_TRANSIENT);
    sqlite3_bind_blob(outbox_, 2, m.key.data(), static_cast<int>(m.key.size()), SQLITE_TRANSIENT);
    sqlite3_bind_blob(outbox_, 3, m.value.data(), static_cast<int>(m.value.size()), SQLITE_TRANSIENT);
    if (sqlite3_step(outbox_) != SQLITE_DONE) return rollback("append outbox");
  }
  if (auto st = exec("COMMIT"); !st) {
    (void)exec("ROLLBACK");
    return fail(Errc::kUnavailable, st.error().message);
  }
  return {};
}

Result<std::set<std::string>> SqliteSink::compensated(const std::set<std::string>& saga_ids) {
  std::set<std::string> out;
  for (const auto& id : saga_ids) {
    sqlite3_reset(is_compensated_);
    sqlite3_bind_text(is_compensated_, 1, id.data(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
    const int rc = sqlite3_step(is_compensated_);
    if (rc == SQLITE_ROW)
      out.insert(id);
    else if (rc != SQLITE_DONE)
      return fail(Errc::kUnavailable, sqlite3_errmsg(db_));
  }
  sqlite3_reset(is_compensated_);
  return out;
}

Result<std::map<kafka::TopicPartition, int64_t>> SqliteSink::offsets() {
  std::map<kafka::TopicPartition, int64_t> out;
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT topic, partition, next_offset FROM _starling_offsets", -1, &s, nullptr) !=
      SQLITE_OK)
    return fail(Errc::kIo, sqlite3_errmsg(db_));
  while (sqlite3_step(s) == SQLITE_ROW) {
    out[{reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), sqlite3_column_int(s, 1)}] =
        sqlite3_column_int64(s, 2);
  }
  sqlite3_finalize(s);
  return out;
}

Result<std::vector<kafka::OutboxEntry>> SqliteSink::outbox(std::size_t max) {
  std::vector<kafka::OutboxEntry> out;
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT id, topic, key, value FROM _starling_outbox ORDER BY id LIMIT ?", -1, &s,
                         nullptr) != SQLITE_OK)
    return fail(Errc::kIo, sqlite3_errmsg(db_));
  sqlite3_bind_int64(s, 1, static_cast<int64_t>(max));
  auto blob = [&](int col) {
    return std::string(static_cast<const char*>(sqlite3_column_blob(s, col)), sqlite3_column_bytes(s, col));
  };
  while (sqlite3_step(s) == SQLITE_ROW) {
    kafka::OutboxEntry e;
    e.id = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
    e.message.topic = reinterpret_cast<const char*>(sqlite3_column_text(s, 1));
    e.message.key = blob(2);
    e.message.value = blob(3);
    out.push_back(std::move(e));
  }
  sqlite3_finalize(s);
  return out;
}

Status SqliteSink::ping() { return exec("SELECT 1"); }

Status SqliteSink::outbox_done(const std::vector<uint64_t>& ids) {
  if (ids.empty()) return {};
  return exec(fmt::format("DELETE FROM _starling_outbox WHERE id IN ({})", fmt::join(ids, ",")));
}

}  // namespace starling::load
