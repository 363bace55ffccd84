// Load-stage throughput against raw baselines, in one run, with the same rows
// and batch size:
//   SQLite:     SqliteSink::write   vs  a prepared INSERT loop, one transaction per batch
//   PostgreSQL: PostgresSink::write vs  a raw COPY, one transaction per batch
// Both sides use the same durability settings (SQLite WAL + synchronous=FULL;
// PostgreSQL fsync=on). Ours also stores offsets and an outbox fact per batch
// and upserts by event id; that is the price measured here.
//
//   build/release/bin/load_bench [--rows N] [--batch N] [--postgres DSN]
// Without --postgres it starts a throw-away server (Debian's postgresql).

#include <fmt/format.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "bench/support/measure.h"
#include "services/load/postgres_sink.h"
#include "services/load/sqlite_sink.h"
#include "starling/v1/ecowheels.pb.h"
#include "tests/support/postgres_server.h"

namespace {

using namespace starling;

constexpr const char* kPipeline = R"(pipeline: bench
schema: {message: starling.v1.RideTelemetry}
load:
  table: rides
  columns: {device_id: device_id, ride_id: ride_id, lat: lat, lon: lon, speed_kmh: speed_kmh,
            battery_pct: battery_pct, temperature_c: temperature_c, odometer_km: odometer_km, status: status}
)";

std::vector<load::Row> make_rows(int n) {
  std::vector<load::Row> rows;
  rows.reserve(n);
  for (int i = 0; i < n; ++i) {
    load::Row r;
    r.envelope.set_event_id(fmt::format("bike-{:04d}-{:09d}", i % 500, i));
    r.envelope.set_saga_id(fmt::format("{:032x}", i / 50));
    r.envelope.set_seq(i % 50);
    r.envelope.set_event_time_ms(1'700'000'000'000 + i);
    r.envelope.set_ingest_time_ms(1'700'000'000'100 + i);
    auto m = std::make_unique<v1::RideTelemetry>();
    m->set_device_id(fmt::format("bike-{:04d}", i % 500));
    m->set_ride_id(fmt::format("ride-{}", i / 200));
    m->set_lat(38.7 + i * 1e-6);
    m->set_lon(-9.1 - i * 1e-6);
    m->set_speed_kmh(18.5);
    m->set_battery_pct(77);
    m->set_temperature_c(19);
    m->set_odometer_km(1000 + i * 0.01);
    m->set_status(v1::RideTelemetry::RIDING);
    r.record = std::move(m);
    rows.push_back(std::move(r));
  }
  return rows;
}

using Run = bench::Measure;
using bench::measure;

Run ours(load::Sink& sink, const std::vector<load::Row>& rows, int batch) {
  // The batches are built before the clock starts, as the baseline's are.
  std::vector<load::SinkBatch> batches;
  for (std::size_t i = 0; i < rows.size(); i += batch) {
    load::SinkBatch b;
    for (std::size_t k = i; k < std::min(rows.size(), i + batch); ++k) {
      b.rows.push_back({rows[k].envelope, std::unique_ptr<google::protobuf::Message>(rows[k].record->New())});
      b.rows.back().record->CopyFrom(*rows[k].record);
    }
    b.next_offsets = {{{"bench.clean", 0}, static_cast<int64_t>(i + batch)}};
    batches.push_back(std::move(b));
  }
  return measure([&] {
    for (const auto& b : batches) {
      auto st = sink.write(b, [](const std::vector<load::RowResult>&) {
        return std::vector<kafka::OutMessage>{{"starling.saga", "k", std::string(60, 'f'), {}}};
      });
      if (!st) throw std::runtime_error(st.error().message);
    }
  });
}

