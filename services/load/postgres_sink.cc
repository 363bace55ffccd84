#include "services/load/postgres_sink.h"

#include <fmt/format.h>
#include <google/protobuf/util/time_util.h>
#include <libpq-fe.h>
#include <spdlog/spdlog.h>

#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "services/common/records.h"

namespace starling::load {

using google::protobuf::FieldDescriptor;

namespace {

std::string q(const std::string& ident) { return "\"" + ident + "\""; }

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, ResultDeleter>;

// SQLSTATE class 22 (data exception) and 23 (integrity constraint violation)
// mean "this row is wrong"; anything else means "the database is not OK".
bool row_refused(const PGresult* r) {
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  return state != nullptr && (std::string_view(state).starts_with("22") || std::string_view(state).starts_with("23"));
}

// COPY text format: backslash, tab, newline and carriage return are escaped.
void copy_escape(std::string& out, std::string_view v) {
  for (const char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out += c;
    }
  }
}

// A field's value as PostgreSQL text input, or nullopt for NULL.
std::optional<std::string> pg_text(const google::protobuf::Message& m, const FieldDescriptor* f) {
  const auto* r = m.GetReflection();
  if (f->has_presence() && !r->HasField(m, f)) return std::nullopt;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return fmt::format("{}", r->GetDouble(m, f));
    case FieldDescriptor::CPPTYPE_FLOAT:
      return fmt::format("{}", r->GetFloat(m, f));
    default:
      return field_text(m, f);  // integers, bool ("true"), enum names, RFC 3339 timestamps, strings
  }
}

constexpr const char* kEnvelopeColumns[] = {"event_id",      "saga_id",        "seq",
                                            "event_time_ms", "ingest_time_ms", kDeviceColumn};

std::vector<std::optional<std::string>> row_values(const Row& row, const PipelineConfig& p) {
  const auto& e = row.envelope;
  std::vector<std::optional<std::string>> v = {e.event_id(),
                                               e.saga_id(),
                                               std::to_string(e.seq()),
                                               std::to_string(e.event_time_ms()),
                                               std::to_string(e.ingest_time_ms()),
                                               e.device_id()};
  for (const auto& c : p.columns) v.push_back(pg_text(*row.record, c.descriptor));
  return v;
}

}  // namespace

std::string postgres_type(const FieldDescriptor* f) {
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
      return "bigint";
    case FieldDescriptor::CPPTYPE_BOOL:
      return "boolean";
    case FieldDescriptor::CPPTYPE_FLOAT:
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return "double precision";
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return "timestamp with time zone";
    default:
      return "text";
  }
}

PostgresSink::PostgresSink(std::string dsn, const PipelineConfig& pipeline, int connect_timeout_s)
    : dsn_(std::move(dsn)), pipeline_(pipeline) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(connect_timeout_s);
  for (;;) {
    auto st = connect();
    if (st) break;
    if (std::chrono::steady_clock::now() >= deadline) throw std::runtime_error("postgres: " + st.error().message);
    spdlog::warn("postgres: {}; retrying", st.error().message);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  if (auto st = migrate(); !st) {
    PQfinish(conn_);
    conn_ = nullptr;
    throw std::runtime_error("postgres: " + st.error().message);
  }
  std::string names, params, updates, selects;
  int n = 0;
  auto add = [&](const std::string& name) {
    names += (n ? ", " : "") + q(name);
    selects += (n ? ", " : "") + q(name);
    params += fmt::format("{}${}", n ? ", " : "", n + 1);
    if (name != "event_id") updates += (updates.empty() ? "" : ", ") + fmt::format("{0} = excluded.{0}", q(name));
    ++n;
  };
  for (const auto* c : kEnvelopeColumns) add(c);
  for (const auto& c : pipeline.columns) add(c.name);
  column_list_ = names;
  // Rewritten only when the content changed (see sqlite_sink.cc): a replay
  // that yields the same row leaves it and its saga_id alone.
  std::string mine = fmt::format("{0}.event_time_ms, {0}.ingest_time_ms, {0}.{1}", q(pipeline.table), q(kDeviceColumn));
  std::string theirs = fmt::format("excluded.event_time_ms, excluded.ingest_time_ms, excluded.{}", q(kDeviceColumn));
  for (const auto& c : pipeline.columns) {
    mine += fmt::format(", {}.{}", q(pipeline.table), q(c.name));
    theirs += fmt::format(", excluded.{}", q(c.name));
  }
  const auto conflict =
      fmt::format(" ON CONFLICT (event_id) DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})", updates, mine, theirs);
  upsert_select_ = fmt::format("INSERT INTO {0} ({1}) SELECT {2} FROM _starling_stage{3}", q(pipeline.table), names,
                               selects, conflict);
  upsert_values_ = fmt::format("INSERT INTO {0} ({1}) VALUES ({2}){3}", q(pipeline.table), names, params, conflict);
}

