#pragma once
// What every service's thin main shares: the common flags (each also read
// from a STARLING_* environment variable), logging, pipeline loading, the
// shutdown signal and the HTTP port file.

#include <CLI/CLI.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "services/common/http.h"
#include "services/common/kafka_properties.h"
#include "services/common/pipeline.h"

namespace starling {

struct ServiceFlags {
  std::string kafka = "127.0.0.1:9092";
  std::vector<std::string> pipeline_files;
  std::string listen;     // host:port for HTTP; empty: no HTTP
  std::string port_file;  // written with the bound port once listening
  std::string data_dir = "./data";
  std::string log_level = "info";
  std::string log_format = "text";                                    // text | json
  int drain_timeout_s = 20;                                           // after SIGTERM, exit within this bound
  std::size_t max_connections = HttpServerOptions{}.max_connections;  // HTTP; one over gets 503
  std::string instance;                                               // defaults to <service>-<pid>
  std::vector<std::string> kafka_properties;                          // --kafka-property k=v
  std::string kafka_properties_file;
  TlsOptions tls;  // HTTPS on --listen; only for services that call add_tls_flags
};

void add_service_flags(CLI::App& app, ServiceFlags& flags, bool many_pipelines);
/// --tls-cert, --tls-key and --tls-client-ca (STARLING_TLS_CERT, _KEY, _CLIENT_CA):
/// HTTPS, and with a client CA mutual TLS, on --listen. run_service checks the
/// files before anything else starts (a bad one is exit 2, naming the file).
void add_tls_flags(CLI::App& app, TlsOptions& tls);

/// Why a service is not ready to take work; an error when not ready.
using Readiness = std::function<Status()>;

/// The probes every service has, wrapped around its own routes: GET /healthz
/// (the process runs), /readyz (`ready`; 503 with the reason) and /metrics
/// (Prometheus text). Any other request goes to `app` (404 when empty).
/// Every answer is counted and timed by route (http_metrics.h): the probes'
/// and `app_routes`, the templates of the app's OpenAPI document.
HttpHandler service_routes(Readiness ready, HttpHandler app, std::vector<std::string> app_routes = {});

struct ServiceContext {
  ServiceFlags flags;
  std::string bootstrap;
  std::string instance;
  std::vector<PipelineConfig> pipelines;
  /// The user's librdkafka properties (file, STARLING_KAFKA_*, flags).
  KafkaProperties kafka;
  /// The service's own librdkafka defaults overridden by the user's.
  std::map<std::string, std::string> kafka_properties(std::map<std::string, std::string> defaults = {}) const;

  HttpServerOptions http_options(int threads) const;
  /// Starts the server and writes the port file. Throws on bind failure.
  void start_http(HttpServer& server) const;
  /// Serves service_routes(ready, app, app_routes). Returns nullptr when
  /// --listen is empty. `tune` may change the limits (body, headers,
  /// timeouts) before binding.
  std::unique_ptr<HttpServer> serve(int threads, Readiness ready, HttpHandler app = {},
                                    const std::function<void(HttpServerOptions&)>& tune = {},
                                    std::vector<std::string> app_routes = {}) const;
  int fatal(const std::string& message) const;
  void sleep_unless_shutdown(std::chrono::milliseconds d) const;
};

/// Sets up logging and signals, loads the pipelines (with the stage's own
/// `check_rule`, if it has one), runs `body`, and turns startup exceptions
/// into a one-line error and exit code 2. Once SIGTERM or SIGINT arrives,
/// `body` has --drain-timeout to return; past it the process exits with code 3
/// (every path that accepts data is crash-safe, so this loses nothing: the
/// unfinished batch is redone by the next run).
int run_service(const std::string& name, const ServiceFlags& flags, const std::function<int(ServiceContext&)>& body,
                const RuleCheck& check_rule = nullptr);

}  // namespace starling
