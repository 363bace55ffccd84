// starling-saga: the saga coordinator.
#include <spdlog/spdlog.h>

#include <filesystem>

#include "services/common/http_metrics.h"
#include "services/common/service_main.h"
#include "services/common/shutdown.h"
#include "services/common/time.h"
#include "services/saga/saga_api.h"
#include "services/saga/saga_service.h"

int main(int argc, char** argv) try {
  using namespace starling;
  CLI::App app{
      "starling-saga: folds progress facts from starling.saga into per-saga state in RocksDB, fires the\n"
      "pipelines' deadlines, publishes outcomes to starling.saga.outcomes and serves the saga API."};
  ServiceFlags flags;
  flags.listen = "127.0.0.1:8081";
  add_service_flags(app, flags, /*many_pipelines=*/true);
  add_tls_flags(app, flags.tls);
  std::string retention = "7d";
  std::string tick = "500ms";
  app.add_option("--retention", retention,
                 "Remove COMPLETED and COMPENSATED sagas this long after they finished (90s, 30m, 6h, 7d)")
      ->envname("STARLING_SAGA_RETENTION")
      ->capture_default_str();
  app.add_option("--tick", tick, "How often deadlines and retention are checked")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return run_service("saga", flags, [&](ServiceContext& ctx) {
    const auto retention_ms = saga::parse_duration_ms(retention);
    if (!retention_ms) return ctx.fatal("--retention: " + retention_ms.error().message);
    const auto tick_ms = saga::parse_duration_ms(tick);
    if (!tick_ms || *tick_ms <= 0) return ctx.fatal("--tick: expected a positive duration like 500ms");
    saga::CoordinatorOptions copts;
    copts.defaults.retention_ms = *retention_ms;
    for (const auto& p : ctx.pipelines) {
      copts.pipelines[p.name] = {p.stall_after_ms, p.overdue_after_ms, *retention_ms, p.saga_atomic};
    }
    saga::RocksSagaStore store((std::filesystem::path(ctx.flags.data_dir) / "sagas").string());
    saga::Clock clock = [] { return now_ms(); };
    auto server = ctx.serve(
        2, [] { return Status{}; },
        [&store, &clock](const HttpRequest& r, const HttpResponder& done) {
          done(saga::handle_saga_api(store, r, clock));
        },
        {}, RouteTable::from_openapi(saga::openapi_json()).templates());
    if (!server) return ctx.fatal("starling-saga needs --listen");
    saga::Coordinator coordinator(store, copts, clock);
    saga::SagaOptions sopts;
    sopts.tick = std::chrono::milliseconds(*tick_ms);
    saga::SagaService service(store, coordinator,
                              {ctx.bootstrap, ctx.instance, ctx.kafka_properties(), ctx.kafka.origins}, ctx.instance,
                              sopts);
    const int rc = service.run();
    server->stop();
    return rc;
  });
} catch (const std::exception& e) {
  // Only a bug in the flags' setup gets here: the service body catches its own.
  spdlog::critical("starling-saga: {}", e.what());
  return 1;
}