PostgresSink::~PostgresSink() {
  if (conn_ != nullptr) PQfinish(conn_);
}

Status PostgresSink::connect() {
  if (conn_ != nullptr) PQfinish(conn_);
  conn_ = PQconnectdb(dsn_.c_str());
  if (PQstatus(conn_) != CONNECTION_OK) return fail(Errc::kUnavailable, PQerrorMessage(conn_));
  // Server notices ("relation already exists, skipping") are debug output.
  PQsetNoticeProcessor(
      conn_, [](void*, const char* msg) { spdlog::debug("postgres: {}", msg); }, nullptr);
  return {};
}

Status PostgresSink::exec(const std::string& sql) {
  PgResult r(PQexec(conn_, sql.c_str()));
  const auto status = PQresultStatus(r.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return fail(row_refused(r.get()) ? Errc::kInvalidArgument : Errc::kUnavailable,
                fmt::format("{}: {}", sql.substr(0, 80), PQresultErrorMessage(r.get())));
  }
  return {};
}

Status PostgresSink::migrate() {
  // Loaders of one pipeline may start together (several instances):
  // PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against a concurrent
  // one (a unique violation in pg_type), and both could add a column. One
  // transaction under an advisory lock per table serialises them.
  if (auto st = exec("BEGIN"); !st) return st;
  const char* lock_params[] = {pipeline_.table.c_str()};
  PgResult lock(PQexecParams(conn_, "SELECT pg_advisory_xact_lock(hashtext('starling-migrate:' || $1))", 1, nullptr,
                             lock_params, nullptr, nullptr, 0));
  Status st = PQresultStatus(lock.get()) == PGRES_TUPLES_OK
                  ? migrate_locked()
                  : fail(Errc::kUnavailable, PQresultErrorMessage(lock.get()));
  if (st) return exec("COMMIT");
  (void)exec("ROLLBACK");
  return st;
}

Status PostgresSink::migrate_locked() {
  std::string cols =
      "event_id text PRIMARY KEY, saga_id text NOT NULL, seq bigint NOT NULL, "
      "event_time_ms bigint NOT NULL, ingest_time_ms bigint NOT NULL, " +
      q(kDeviceColumn) + " text";
  for (const auto& c : pipeline_.columns) cols += fmt::format(", {} {}", q(c.name), postgres_type(c.descriptor));
  for (const auto& sql : {
           fmt::format("CREATE TABLE IF NOT EXISTS {} ({})", q(pipeline_.table), cols),
           fmt::format("CREATE INDEX IF NOT EXISTS {} ON {} (saga_id)", q(pipeline_.table + "_saga"),
                       q(pipeline_.table)),
           std::string("CREATE TABLE IF NOT EXISTS _starling_offsets (topic text NOT NULL, partition integer NOT NULL, "
                       "next_offset bigint NOT NULL, PRIMARY KEY (topic, partition))"),
           std::string("CREATE TABLE IF NOT EXISTS _starling_compensated (saga_id text PRIMARY KEY, rows_deleted "
                       "bigint NOT NULL)"),
           std::string("CREATE TABLE IF NOT EXISTS _starling_outbox (id bigserial PRIMARY KEY, topic text NOT NULL, "
                       "key bytea NOT NULL, value bytea NOT NULL)"),
       }) {
    if (auto st = exec(sql); !st) return st;
  }
  const char* params[] = {pipeline_.table.c_str()};
  PgResult r(PQexecParams(conn_,
                          "SELECT column_name, data_type FROM information_schema.columns "
                          "WHERE table_schema = current_schema() AND table_name = $1",
                          1, nullptr, params, nullptr, nullptr, 0));
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) return fail(Errc::kUnavailable, PQresultErrorMessage(r.get()));
  std::unordered_map<std::string, std::string> existing;
  for (int i = 0; i < PQntuples(r.get()); ++i) existing[PQgetvalue(r.get(), i, 0)] = PQgetvalue(r.get(), i, 1);
  // Tables made before the device column: its rows have NULL there and are
  // not checked. The trigger refuses rewriting an event id for another
  // device (sink.h); SQLSTATE 23505 makes it a refused row, dead-lettered.
  const auto trigger = q(pipeline_.table + "_event_id_conflict");
  for (const auto& sql : {
           existing.contains(kDeviceColumn)
               ? std::string("SELECT 1")
               : fmt::format("ALTER TABLE {} ADD COLUMN {} text", q(pipeline_.table), q(kDeviceColumn)),
           fmt::format("CREATE OR REPLACE FUNCTION {0}() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN "
                       "IF OLD.{1} IS NOT NULL AND NEW.{1} IS DISTINCT FROM OLD.{1} THEN "
                       "RAISE EXCEPTION '{2}: event id % was loaded for another device', OLD.event_id "
                       "USING ERRCODE = 'unique_violation'; END IF; RETURN NEW; END $f$",
                       trigger, q(kDeviceColumn), kEventIdConflict),
           fmt::format("CREATE OR REPLACE TRIGGER {0} BEFORE UPDATE ON {1} FOR EACH ROW EXECUTE FUNCTION {0}()",
                       trigger, q(pipeline_.table)),
       }) {
    if (auto st = exec(sql); !st) return st;
  }
  for (const auto& c : pipeline_.columns) {
    const auto want = postgres_type(c.descriptor);
    auto it = existing.find(c.name);
    if (it == existing.end()) {
      if (auto st = exec(fmt::format("ALTER TABLE {} ADD COLUMN {} {}", q(pipeline_.table), q(c.name), want)); !st)
        return st;
    } else if (it->second != want) {
      return fail(Errc::kInvalidArgument,
                  fmt::format("column {}.{} is {} in the database but the pipeline maps field {} as {}; "
                              "migrate the table by hand or map a new column",
                              pipeline_.table, c.name, it->second, c.field, want));
    }
  }
  return {};
}