Run sqlite_baseline(const std::string& path, const std::vector<load::Row>& rows, int batch) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", nullptr, nullptr, nullptr);
  sqlite3_exec(db,
               "CREATE TABLE rides (event_id TEXT PRIMARY KEY, saga_id TEXT, seq INTEGER, event_time_ms INTEGER, "
               "ingest_time_ms INTEGER, device_id TEXT, ride_id TEXT, lat REAL, lon REAL, speed_kmh REAL, battery_pct "
               "REAL, temperature_c REAL, odometer_km REAL, status TEXT)",
               nullptr, nullptr, nullptr);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO rides VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", -1, &s, nullptr);
  const auto run = measure([&] {
    for (std::size_t i = 0; i < rows.size(); i += batch) {
      sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
      for (std::size_t k = i; k < std::min(rows.size(), i + batch); ++k) {
        const auto& e = rows[k].envelope;
        const auto& m = static_cast<const v1::RideTelemetry&>(*rows[k].record);
        sqlite3_reset(s);
        sqlite3_bind_text(s, 1, e.event_id().c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 2, e.saga_id().c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 3, e.seq());
        sqlite3_bind_int64(s, 4, e.event_time_ms());
        sqlite3_bind_int64(s, 5, e.ingest_time_ms());
        sqlite3_bind_text(s, 6, m.device_id().c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 7, m.ride_id().c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(s, 8, m.lat());
        sqlite3_bind_double(s, 9, m.lon());
        sqlite3_bind_double(s, 10, m.speed_kmh());
        sqlite3_bind_double(s, 11, m.battery_pct());
        sqlite3_bind_double(s, 12, m.temperature_c());
        sqlite3_bind_double(s, 13, m.odometer_km());
        sqlite3_bind_text(s, 14, v1::RideTelemetry::Status_Name(m.status()).c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_step(s);
      }
      sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    }
  });
  sqlite3_finalize(s);
  sqlite3_close(db);
  return run;
}

Run postgres_baseline(const std::string& dsn, const std::vector<load::Row>& rows, int batch) {
  PGconn* c = PQconnectdb(dsn.c_str());
  PQclear(PQexec(c,
                 "CREATE TABLE raw_rides (event_id text PRIMARY KEY, saga_id text, seq bigint, event_time_ms bigint, "
                 "ingest_time_ms bigint, device_id text, ride_id text, lat double precision, lon double precision, "
                 "speed_kmh double precision, battery_pct double precision, temperature_c double precision, "
                 "odometer_km double precision, status text)"));
  const auto run = measure([&] {
    for (std::size_t i = 0; i < rows.size(); i += batch) {
      PQclear(PQexec(c, "BEGIN"));
      PQclear(PQexec(c, "COPY raw_rides FROM STDIN"));
      std::string buf;
      for (std::size_t k = i; k < std::min(rows.size(), i + batch); ++k) {
        const auto& e = rows[k].envelope;
        const auto& m = static_cast<const v1::RideTelemetry&>(*rows[k].record);
        buf += fmt::format("{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n", e.event_id(), e.saga_id(),
                           e.seq(), e.event_time_ms(), e.ingest_time_ms(), m.device_id(), m.ride_id(), m.lat(), m.lon(),
                           m.speed_kmh(), m.battery_pct(), m.temperature_c(), m.odometer_km(),
                           v1::RideTelemetry::Status_Name(m.status()));
      }
      PQputCopyData(c, buf.data(), static_cast<int>(buf.size()));
      PQputCopyEnd(c, nullptr);
      PQclear(PQgetResult(c));
      PQclear(PQexec(c, "COMMIT"));
    }
  });
  PQfinish(c);
  return run;
}

void row(const char* stage, int n, const Run& a, const Run& b) {
  const double ours = n / a.seconds;
  const double base = n / b.seconds;
  std::printf("| %-28s | %12.0f | %12.0f | %5.2f | %10.2f | %10.2f |\n", stage, ours, base, ours / base,
              a.cpu / n * 1e6, b.cpu / n * 1e6);
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"Load-stage throughput against a raw SQLite insert loop and a raw PostgreSQL COPY."};
  int n = 100'000;
  int batch = 2'000;
  std::string dsn;
  app.add_option("--rows", n, "Rows to load")->capture_default_str();
  app.add_option("--batch", batch, "Rows per transaction, both sides")->capture_default_str();
  app.add_option("--postgres", dsn, "Use this server (libpq DSN) instead of starting one");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  char tmpl[] = "/tmp/starling-load-bench-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const auto pipeline = parse_pipeline(kPipeline, "bench.yaml");
  const auto rows = make_rows(n);

  std::unique_ptr<starling::testing::PostgresServer> pg;
  if (dsn.empty()) {
    pg = std::make_unique<starling::testing::PostgresServer>(dir);
    if (!pg->initialised() || !pg->start()) {
      std::fprintf(stderr, "cannot start postgres in %s\n", dir.c_str());
      return 1;
    }
    dsn = pg->dsn();
  }

  const auto base_sqlite = sqlite_baseline(dir + "/raw.db", rows, batch);
  Run ours_sqlite;
  {
    load::SqliteSink sink(dir + "/ours.db", pipeline);
    ours_sqlite = ours(sink, rows, batch);
  }
  const auto base_pg = postgres_baseline(dsn, rows, batch);
  Run ours_pg;
  {
    load::PostgresSink sink(dsn, pipeline);
    ours_pg = ours(sink, rows, batch);
  }
  std::printf("%d rows, %d rows per transaction\n\n", n, batch);
  std::printf("| %-28s | %12s | %12s | %5s | %10s | %10s |\n", "stage", "ours rows/s", "base rows/s", "ratio",
              "ours CPU-s/M", "base CPU-s/M");
  std::printf("|%s|%s|%s|%s|%s|%s|\n", std::string(30, '-').c_str(), std::string(14, '-').c_str(),
              std::string(14, '-').c_str(), std::string(7, '-').c_str(), std::string(12, '-').c_str(),
              std::string(12, '-').c_str());
  row("load → SQLite (vs INSERT)", n, ours_sqlite, base_sqlite);
  row("load → PostgreSQL (vs COPY)", n, ours_pg, base_pg);
  std::printf("\nCPU-s/M is this process only (the PostgreSQL server's CPU is not counted).\n");
  std::filesystem::remove_all(dir);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "load_bench: %s\n", e.what());
  return 1;
}
