// starling-ingest: HTTP front door for device events.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "services/common/service_main.h"
#include "services/common/shutdown.h"
#include "services/ingest/ingest_service.h"

int main(int argc, char** argv) {
  using namespace starling;
  CLI::App app{"starling-ingest: accepts device events over HTTP and answers 202 once Kafka persisted them."};
  ServiceFlags flags;
  flags.listen = "127.0.0.1:8080";
  add_service_flags(app, flags, /*many_pipelines=*/true);
  CLI11_PARSE(app, argc, argv);
  return run_service("ingest", flags, [&](ServiceContext& ctx) -> int {
    auto producer = kafka::KafkaProducer::create({ctx.bootstrap, ctx.instance, {}});
    if (!producer) return ctx.fatal(producer.error().message);
    std::map<std::string, PipelineConfig> pipelines;
    for (auto& p : ctx.pipelines) pipelines.emplace(p.name, p);
    ingest::IngestService service(std::move(pipelines), **producer, ctx.instance);
    auto server = ctx.serve(
        4,
        [&service]() -> Status {
          if (!service.ready()) return fail(Errc::unavailable, "the Kafka broker is not reachable");
          return {};
        },
        [&service](HttpRequest r, HttpResponder done) { service.handle(std::move(r), std::move(done)); });
    if (!server) return ctx.fatal("starling-ingest needs --listen");
    while (!shutdown_requested()) {
      service.set_ready((*producer)->broker_reachable(std::chrono::seconds(2)));
      ctx.sleep_unless_shutdown(std::chrono::seconds(2));
    }
    // Drain: stop accepting, answer every request already taken (each waits
    // for its delivery reports), then flush what is left.
    const auto bound = std::chrono::seconds(ctx.flags.drain_timeout_s) * 3 / 4;
    if (!server->drain(bound)) spdlog::warn("some requests were still unanswered after {} s", bound.count());
    (void)(*producer)->flush(std::chrono::seconds(2));
    return 0;
  });
}