Status PostgresSink::copy_rows(const std::vector<const Row*>& rows, const std::string& table) {
  PgResult start(PQexec(conn_, fmt::format("COPY {} ({}) FROM STDIN", table, column_list_).c_str()));
  if (PQresultStatus(start.get()) != PGRES_COPY_IN) return fail(Errc::kUnavailable, PQresultErrorMessage(start.get()));
  std::string buf;
  for (const auto* row : rows) {
    bool first = true;
    for (const auto& v : row_values(*row, pipeline_)) {
      if (!first) buf += '\t';
      first = false;
      if (v) {
        copy_escape(buf, *v);
      } else {
        buf += "\\N";
      }
    }
    buf += '\n';
    if (buf.size() > (1 << 20)) {
      if (PQputCopyData(conn_, buf.data(), static_cast<int>(buf.size())) != 1)
        return fail(Errc::kUnavailable, PQerrorMessage(conn_));
      buf.clear();
    }
  }
  if (!buf.empty() && PQputCopyData(conn_, buf.data(), static_cast<int>(buf.size())) != 1)
    return fail(Errc::kUnavailable, PQerrorMessage(conn_));
  if (PQputCopyEnd(conn_, nullptr) != 1) return fail(Errc::kUnavailable, PQerrorMessage(conn_));
  PgResult done(PQgetResult(conn_));
  const bool ok = PQresultStatus(done.get()) == PGRES_COMMAND_OK;
  const bool refused = row_refused(done.get());
  const std::string msg = PQresultErrorMessage(done.get());
  while (PgResult more{PQgetResult(conn_)}) {
  }
  if (!ok) return fail(refused ? Errc::kInvalidArgument : Errc::kUnavailable, "COPY: " + msg);
  return {};
}

Status PostgresSink::upsert_one(const Row& row, bool& refused, std::string& error) {
  const auto values = row_values(row, pipeline_);
  std::vector<const char*> params;
  params.reserve(values.size());
  for (const auto& v : values) params.push_back(v ? v->c_str() : nullptr);
  if (auto st = exec("SAVEPOINT row"); !st) return st;
  PgResult r(PQexecParams(conn_, upsert_values_.c_str(), static_cast<int>(params.size()), nullptr, params.data(),
                          nullptr, nullptr, 0));
  if (PQresultStatus(r.get()) == PGRES_COMMAND_OK) return exec("RELEASE SAVEPOINT row");
  if (!row_refused(r.get())) return fail(Errc::kUnavailable, PQresultErrorMessage(r.get()));
  refused = true;
  error = PQresultErrorMessage(r.get());
  while (!error.empty() && error.back() == '\n') error.pop_back();
  return exec("ROLLBACK TO SAVEPOINT row");
}

