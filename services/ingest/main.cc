// starling-ingest: HTTP front door for device events.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>

#include "services/common/http_metrics.h"
#include "services/common/service_main.h"
#include "services/common/shutdown.h"
#include "services/ingest/ingest_service.h"
#include "services/ingest/mqtt_bridge.h"

int main(int argc, char** argv) try {
  using namespace starling;
  CLI::App app{
      "starling-ingest: accepts device events over HTTP (JSON, NDJSON or Protobuf) and answers 202 once Kafka "
      "persisted every one of them. See services/ingest/README.md and GET /openapi.json."};
  ServiceFlags flags;
  flags.listen = "127.0.0.1:8080";
  add_service_flags(app, flags, /*many_pipelines=*/true);
  add_tls_flags(app, flags.tls);
  std::string keys_file;
  double device_rate = 0;
  double device_burst = 0;
  std::string saga_url;
  int threads = 4;
  std::size_t max_body = 4 << 20;
  std::size_t max_header = 16 << 10;
  std::size_t max_records = 10'000;
  ingest::RecordLimits limits;
  int read_timeout_s = 15;
  int produce_timeout_ms = 10'000;
  app.add_option("--api-keys", keys_file,
                 "Keys file (YAML: name, sha256, pipelines, devices, rate); without it every request is allowed")
      ->envname("STARLING_API_KEYS")
      ->check(CLI::ExistingFile);
  app.add_option("--device-rate", device_rate, "Events per second each device id may send (0: no limit)")
      ->envname("STARLING_DEVICE_RATE")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--device-burst", device_burst, "Events a device may send at once (default: one second's rate)")
      ->envname("STARLING_DEVICE_BURST")
      ->check(CLI::NonNegativeNumber);
  std::size_t max_tracked_devices = ingest::RateLimiter::kMaxTrackedDevices;
  app.add_option("--max-tracked-devices", max_tracked_devices,
                 "Device rate buckets kept at most (~150 bytes each); over it the least recently used goes")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--saga-url", saga_url, "starling-saga's http://host:port, for GET /v1/sagas/{id}")
      ->envname("STARLING_SAGA_URL");
  app.add_option("--threads", threads, "HTTP worker threads")
      ->envname("STARLING_HTTP_THREADS")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--max-body", max_body, "Largest request body in bytes (413 above)")
      ->envname("STARLING_MAX_BODY")
      ->capture_default_str();
  app.add_option("--max-header", max_header, "Largest request line plus headers in bytes (431 above)")
      ->envname("STARLING_MAX_HEADER")
      ->capture_default_str();
  app.add_option("--max-records", max_records, "Most records in one request (413 above)")
      ->envname("STARLING_MAX_RECORDS")
      ->capture_default_str();
  app.add_option("--max-event-bytes", limits.event_bytes,
                 "Largest record, serialized, in bytes (413 above over HTTP; refused over MQTT). With the default, "
                 "every record a stage derives from it fits Kafka's default message.max.bytes")
      ->envname("STARLING_MAX_EVENT_BYTES")
      ->check(CLI::Range(std::size_t{1}, std::size_t{256} << 10))
      ->capture_default_str();
  app.add_option("--max-field-bytes", limits.field_bytes,
                 "Largest string or bytes value of a record, in bytes (413 above over HTTP; refused over MQTT)")
      ->envname("STARLING_MAX_FIELD_BYTES")
      ->check(CLI::Range(std::size_t{1}, std::size_t{256} << 10))
      ->capture_default_str();
  app.add_option("--read-timeout", read_timeout_s,
                 "Seconds a client has to send a whole request; slower ones (slowloris) and idle keep-alive "
                 "connections are closed")
      ->envname("STARLING_READ_TIMEOUT")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  std::string mqtt;
  ingest::MqttClientOptions mqtt_options;
  app.add_option("--mqtt", mqtt,
                 "mosquitto host:port; subscribes starling/+/+/events at QoS 1 in a persistent session and "
                 "acknowledges a message once Kafka persisted it (see the README's MQTT section)")
      ->envname("STARLING_MQTT")
      ->check(CLI::Validator(
          [&mqtt_options](std::string& v) -> std::string {
            return ingest::parse_mqtt_address(v, mqtt_options.host, mqtt_options.port) ? "" : "not host:port: " + v;
          },
          "HOST:PORT"));
  app.add_option("--mqtt-client-id", mqtt_options.client_id,
                 "MQTT client id; mosquitto keeps unacknowledged messages for it, so keep it stable across restarts")
      ->envname("STARLING_MQTT_CLIENT_ID")
      ->capture_default_str();
  app.add_option("--mqtt-username", mqtt_options.username, "MQTT user name (default: anonymous)")
      ->envname("STARLING_MQTT_USERNAME");
  app.add_option("--mqtt-password", mqtt_options.password, "MQTT password")->envname("STARLING_MQTT_PASSWORD");
  app.add_option("--mqtt-ca-file", mqtt_options.ca_file,
                 "Connect to mosquitto over TLS (1.2 or newer), trusting the CA certificate(s) in this PEM file; "
                 "mosquitto's certificate must name the --mqtt host")
      ->envname("STARLING_MQTT_CA_FILE");
  app.add_option("--mqtt-cert", mqtt_options.cert_file,
                 "PEM client certificate for mosquitto's require_certificate (TLS; needs --mqtt-key)")
      ->envname("STARLING_MQTT_CERT");
  app.add_option("--mqtt-key", mqtt_options.key_file, "PEM private key of --mqtt-cert (not encrypted)")
      ->envname("STARLING_MQTT_KEY");
  app.add_option("--produce-timeout", produce_timeout_ms,
                 "Milliseconds Kafka has to confirm a request's events before the answer is 503 (message.timeout.ms)")
      ->envname("STARLING_PRODUCE_TIMEOUT_MS")
      ->check(CLI::Range(100, 300'000))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return run_service("ingest", flags, [&](ServiceContext& ctx) -> int {
    ingest::IngestOptions options;
    if (!keys_file.empty()) {
      auto keys = KeyStore::load(keys_file);
      if (!keys) return ctx.fatal(keys.error().message);
      spdlog::info("{} API key(s) from {}", keys->keys().size(), keys_file);
      options.keys = std::move(*keys);
    } else {
      spdlog::warn("no --api-keys: every request is allowed (fine on a laptop, not on a network)");
    }
    options.device_rate = {device_rate, device_burst > 0 ? device_burst : std::max(1.0, device_rate)};
    options.max_tracked_devices = max_tracked_devices;
    options.saga_url = saga_url;
    options.max_records = max_records;
    options.limits = limits;
    std::vector<std::string> topics{kSagaTopic};
    for (const auto& p : ctx.pipelines) topics.push_back(p.raw_topic());
    auto producer = kafka::KafkaProducer::create(
        {ctx.bootstrap, ctx.instance,
         ctx.kafka_properties({{"message.timeout.ms", std::to_string(produce_timeout_ms)}}), ctx.kafka.origins},
        {.topics = std::move(topics)});
    if (!producer) return ctx.fatal(producer.error().message);
    std::map<std::string, PipelineConfig> pipelines;
    for (auto& p : ctx.pipelines) pipelines.emplace(p.name, p);
    ingest::IngestService service(std::move(pipelines), **producer, ctx.instance, std::move(options));
    std::unique_ptr<ingest::MqttBridge> bridge;
    if (!mqtt.empty()) {
      bridge = std::make_unique<ingest::MqttBridge>(mqtt_options, service.pipelines(), service.ingestor(), limits);
      bridge->start();
    }
    auto server = ctx.serve(
        threads,
        [&service, &bridge, &mqtt]() -> Status {
          if (!service.ready()) return fail(Errc::kUnavailable, "the Kafka broker is not reachable");
          if (bridge && !bridge->connected()) {
            return fail(Errc::kUnavailable, "not connected to MQTT " + mqtt + ": " + bridge->last_error());
          }
          return {};
        },
        [&service](HttpRequest r, HttpResponder done) { service.handle(std::move(r), std::move(done)); },
        [&](HttpServerOptions& o) {
          o.body_limit = max_body;
          o.header_limit = max_header;
          o.read_timeout_s = read_timeout_s;
        },
        RouteTable::from_openapi(ingest::openapi_json()).templates());
    if (!server) return ctx.fatal("starling-ingest needs --listen");
    while (!shutdown_requested()) {
      service.set_ready((*producer)->broker_reachable(std::chrono::seconds(2)));
      ctx.sleep_unless_shutdown(std::chrono::seconds(2));
    }
    // Drain: stop accepting, answer every request already taken (each waits
    // for its delivery reports), then flush what is left.
    const auto bound = std::chrono::seconds(ctx.flags.drain_timeout_s) * 3 / 4;
    // MQTT first, briefly: what it leaves unacknowledged stays with mosquitto.
    if (bridge) bridge->stop(std::min<std::chrono::milliseconds>(bound / 4, std::chrono::seconds(3)));
    if (!server->drain(bound)) spdlog::warn("some requests were still unanswered after {} s", bound.count());
    (void)(*producer)->flush(std::chrono::seconds(2));
    return 0;
  });
} catch (const std::exception& e) {
  // Only a bug in the flags' setup gets here: the service body catches its own.
  spdlog::critical("starling-ingest: {}", e.what());
  return 1;
}
