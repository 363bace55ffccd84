// starling-extract: polls the external APIs that pipelines declare as their
// `source`, and produces what it pulls as ingest produces what is pushed.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <filesystem>
#include <thread>

#include "services/common/service_main.h"
#include "services/common/shutdown.h"
#include "services/extract/extractor.h"

int main(int argc, char** argv) try {
  using namespace starling;
  CLI::App app{
      "starling-extract: polls each pipeline's `source: http_poll:` API on its schedule, produces the records to "
      "<p>.raw as one saga per page (those that do not convert to <p>.rejected), and advances the cursor in RocksDB "
      "under --data-dir only once Kafka persisted the whole window. See services/extract/README.md."};
  ServiceFlags flags;
  add_service_flags(app, flags, /*many_pipelines=*/true);
  extract::ExtractOptions options;
  int timeout_ms = options.client.timeout_ms;
  int64_t backoff_ms = options.client.backoff_base.count();
  int64_t backoff_max_ms = options.client.backoff_max.count();
  int64_t max_retry_after_s = options.client.max_retry_after.count() / 1000;
  app.add_option("--http-timeout", timeout_ms, "Milliseconds one API request may take, connect to last byte")
      ->envname("STARLING_EXTRACT_HTTP_TIMEOUT_MS")
      ->check(CLI::Range(100, 600'000))
      ->capture_default_str();
  app.add_option("--max-response-bytes", options.client.max_response_bytes,
                 "Largest API response body; a larger one fails the poll (cursor unchanged)")
      ->envname("STARLING_EXTRACT_MAX_RESPONSE_BYTES")
      ->check(CLI::Range(std::size_t{1}, std::size_t{256} << 20))
      ->capture_default_str();
  app.add_option("--max-attempts", options.client.max_attempts,
                 "Tries of one request on 5xx, timeouts and refused connections before the poll fails")
      ->envname("STARLING_EXTRACT_MAX_ATTEMPTS")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  app.add_option("--backoff", backoff_ms, "Milliseconds of the first back-off; doubles per attempt, full jitter")
      ->envname("STARLING_EXTRACT_BACKOFF_MS")
      ->check(CLI::Range(int64_t{1}, int64_t{600'000}))
      ->capture_default_str();
  app.add_option("--backoff-max", backoff_max_ms, "Longest back-off, in milliseconds")
      ->envname("STARLING_EXTRACT_BACKOFF_MAX_MS")
      ->check(CLI::Range(int64_t{1}, int64_t{3'600'000}))
      ->capture_default_str();
  app.add_option("--max-retry-after", max_retry_after_s,
                 "Longest Retry-After (seconds) waited for; longer fails the poll")
      ->envname("STARLING_EXTRACT_MAX_RETRY_AFTER_S")
      ->check(CLI::Range(int64_t{0}, int64_t{86'400}))
      ->capture_default_str();
  app.add_option("--max-pages", options.max_pages, "Most pages in one window (a looping next link fails the poll)")
      ->envname("STARLING_EXTRACT_MAX_PAGES")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  HttpClientOptions tls;
  app.add_option("--api-ca-file", tls.ca_file,
                 "PEM file of the CAs that sign the APIs' certificates (https://); default: the system's CAs. "
                 "Certificates and host names are always verified")
      ->envname("STARLING_EXTRACT_CA_FILE")
      ->check(CLI::ExistingFile);
  app.add_option("--max-event-bytes", options.limits.event_bytes,
                 "Largest pulled record, serialized; a larger one goes to <p>.rejected (rule limits)")
      ->envname("STARLING_MAX_EVENT_BYTES")
      ->check(CLI::Range(std::size_t{1}, std::size_t{256} << 10))
      ->capture_default_str();
  app.add_option("--max-field-bytes", options.limits.field_bytes,
                 "Largest string or bytes value of a pulled record; a larger one goes to <p>.rejected (rule limits)")
      ->envname("STARLING_MAX_FIELD_BYTES")
      ->check(CLI::Range(std::size_t{1}, std::size_t{256} << 10))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  options.client.timeout_ms = timeout_ms;
  options.client.backoff_base = std::chrono::milliseconds(backoff_ms);
  options.client.backoff_max = std::chrono::milliseconds(backoff_max_ms);
  options.client.max_retry_after = std::chrono::seconds(max_retry_after_s);
  return run_service("extract", flags, [&](ServiceContext& ctx) -> int {
    std::vector<const PipelineConfig*> sourced;
    std::vector<std::string> topics{kSagaTopic};
    for (const auto& p : ctx.pipelines) {
      if (!p.source) {
        spdlog::info("pipeline {} declares no source: nothing to poll", p.name);
        continue;
      }
      sourced.push_back(&p);
      topics.push_back(p.raw_topic());
      topics.push_back(p.rejected_topic());
    }
    if (sourced.empty()) return ctx.fatal("no pipeline declares a source: http_poll: block; nothing to do");
    auto store = extract::CursorStore::open((std::filesystem::path(ctx.flags.data_dir) / "cursors").string());
    if (!store) return ctx.fatal(store.error().message);
    auto producer =
        kafka::KafkaProducer::create({ctx.bootstrap, ctx.instance, ctx.kafka_properties(), ctx.kafka.origins},
                                     {.queue_full_wait = std::chrono::seconds(5), .topics = topics});
    if (!producer) return ctx.fatal(producer.error().message);
    std::atomic<bool> reachable{false};
    auto server = ctx.serve(1, [&reachable]() -> Status {
      if (!reachable) return fail(Errc::kUnavailable, "the Kafka broker is not reachable");
      return {};
    });
    std::vector<std::unique_ptr<extract::Extractor>> extractors;
    std::vector<std::thread> threads;
    for (const auto* p : sourced) {
      extractors.push_back(std::make_unique<extract::Extractor>(
          *p, **producer, **store, ctx.instance, options, extract::http_get(tls), [] { return shutdown_requested(); },
          extract::http_post(tls)));
      spdlog::info(
          "polling {} {}: {}", p->name,
          p->source->cron ? "at cron '" + p->source->cron->text + "'" : fmt::format("every {} ms", p->source->every_ms),
          extract::redact(*p->source, p->source->url));
      threads.emplace_back([e = extractors.back().get()] { e->run(); });
    }
    while (!shutdown_requested()) {
      reachable = (*producer)->broker_reachable(std::chrono::seconds(2));
      ctx.sleep_unless_shutdown(std::chrono::seconds(2));
    }
    // Drain: a poll in flight finishes its page (it waits for the page's
    // delivery reports) and stops before the next; its window is redone.
    for (auto& t : threads) t.join();
    (void)(*producer)->flush(std::chrono::seconds(2));
    if (server) server->stop();
    return 0;
  });
} catch (const std::exception& e) {
  spdlog::critical("starling-extract: {}", e.what());
  return 1;
}
