#include "services/common/service_main.h"

#include <unistd.h>

#include <filesystem>
#include <thread>

#include <spdlog/spdlog.h>

#include "services/common/logging.h"
#include "services/common/shutdown.h"

namespace starling {

void add_service_flags(CLI::App& app, ServiceFlags& f, bool many_pipelines) {
  app.add_option("--kafka", f.kafka, "Kafka bootstrap servers, host:port[,host:port]")
      ->envname("STARLING_KAFKA_BOOTSTRAP")
      ->capture_default_str();
  auto* p = app.add_option("--pipeline", f.pipeline_files,
                           many_pipelines ? "Pipeline YAML file (repeatable)" : "Pipeline YAML file")
                ->envname("STARLING_PIPELINE")
                ->required();
  if (!many_pipelines) p->expected(1);
  app.add_option("--listen", f.listen, "HTTP listen address host:port (port 0 picks a free one)")
      ->envname("STARLING_LISTEN")
      ->capture_default_str();
  app.add_option("--port-file", f.port_file, "Write the bound HTTP port here once listening");
  app.add_option("--data-dir", f.data_dir, "Directory for this service's durable state")
      ->envname("STARLING_DATA_DIR")
      ->capture_default_str();
  app.add_option("--log-level", f.log_level, "trace|debug|info|warn|error|off")
      ->envname("STARLING_LOG_LEVEL")
      ->capture_default_str();
  app.add_option("--instance", f.instance, "Name of this instance in progress facts and logs (default: service-pid)");
}

HttpServerOptions ServiceContext::http_options(int threads) const {
  HttpServerOptions o;
  const auto colon = flags.listen.rfind(':');
  if (colon == std::string::npos) throw std::invalid_argument("--listen: expected host:port, got '" + flags.listen + "'");
  o.address = flags.listen.substr(0, colon);
  o.port = static_cast<uint16_t>(std::stoi(flags.listen.substr(colon + 1)));
  o.threads = threads;
  return o;
}

void ServiceContext::start_http(HttpServer& server) const {
  server.start();
  spdlog::info("http listening on port {}", server.port());
  if (!flags.port_file.empty()) write_port_file(flags.port_file, std::to_string(server.port()));
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

int run_service(const std::string& name, const ServiceFlags& flags, const std::function<int(ServiceContext&)>& body) {
  try {
    setup_logging(name, flags.log_level);
    install_shutdown_handler();
    ServiceContext ctx;
    ctx.flags = flags;
    ctx.bootstrap = flags.kafka;
    ctx.instance = flags.instance.empty() ? fmt::format("{}-{}", name, ::getpid()) : flags.instance;
    for (const auto& f : flags.pipeline_files) ctx.pipelines.push_back(load_pipeline(f));
    std::filesystem::create_directories(flags.data_dir);
    spdlog::info("starting {} (kafka {}, {} pipeline(s))", ctx.instance, ctx.bootstrap, ctx.pipelines.size());
    const int rc = body(ctx);
    spdlog::info("stopped with exit code {}", rc);
    return rc;
  } catch (const std::exception& e) {
    spdlog::critical("{}: {}", name, e.what());
    return 2;
  }
}

}  // namespace starling
