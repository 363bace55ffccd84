// starling-clean: applies a pipeline's cleaning rules.
#include <spdlog/spdlog.h>

#include <filesystem>

#include "services/clean/clean_service.h"
#include "services/clean/rule_config.h"
#include "services/common/service_main.h"

int main(int argc, char** argv) try {
  using namespace starling;
  CLI::App app{
      "starling-clean: reads <p>.raw, applies the pipeline's rules, writes <p>.clean and <p>.rejected.\n"
      "Per-device state and the consumed offsets live in RocksDB under --data-dir/state."};
  ServiceFlags flags;
  add_service_flags(app, flags, /*many_pipelines=*/false);
  clean::CleanOptions options;
  app.add_option("--batch-max", options.batch_max,
                 "Most input messages cleaned, produced and committed as one batch (one RocksDB commit each)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}))
      ->capture_default_str()
      ->envname("STARLING_CLEAN_BATCH_MAX");
  app.add_option("--threads", options.threads,
                 "Threads cleaning a batch; each input partition's messages stay on one thread, in order")
      ->check(CLI::Range(1, 64))
      ->capture_default_str()
      ->envname("STARLING_CLEAN_THREADS");
  CLI11_PARSE(app, argc, argv);
  // The pipeline file loads with the rules' checks: their problems come with the file's others, before anything starts.
  return run_service(
      "clean", flags,
      [&options](ServiceContext& ctx) {
        const auto& pipeline = ctx.pipelines.front();
        std::filesystem::create_directories(ctx.flags.data_dir);
        clean::RocksCleanStore store((std::filesystem::path(ctx.flags.data_dir) / "state").string(),
                                     pipeline.dedupe_window_ms);
        clean::CleanService service(
            pipeline, store,
            {ctx.bootstrap, ctx.instance, ctx.kafka_properties(), ctx.kafka.origins, ctx.flags.instance}, ctx.instance,
            options);
        // Probes when --listen is set (/healthz, /readyz, /metrics).
        auto server = ctx.serve(1, []() -> Status { return {}; });
        const int rc = service.run();
        if (server) server->stop();
        return rc;
      },
      clean::check_rule);
} catch (const std::exception& e) {
  // Only a bug in the flags' setup gets here: the service body catches its own.
  spdlog::critical("starling-clean: {}", e.what());
  return 1;
}
