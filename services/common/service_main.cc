#include "services/common/service_main.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "services/common/files.h"
#include "services/common/http_metrics.h"
#include "services/common/logging.h"
#include "services/common/metrics.h"
#include "services/common/shutdown.h"

namespace starling {

void add_service_flags(CLI::App& app, ServiceFlags& f, bool many_pipelines) {
  app.set_version_flag("--version", [&app] {
    return std::filesystem::path(app.get_name()).filename().string() + " " + STARLING_VERSION;
  });
  app.footer(
      "Exit codes: 0 stopped on SIGTERM/SIGINT after draining; 1 a permanent failure (the log says which);\n"
      "2 bad flags or configuration (the message names the flag, file and line); 3 did not drain within\n"
      "--drain-timeout (nothing is lost: the unfinished batch is redone by the next run).\n"
      "Every flag can also be set by the STARLING_* environment variable named in its help.");
  app.add_option("--kafka", f.kafka, "Kafka bootstrap servers, host:port[,host:port]")
      ->envname("STARLING_KAFKA_BOOTSTRAP")
      ->capture_default_str();
  auto* p = app.add_option("--pipeline", f.pipeline_files,
                           many_pipelines ? "Pipeline YAML file (repeatable; in the environment, comma-separated)"
                                          : "Pipeline YAML file")
                ->envname("STARLING_PIPELINE")
                ->required();
  if (many_pipelines) p->delimiter(',');
  if (!many_pipelines) p->expected(1);
  app.add_option("--listen", f.listen, "HTTP listen address host:port (port 0 picks a free one)")
      ->envname("STARLING_LISTEN")
      ->capture_default_str();
  app.add_option("--port-file", f.port_file, "Write the bound HTTP port here once listening")
      ->envname("STARLING_PORT_FILE");
  app.add_option("--data-dir", f.data_dir, "Directory for this service's durable state")
      ->envname("STARLING_DATA_DIR")
      ->capture_default_str();
  app.add_option("--log-level", f.log_level, "trace|debug|info|warn|error|off")
      ->envname("STARLING_LOG_LEVEL")
      ->capture_default_str();
  app.add_option("--log-format", f.log_format, "text, or json for one JSON object per line")
      ->envname("STARLING_LOG_FORMAT")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--drain-timeout", f.drain_timeout_s,
                 "Seconds a SIGTERM'd service has to finish in-flight work before it exits anyway")
      ->envname("STARLING_DRAIN_TIMEOUT")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--max-connections", f.max_connections,
                 "Open HTTP connections at most; one over is answered 503 too_many_connections and closed")
      ->envname("STARLING_MAX_CONNECTIONS")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--instance", f.instance, "Name of this instance in progress facts and logs (default: service-pid)")
      ->envname("STARLING_INSTANCE");
  add_kafka_property_flags(app, f.kafka_properties, f.kafka_properties_file);
}

void add_tls_flags(CLI::App& app, TlsOptions& tls) {
  app.add_option("--tls-cert", tls.cert_file,
                 "PEM certificate (then any intermediates) to serve HTTPS on --listen (TLS 1.2 or newer); "
                 "needs --tls-key")
      ->envname("STARLING_TLS_CERT");
  app.add_option("--tls-key", tls.key_file, "PEM private key of --tls-cert (not encrypted)")
      ->envname("STARLING_TLS_KEY");
  app.add_option("--tls-client-ca", tls.client_ca_file,
                 "PEM CA certificate(s): require every HTTPS client to present a certificate signed by one "
                 "(mutual TLS); needs --tls-cert")
      ->envname("STARLING_TLS_CLIENT_CA");
}

std::map<std::string, std::string> ServiceContext::kafka_properties(std::map<std::string, std::string> defaults) const {
  for (const auto& [k, v] : kafka.values) defaults[k] = v;
  return defaults;
}

HttpServerOptions ServiceContext::http_options(int threads) const {
  HttpServerOptions o;
  const auto colon = flags.listen.rfind(':');
  if (colon == std::string::npos)
    throw std::invalid_argument("--listen: expected host:port, got '" + flags.listen + "'");
  o.address = flags.listen.substr(0, colon);
  o.port = static_cast<uint16_t>(std::stoi(flags.listen.substr(colon + 1)));
  o.threads = threads;
  o.max_connections = flags.max_connections;
  o.tls = flags.tls;
  return o;
}

void ServiceContext::start_http(HttpServer& server) const {
  server.start();
  spdlog::info("{} listening on port {}", flags.tls.enabled() ? "https" : "http", server.port());
  // Replaced whole: a supervisor or test that polls the file never reads half of it.
  if (!flags.port_file.empty()) {
    if (auto st = write_file_atomically(flags.port_file, std::to_string(server.port()) + "\n"); !st) {
      throw std::runtime_error("--port-file: " + st.error().message);
    }
  }
}

