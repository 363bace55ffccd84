// starling-load: loads cleaned events into the warehouse.
#include <filesystem>

#include "services/common/service_main.h"
#include "services/load/load_service.h"
#include "services/load/sqlite_sink.h"

int main(int argc, char** argv) {
  using namespace starling;
  CLI::App app{"starling-load: reads <p>.clean and upserts rows by event id into SQLite, offsets in the same transaction."};
  ServiceFlags flags;
  std::string db;
  add_service_flags(app, flags, /*many_pipelines=*/false);
  app.add_option("--db", db, "SQLite database file (default: <data-dir>/<pipeline>.db)")->envname("STARLING_LOAD_DB");
  CLI11_PARSE(app, argc, argv);
  return run_service("load", flags, [&](ServiceContext& ctx) {
    const auto& p = ctx.pipelines.front();
    const auto path = db.empty() ? (std::filesystem::path(ctx.flags.data_dir) / (p.name + ".db")).string() : db;
    load::SqliteSink sink(path, p);
    spdlog::info("loading into {} table {}", path, p.table);
    load::LoadService service(p, sink, {ctx.bootstrap, ctx.instance, {}}, ctx.instance);
    return service.run();
  });
}
