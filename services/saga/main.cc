// starling-saga: the saga coordinator.
#include <spdlog/spdlog.h>

#include <filesystem>
#include <thread>

#include "broker-adapters/kafka/stage_lag.h"
#include "services/common/api_keys.h"
#include "services/common/http_metrics.h"
#include "services/common/service_main.h"
#include "services/common/shutdown.h"
#include "services/common/time.h"
#include "services/saga/console.h"
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
  std::string keys_file;
  app.add_option("--api-keys", keys_file,
                 "Keys file (SHA-256 hashes, as ingest's) for the saga API and the console at /console/: reads need "
                 "a key with scope read, replay controls admin. Without it everything is open, and --listen must "
                 "be a loopback address")
      ->envname("STARLING_SAGA_API_KEYS");
  std::string replay_dir;
  app.add_option("--replay-dir", replay_dir,
                 "The --state-dir of `starling replay`: the console lists those replays and pauses, resumes and "
                 "cancels them (starling up passes <data-dir>/replays)")
      ->envname("STARLING_REPLAY_DIR");
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
    saga::SagaHttpOptions http;
    http.replay_dir = replay_dir;
    http.kafka = ctx.bootstrap;
    http.kafka_properties = ctx.kafka;
    if (!keys_file.empty()) {
      auto keys = KeyStore::load(keys_file);
      if (!keys) return ctx.fatal("--api-keys: " + keys.error().message);
      http.keys = std::move(*keys);
    } else if (!ctx.flags.listen.empty() && !is_loopback_listen(ctx.flags.listen)) {
      return ctx.fatal("--listen " + ctx.flags.listen +
                       ": the saga API and console are open without --api-keys, so they listen on loopback only "
                       "(127.0.0.1, ::1, localhost); give --api-keys to listen beyond");
    }
    saga::RocksSagaStore store((std::filesystem::path(ctx.flags.data_dir) / "sagas").string());
    saga::Clock clock = [] { return now_ms(); };
    saga::Activity activity;
    copts.activity = &activity;
    saga::Ownership ownership;  // the API counts the sagas of the partitions this instance owns
    http.ownership = &ownership;
    saga::TopicsApiOptions topics;
    topics.kafka = {ctx.bootstrap, ctx.instance + "-console", ctx.kafka_properties(), ctx.kafka.origins};
    topics.pipelines = ctx.pipelines;
    http.topics = std::move(topics);
    const saga::SagaHttp front(store, activity, clock, std::move(http));
    auto routes = RouteTable::from_openapi(saga::openapi_json()).templates();
    routes.emplace_back("/console/{file}");
    auto server = ctx.serve(
        2, [] { return Status{}; },
        [&front](const HttpRequest& r, const HttpResponder& done) { done(front.handle(r)); }, {}, std::move(routes));
    if (!server) return ctx.fatal("starling-saga needs --listen");
    saga::Coordinator coordinator(store, copts, clock);
    saga::SagaOptions sopts;
    sopts.tick = std::chrono::milliseconds(*tick_ms);
    sopts.activity = &activity;
    sopts.ownership = &ownership;
    // An --instance the operator gave is this member's static id (KIP-345).
    const kafka::KafkaOptions kopts{ctx.bootstrap, ctx.instance, ctx.kafka_properties(), ctx.kafka.origins,
                                    ctx.flags.instance};
    // Lag per stage for the console, read from Kafka as `starling groups`
    // reads it: only while someone watches the overview (each read makes
    // Kafka clients), and with short waits, so that a read in progress never
    // holds up a drain for long.
    std::vector<std::string> names;
    names.reserve(ctx.pipelines.size());
    for (const auto& p : ctx.pipelines) names.push_back(p.name);
    std::atomic<bool> done{false};
    std::thread lag_poller([&] {
      const auto stop = [&done] { return done.load() || shutdown_requested(); };
      do {
        if (now_ms() - activity.last_viewed_ms() > 60'000) continue;
        auto lags = kafka::stage_lags(kopts, names, std::chrono::seconds(2));
        for (const auto& l : lags ? *lags : std::vector<kafka::StageLag>{}) {
          activity.set_lag(l.pipeline == "*" ? "" : l.pipeline, l.stage, l.lag);
        }
        if (!lags) spdlog::debug("console lag: {}", lags.error().message);
      } while (sleep_unless(std::chrono::seconds(5), stop));
    });
    saga::SagaService service(store, coordinator, kopts, ctx.instance, sopts);
    const int rc = service.run();
    done = true;
    lag_poller.join();
    server->stop();
    return rc;
  });
} catch (const std::exception& e) {
  // Only a bug in the flags' setup gets here: the service body catches its own.
  spdlog::critical("starling-saga: {}", e.what());
  return 1;
}
