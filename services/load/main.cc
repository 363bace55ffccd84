// starling-load: loads cleaned events into the warehouse.
#include <spdlog/spdlog.h>

#include <filesystem>
#include <memory>

#include "services/common/service_main.h"
#include "services/load/load_service.h"
#include "services/load/postgres_sink.h"
#include "services/load/sqlite_sink.h"

int main(int argc, char** argv) try {
  using namespace starling;
  CLI::App app{
      "starling-load: reads <p>.clean and upserts rows by event id into SQLite or PostgreSQL,\n"
      "with the consumed offsets in the same transaction."};
  ServiceFlags flags;
  std::string sink_kind;
  std::string db;
  std::string dsn;
  load::LoadOptions load_opts;
  int batch_ms = static_cast<int>(load_opts.batch_wait.count());
  add_service_flags(app, flags, /*many_pipelines=*/false);
  app.add_option("--sink", sink_kind, "sqlite or postgres (default: the pipeline's load.sink)")
      ->envname("STARLING_LOAD_SINK")
      ->check(CLI::IsMember({"sqlite", "postgres"}));
  app.add_option("--db", db, "SQLite database file (default: <data-dir>/<pipeline>.db)")->envname("STARLING_LOAD_DB");
  app.add_option("--postgres", dsn,
                 "libpq connection string for the postgres sink, e.g. 'host=127.0.0.1 port=5432 dbname=starling'")
      ->envname("STARLING_POSTGRES_DSN");
  app.add_option("--batch-rows", load_opts.batch_max, "Rows per transaction, at most")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--batch-ms", batch_ms, "How long a batch waits to fill, in ms")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  load_opts.batch_wait = std::chrono::milliseconds(batch_ms);
  return run_service("load", flags, [&](ServiceContext& ctx) {
    const auto& p = ctx.pipelines.front();
    const auto kind = sink_kind.empty() ? p.sink : sink_kind;
    std::unique_ptr<load::Sink> sink;
    if (kind == "postgres") {
      if (dsn.empty()) return ctx.fatal("the postgres sink needs --postgres (or STARLING_POSTGRES_DSN)");
      sink = std::make_unique<load::PostgresSink>(dsn, p);
      spdlog::info("loading into postgres table {}", p.table);
    } else {
      const auto path = db.empty() ? (std::filesystem::path(ctx.flags.data_dir) / (p.name + ".db")).string() : db;
      sink = std::make_unique<load::SqliteSink>(path, p);
      spdlog::info("loading into {} table {}", path, p.table);
    }
    load::LoadService service(
        p, *sink, {ctx.bootstrap, ctx.instance, ctx.kafka_properties(), ctx.kafka.origins, ctx.flags.instance},
        ctx.instance, load_opts);
    // Probes when --listen is set: /readyz is 503 while the sink is down.
    auto server = ctx.serve(1, [&service]() -> Status {
      if (!service.ready()) return fail(Errc::kUnavailable, "the sink's database does not answer; retrying");
      return {};
    });
    const int rc = service.run();
    if (server) server->stop();
    return rc;
  });
} catch (const std::exception& e) {
  // Only a bug in the flags' setup gets here: the service body catches its own.
  spdlog::critical("starling-load: {}", e.what());
  return 1;
}
