#include "services/simulator/report.h"

#include <fmt/format.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include <functional>
#include <optional>
#include <thread>

#include "services/common/http.h"

namespace starling::simulator {

using nlohmann::json;

Result<SagaTotals> fetch_totals(const std::string& saga_url, const std::string& pipeline) {
  auto resp = http_call("GET", saga_url + "/v1/sagas?limit=0" + (pipeline.empty() ? "" : "&pipeline=" + pipeline));
  if (!resp) return std::unexpected(resp.error());
  if (resp->status != 200)
    return fail(Errc::kUnavailable, fmt::format("{}: saga API answered {}: {}", saga_url, resp->status, resp->body));
  try {
    const auto t = json::parse(resp->body).at("totals");
    SagaTotals out;
    out.sagas = t.at("sagas");
    out.accepted = t.at("accepted");
    out.loaded = t.at("loaded");
    out.rejected = t.at("rejected");
    out.in_flight = t.at("in_flight");
    for (const auto& [k, v] : t.at("by_state").items()) out.by_state[k] = v.get<uint64_t>();
    return out;
  } catch (const json::exception& e) {
    return fail(Errc::kInternal, fmt::format("{}: saga API: unexpected answer: {}", saga_url, e.what()));
  }
}

Result<SagaTotals> fetch_totals(const std::vector<std::string>& saga_urls, const std::string& pipeline) {
  SagaTotals sum;
  for (const auto& url : saga_urls) {
    auto t = fetch_totals(url, pipeline);
    if (!t) return t;
    sum.sagas += t->sagas;
    sum.accepted += t->accepted;
    sum.loaded += t->loaded;
    sum.rejected += t->rejected;
    sum.in_flight += t->in_flight;
    for (const auto& [state, n] : t->by_state) sum.by_state[state] += n;
  }
  return sum;
}

Result<json> fetch_saga(const std::string& saga_url, const std::string& saga_id, const std::string& api_key) {
  std::map<std::string, std::string> headers;
  if (!api_key.empty()) headers["Authorization"] = "Bearer " + api_key;
  auto resp = http_call("GET", saga_url + "/v1/sagas/" + saga_id, {}, headers);
  if (!resp) return std::unexpected(resp.error());
  if (resp->status == 404) return fail(Errc::kNotFound, "no saga " + saga_id);
  if (resp->status != 200)
    return fail(Errc::kUnavailable, fmt::format("{}: saga API answered {}: {}", saga_url, resp->status, resp->body));
  auto body = json::parse(resp->body, nullptr, false);
  if (!body.is_object()) return fail(Errc::kInternal, fmt::format("{}: saga API: not a JSON object", saga_url));
  return body;
}

Result<json> fetch_saga(const std::vector<std::string>& saga_urls, const std::string& saga_id,
                        const std::string& api_key) {
  Result<json> first = fail(Errc::kNotFound, "no saga " + saga_id);
  for (const auto& url : saga_urls) {
    auto s = fetch_saga(url, saga_id, api_key);
    if (!s) {
      if (s.error().code != Errc::kNotFound) return s;
    } else if (s->value("owned", true)) {
      return s;
    } else if (!first) {
      first = std::move(s);
    }
  }
  return first;
}

Result<SagaTotals> wait_until_settled(const std::vector<std::string>& saga_urls, const std::string& pipeline,
                                      uint64_t sagas, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Result<SagaTotals> last = fail(Errc::kTimeout, "no answer from the saga API");
  while (std::chrono::steady_clock::now() < deadline) {
    last = fetch_totals(saga_urls, pipeline);
    if (last && last->sagas >= sagas && last->in("COMPLETED") == last->sagas) return last;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  if (!last) return last;
  return fail(Errc::kTimeout, fmt::format("after {} s: {} of {} sagas COMPLETED, {} events in flight",
                                          timeout.count() / 1000, last->in("COMPLETED"), sagas, last->in_flight));
}

Result<SagaTotals> wait_until_settled(const std::string& saga_url, const std::string& pipeline, uint64_t sagas,
                                      std::chrono::milliseconds timeout) {
  return wait_until_settled(std::vector<std::string>{saga_url}, pipeline, sagas, timeout);
}

namespace {

// Runs `sql` (a table name from a validated pipeline file, quoted) on the
// SQLite file read-only, calling `row` for each result row.
Status query_rows(const std::string& db_path, const std::string& sql, const std::function<void(sqlite3_stmt*)>& row) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    std::string msg = sqlite3_errmsg(db);
    sqlite3_close(db);
    return fail(Errc::kNotFound, fmt::format("{}: {}", db_path, msg));
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* s = nullptr;
  Status res;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
    res = fail(Errc::kIo, fmt::format("{}: {}", db_path, sqlite3_errmsg(db)));
  } else {
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) row(s);
    if (rc != SQLITE_DONE) res = fail(Errc::kIo, fmt::format("{}: {}", db_path, sqlite3_errmsg(db)));
  }
  sqlite3_finalize(s);
  sqlite3_close(db);
  return res;
}

}  // namespace

Result<RowCount> count_rows(const std::string& db_path, const std::string& table) {
  std::optional<RowCount> out;
  auto st = query_rows(db_path, fmt::format("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM \"{}\"", table),
                       [&out](sqlite3_stmt* s) {
                         out = RowCount{sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1)};
                       });
  if (!st) return std::unexpected(st.error());
  if (!out) return fail(Errc::kIo, fmt::format("{}: COUNT(*) gave no row", db_path));
  return *out;
}

Result<RowCount> count_rows_postgres(const std::string& dsn, const std::string& table) {
  PGconn* c = PQconnectdb(dsn.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    std::string msg = PQerrorMessage(c);
    PQfinish(c);
    return fail(Errc::kUnavailable, "PostgreSQL: " + msg);
  }
  // The table name comes from a validated pipeline file; quoted all the same.
  PGresult* r = PQexec(c, fmt::format("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM \"{}\"", table).c_str());
  Result<RowCount> out = fail(Errc::kIo, "PostgreSQL: " + std::string(PQresultErrorMessage(r)));
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
    out = RowCount{std::stoll(PQgetvalue(r, 0, 0)), std::stoll(PQgetvalue(r, 0, 1))};
  }
  PQclear(r);
  PQfinish(c);
  return out;
}

Consistency check_consistency(const SagaTotals& totals, const RowCount& rows, uint64_t valid, uint64_t faulty) {
  Consistency c;
  c.balanced = totals.accepted == totals.loaded + totals.rejected + totals.in_flight;
  c.warehouse = static_cast<uint64_t>(rows.rows) == valid && rows.rows == rows.distinct_ids && totals.loaded == valid;
  c.rejects = totals.rejected == faulty;
  return c;
}

Result<std::vector<std::string>> loaded_event_ids(const std::string& db_path, const std::string& table) {
  std::vector<std::string> ids;
  auto st = query_rows(db_path, fmt::format("SELECT event_id FROM \"{}\"", table), [&ids](sqlite3_stmt* s) {
    const auto* text = sqlite3_column_text(s, 0);
    ids.emplace_back(text != nullptr ? reinterpret_cast<const char*>(text) : "");
  });
  if (!st) return std::unexpected(st.error());
  return ids;
}

}  // namespace starling::simulator
