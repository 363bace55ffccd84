// starling-ingest: HTTP front door for device events.
#include <CLI/CLI.hpp>

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
    HttpServer server(ctx.http_options(4), [&](HttpRequest r, HttpResponder done) { service.handle(std::move(r), std::move(done)); });
    ctx.start_http(server);
    while (!shutdown_requested()) {
      service.set_ready((*producer)->broker_reachable(std::chrono::seconds(2)));
      ctx.sleep_unless_shutdown(std::chrono::seconds(2));
    }
    // Stop accepting, then let in-flight deliveries answer before exiting.
    server.stop();
    (void)(*producer)->flush(std::chrono::seconds(10));
    return 0;
  });
}