Status PostgresSink::write_once(const SinkBatch& batch, const OutboxBuilder& outbox) {
  if (auto st = exec("BEGIN"); !st) return st;
  auto abort = [&](Error e) -> Status {
    (void)exec("ROLLBACK");
    return std::unexpected(std::move(e));
  };
  // ON CONFLICT cannot touch one row twice in a statement: the last copy of
  // an event id in the batch wins, as it would row by row.
  std::vector<RowResult> results(batch.rows.size());
  std::unordered_map<std::string, std::size_t> last;
  for (std::size_t i = 0; i < batch.rows.size(); ++i) last[batch.rows[i].envelope.event_id()] = i;
  std::vector<const Row*> unique;
  for (std::size_t i = 0; i < batch.rows.size(); ++i) {
    results[i].written = true;
    if (last[batch.rows[i].envelope.event_id()] == i) unique.push_back(&batch.rows[i]);
  }
  if (!unique.empty()) {
    // Fast path, for a batch of new events: COPY straight into the table.
    // A redelivery or a replay hits the primary key (23505) and takes the
    // upsert path; a refused row takes the row-by-row path.
    if (auto st = exec("SAVEPOINT bulk"); !st) return abort(st.error());
    auto st = copy_rows(unique, q(pipeline_.table));
    if (!st && st.error().code != Errc::kInvalidArgument) return abort(st.error());
    if (!st) {
      if (auto rb = exec("ROLLBACK TO SAVEPOINT bulk"); !rb) return abort(rb.error());
      // The staging table exists only in this transaction: the fast path
      // pays nothing for it.
      st = exec(fmt::format("CREATE TEMP TABLE _starling_stage (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP",
                            q(pipeline_.table)));
      if (st) st = copy_rows(unique, "_starling_stage");
      if (st) st = exec(upsert_select_);
      if (!st && st.error().code != Errc::kInvalidArgument) return abort(st.error());
    }
    if (!st) {
      if (auto rb = exec("ROLLBACK TO SAVEPOINT bulk"); !rb) return abort(rb.error());
      for (std::size_t i = 0; i < batch.rows.size(); ++i) {
        if (last[batch.rows[i].envelope.event_id()] != i) continue;
        bool refused = false;
        std::string error;
        if (auto one = upsert_one(batch.rows[i], refused, error); !one) return abort(one.error());
        if (refused) results[i] = RowResult{false, error};
      }
    }
    if (auto rel = exec("RELEASE SAVEPOINT bulk"); !rel) return abort(rel.error());
  }
  for (const auto& saga : batch.compensate) {
    const char* p[] = {saga.c_str()};
    PgResult del(PQexecParams(conn_, fmt::format("DELETE FROM {} WHERE saga_id = $1", q(pipeline_.table)).c_str(), 1,
                              nullptr, p, nullptr, nullptr, 0));
    if (PQresultStatus(del.get()) != PGRES_COMMAND_OK)
      return abort({Errc::kUnavailable, PQresultErrorMessage(del.get())});
    const std::string deleted = PQcmdTuples(del.get());
    const char* mp[] = {saga.c_str(), deleted.c_str()};
    PgResult mark(PQexecParams(conn_,
                               "INSERT INTO _starling_compensated (saga_id, rows_deleted) VALUES ($1, $2) "
                               "ON CONFLICT DO NOTHING",
                               2, nullptr, mp, nullptr, nullptr, 0));
    if (PQresultStatus(mark.get()) != PGRES_COMMAND_OK)
      return abort({Errc::kUnavailable, PQresultErrorMessage(mark.get())});
  }
  for (const auto& [tp, off] : batch.next_offsets) {
    const auto part = std::to_string(tp.partition);
    const auto next = std::to_string(off);
    const char* p[] = {tp.topic.c_str(), part.c_str(), next.c_str()};
    PgResult r(PQexecParams(conn_,
                            "INSERT INTO _starling_offsets (topic, partition, next_offset) VALUES ($1, $2, $3) "
                            "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                            3, nullptr, p, nullptr, nullptr, 0));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return abort({Errc::kUnavailable, PQresultErrorMessage(r.get())});
  }
  for (const auto& m : outbox ? outbox(results) : std::vector<kafka::OutMessage>{}) {
    const char* p[] = {m.topic.c_str(), m.key.data(), m.value.data()};
    const int lengths[] = {0, static_cast<int>(m.key.size()), static_cast<int>(m.value.size())};
    const int formats[] = {0, 1, 1};  // key and value as binary bytea
    PgResult r(PQexecParams(conn_, "INSERT INTO _starling_outbox (topic, key, value) VALUES ($1, $2, $3)", 3, nullptr,
                            p, lengths, formats, 0));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return abort({Errc::kUnavailable, PQresultErrorMessage(r.get())});
  }
  if (auto st = exec("COMMIT"); !st) return abort(st.error());
  return {};
}

Status PostgresSink::write(const SinkBatch& batch, const OutboxBuilder& outbox) {
  if (PQstatus(conn_) != CONNECTION_OK) {
    if (auto st = connect(); !st) return st;
    spdlog::info("postgres: reconnected");
  }
  auto st = write_once(batch, outbox);
  if (!st && PQstatus(conn_) != CONNECTION_OK) {
    return fail(Errc::kUnavailable, "postgres connection lost: " + st.error().message);
  }
  return st;
}

Result<std::map<kafka::TopicPartition, int64_t>> PostgresSink::offsets() {
  if (PQstatus(conn_) != CONNECTION_OK) {
    if (auto st = connect(); !st) return std::unexpected(st.error());
  }
  PgResult r(PQexec(conn_, "SELECT topic, partition, next_offset FROM _starling_offsets"));
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) return fail(Errc::kUnavailable, PQresultErrorMessage(r.get()));
  std::map<kafka::TopicPartition, int64_t> out;
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    out[{PQgetvalue(r.get(), i, 0), std::stoi(PQgetvalue(r.get(), i, 1))}] = std::stoll(PQgetvalue(r.get(), i, 2));
  }
  return out;
}