HttpHandler service_routes(Readiness ready, HttpHandler app, std::vector<std::string> app_routes) {
  std::vector<std::string> routes = {"/healthz", "/readyz", "/metrics"};
  routes.insert(routes.end(), app_routes.begin(), app_routes.end());
  auto handler = [ready = std::move(ready), app = std::move(app)](HttpRequest r, HttpResponder done) {
    if (r.method == "GET" && r.path == "/healthz") return done({200, R"({"status":"ok"})"});
    if (r.method == "GET" && r.path == "/readyz") {
      if (shutdown_requested()) return done(json_error(503, "draining", "shutting down"));
      auto st = ready ? ready() : Status{};
      return st ? done({200, R"({"status":"ready"})"}) : done(json_error(503, "not_ready", st.error().message));
    }
    if (r.method == "GET" && r.path == "/metrics") {
      return done({200, metrics().render(), "text/plain; version=0.0.4; charset=utf-8", {}});
    }
    if (app) return app(std::move(r), std::move(done));
    done(json_error(404, "not_found", "no route for " + r.method + " " + r.path));
  };
  return instrument_http(RouteTable(std::move(routes)), std::move(handler));
}

std::unique_ptr<HttpServer> ServiceContext::serve(int threads, Readiness ready, HttpHandler app,
                                                  const std::function<void(HttpServerOptions&)>& tune,
                                                  std::vector<std::string> app_routes) const {
  if (flags.listen.empty()) return nullptr;
  auto options = http_options(threads);
  if (tune) tune(options);
  auto server =
      std::make_unique<HttpServer>(options, service_routes(std::move(ready), std::move(app), std::move(app_routes)));
  start_http(*server);
  return server;
}

int ServiceContext::fatal(const std::string& message) const {
  spdlog::critical("{}", message);
  return 1;
}

void ServiceContext::sleep_unless_shutdown(std::chrono::milliseconds d) const {
  const auto until = std::chrono::steady_clock::now() + d;
  while (!shutdown_requested() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

int run_service(const std::string& name, const ServiceFlags& flags, const std::function<int(ServiceContext&)>& body,
                const RuleCheck& check_rule) {
  try {
    setup_logging(name, flags.log_level, flags.log_format);
    install_shutdown_handler();
    // The drain bound: a watchdog that ends the process if the body does not
    // return in time after a shutdown request.
    static std::atomic<bool> body_done{false};
    std::thread([timeout = std::chrono::seconds(flags.drain_timeout_s)] {
      wait_for_shutdown();
      const auto until = std::chrono::steady_clock::now() + timeout;
      while (!body_done && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (body_done) return;
      spdlog::critical("did not drain within {} s of the shutdown request; exiting", timeout.count());
      spdlog::default_logger()->flush();
      std::_Exit(3);
    }).detach();
    // Before Kafka, the pipelines or the data folder: a TLS file that is wrong
    // is a configuration error, found at once.
    if (flags.tls.enabled()) check_tls(flags.tls);
    ServiceContext ctx;
    ctx.flags = flags;
    ctx.bootstrap = flags.kafka;
    ctx.instance = flags.instance.empty() ? fmt::format("{}-{}", name, ::getpid()) : flags.instance;
    auto kafka = user_kafka_properties(flags.kafka_properties_file, flags.kafka_properties);
    if (!kafka) throw std::invalid_argument(kafka.error().message);
    ctx.kafka = std::move(*kafka);
    for (const auto& [k, v] : ctx.kafka.values)
      spdlog::info("kafka property {}={} (from {})", k, shown_kafka_value(k, v), ctx.kafka.origins[k]);
    for (const auto& f : flags.pipeline_files) ctx.pipelines.push_back(load_pipeline(f, check_rule));
    std::filesystem::create_directories(flags.data_dir);
    spdlog::info("starting {} {} (kafka {}, {} pipeline(s))", name, STARLING_VERSION, ctx.bootstrap,
                 ctx.pipelines.size());
    metrics()
        .gauge("starling_build_info", "Always 1; the version of the running binary in its labels",
               {{"service", "starling-" + name}, {"version", STARLING_VERSION}})
        .set(1);
    const int rc = body(ctx);
    body_done = true;
    spdlog::info("stopped with exit code {}", rc);
    return rc;
  } catch (const std::exception& e) {
    spdlog::critical("{}: {}", name, e.what());
    return 2;
  }
}

}  // namespace starling