Status PostgresSink::ping() {
  if (PQstatus(conn_) != CONNECTION_OK) return connect();
  PgResult r(PQexec(conn_, "SELECT 1"));
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) return fail(Errc::kUnavailable, PQresultErrorMessage(r.get()));
  return {};
}

Result<std::set<std::string>> PostgresSink::compensated(const std::set<std::string>& saga_ids) {
  std::set<std::string> out;
  if (saga_ids.empty()) return out;
  if (PQstatus(conn_) != CONNECTION_OK) {
    if (auto st = connect(); !st) return std::unexpected(st.error());
  }
  // One round trip: the ids as a text array literal, each quoted and escaped.
  std::string array = "{";
  for (const auto& id : saga_ids) {
    if (array.size() > 1) array += ',';
    array += '"';
    for (const char c : id) {
      if (c == '"' || c == '\\') array += '\\';
      array += c;
    }
    array += '"';
  }
  array += '}';
  const char* p[] = {array.c_str()};
  PgResult r(PQexecParams(conn_, "SELECT saga_id FROM _starling_compensated WHERE saga_id = ANY($1::text[])", 1,
                          nullptr, p, nullptr, nullptr, 0));
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) return fail(Errc::kUnavailable, PQresultErrorMessage(r.get()));
  for (int i = 0; i < PQntuples(r.get()); ++i) out.insert(PQgetvalue(r.get(), i, 0));
  return out;
}

Result<std::vector<kafka::OutboxEntry>> PostgresSink::outbox(std::size_t max) {
  if (PQstatus(conn_) != CONNECTION_OK) {
    if (auto st = connect(); !st) return std::unexpected(st.error());
  }
  const auto limit = std::to_string(max);
  const char* p[] = {limit.c_str()};
  // Binary results: key and value come back as raw bytes.
  PgResult r(PQexecParams(conn_, "SELECT id, topic, key, value FROM _starling_outbox ORDER BY id LIMIT $1::bigint", 1,
                          nullptr, p, nullptr, nullptr, 1));
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) return fail(Errc::kUnavailable, PQresultErrorMessage(r.get()));
  std::vector<kafka::OutboxEntry> out;
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    kafka::OutboxEntry e;
    uint64_t id = 0;
    const auto* b = reinterpret_cast<const unsigned char*>(PQgetvalue(r.get(), i, 0));
    for (int k = 0; k < 8; ++k) id = (id << 8) | b[k];
    e.id = id;
    e.message.topic.assign(PQgetvalue(r.get(), i, 1), PQgetlength(r.get(), i, 1));
    e.message.key.assign(PQgetvalue(r.get(), i, 2), PQgetlength(r.get(), i, 2));
    e.message.value.assign(PQgetvalue(r.get(), i, 3), PQgetlength(r.get(), i, 3));
    out.push_back(std::move(e));
  }
  return out;
}

Status PostgresSink::outbox_done(const std::vector<uint64_t>& ids) {
  if (ids.empty()) return {};
  return exec(fmt::format("DELETE FROM _starling_outbox WHERE id = ANY('{{{}}}'::bigint[])", fmt::join(ids, ",")));
}

}  // namespace starling::load
