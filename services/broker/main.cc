// starling-broker: a single-node, durable, Kafka-wire-compatible broker.
// Thin main: flags, logging, wiring. Everything else is in starling::broker_core.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "services/broker/broker.h"
#include "services/broker/server.h"
#include "services/common/files.h"
#include "services/common/http.h"
#include "services/common/metrics.h"

namespace {

using starling::broker::asio::ip::tcp;

tcp::endpoint parse_listen(const std::string& s, const std::string& flag = "--listen") {
  auto colon = s.rfind(':');
  if (colon == std::string::npos) throw CLI::ValidationError(flag, "expected HOST:PORT, got " + s);
  auto host = s.substr(0, colon);
  const std::string digits = s.substr(colon + 1);
  int port = -1;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  if (ec != std::errc{} || end != digits.data() + digits.size() || port < 0 || port > 65535) {
    throw CLI::ValidationError(flag, "expected HOST:PORT with a port 0..65535, got " + s);
  }
  boost::system::error_code bad;
  auto address = starling::broker::asio::ip::make_address(host, bad);
  if (bad) throw CLI::ValidationError(flag, "expected an IP address before the port, got " + host);
  return {address, static_cast<uint16_t>(port)};
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{
      "starling-broker: a single-node, durable broker speaking the Kafka wire protocol "
      "(librdkafka, kcat). Data and committed offsets survive restarts and kill -9."};
  std::string listen = "127.0.0.1:9092";
  std::string data_dir;
  std::string port_file;
  std::string advertised_host;
  int advertised_port = 0;
  int32_t partitions = 1;
  bool auto_create = true;
  std::string flush = "every-batch";
  int64_t retention_ms = -1;
  int64_t retention_bytes = -1;
  uint64_t segment_bytes = 64ull << 20;
  size_t max_open_segment_files = 0;
  int32_t message_max_bytes = starling::broker::BrokerConfig{}.message_max_bytes;
  starling::broker::ServerConfig server_config;
  starling::broker::GroupConfig group_config;
  std::string log_level = "info";
  app.add_option("--listen", listen, "HOST:PORT to listen on; port 0 picks a free port")->capture_default_str();
  app.add_option("--data-dir", data_dir, "Directory for logs, topics and committed offsets (created if missing)")
      ->required();
  app.add_option("--port-file", port_file,
                 "Once listening, atomically write HOST:PORT to this file (for supervisors and tests)");
  app.add_option("--advertised-host", advertised_host,
                 "Host name clients are told to connect to (default: the --listen host)");
  app.add_option("--advertised-port", advertised_port,
                 "Port clients are told to connect to (default: the bound one): that of a TLS terminator or proxy in "
                 "front of this listener")
      ->check(CLI::Range(1, 65535));
  app.add_option("--partitions", partitions, "Partition count of auto-created topics and of CreateTopics with -1")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--auto-create", auto_create, "Create unknown topics when clients ask for their metadata (true|false)")
      ->capture_default_str();
  app.add_option("--flush", flush,
                 "every-batch: fsync each append before acknowledging it; <ms>: fsync every <ms> milliseconds "
                 "and acknowledge once written (faster, may lose the last <ms> on power loss)")
      ->capture_default_str();
  app.add_option("--retention-ms", retention_ms, "Delete closed segments older than this (-1: keep forever)")
      ->capture_default_str();
  app.add_option("--retention-bytes", retention_bytes,
                 "Per partition, delete the oldest closed segments beyond this size (-1: no limit)")
      ->capture_default_str();
  app.add_option("--segment-bytes", segment_bytes, "Roll to a new segment file past this size")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1024}, uint64_t{1} << 31));
  app.add_option("--max-open-segment-files", max_open_segment_files,
                 "Read descriptors of closed segment files kept open, across all partitions (0: a quarter of "
                 "RLIMIT_NOFILE, at most 512); the active segment of each partition is open besides")
      ->capture_default_str();
  app.add_option("--message-max-bytes", message_max_bytes,
                 "Largest record batch a Produce may append, whole and after compression (Kafka's "
                 "message.max.bytes); larger ones get MESSAGE_TOO_LARGE. A topic's max.message.bytes config "
                 "overrides it")
      ->capture_default_str()
      ->check(CLI::Range(int32_t{0}, INT32_MAX));
  app.add_option("--max-connections", server_config.max_connections,
                 "Connections beyond this many are accepted and closed at once")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1} << 20));
  app.add_option("--max-inflight-request-bytes", server_config.max_inflight_request_bytes,
                 "Bytes of requests read and not yet handled, across all connections; past it connections are not "
                 "read until handlers finish (a larger single request is still taken alone)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, SIZE_MAX));
  int64_t connections_max_idle_ms = server_config.connections_max_idle.count();
  app.add_option("--connections-max-idle-ms", connections_max_idle_ms,
                 "Close a connection with no request in flight that has sent nothing for this long "
                 "(Kafka's connections.max.idle.ms)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  int64_t request_read_timeout_ms = server_config.request_read_timeout.count();
  app.add_option("--request-read-timeout-ms", request_read_timeout_ms,
                 "Close a connection whose request frame has not arrived whole this long after its first byte")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  int64_t group_initial_rebalance_delay_ms = group_config.initial_rebalance_delay.count();
  app.add_option("--group-initial-rebalance-delay-ms", group_initial_rebalance_delay_ms,
                 "When an empty group gets its first member, wait this long for more before completing the join, "
                 "again after each wait in which one joined, up to the rebalance timeout "
                 "(Kafka's group.initial.rebalance.delay.ms; 0: no wait)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{INT32_MAX}));
  std::string metrics_listen;
  std::string metrics_port_file;
  app.add_option("--metrics-listen", metrics_listen,
                 "HOST:PORT of an HTTP listener serving GET /metrics (Prometheus text: requests and latency per "
                 "API, bytes per topic, offsets and lag per group and partition, connections, fsync latency) and "
                 "GET /healthz; port 0 picks a free port; empty: none");
  app.add_option("--metrics-port-file", metrics_port_file,
                 "Once the metrics listener is bound, atomically write its HOST:PORT to this file");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")->capture_default_str();
  app.set_version_flag("--version", std::string("starling-broker ") + STARLING_VERSION);
  // Every flag can come from the environment: --retention-ms from
  // STARLING_BROKER_RETENTION_MS (a flag given on the command line wins).
  for (CLI::Option* opt : app.get_options()) {
    const std::string& name = opt->get_single_name();
    if (opt->get_lnames().empty() || name == "help" || name == "version") continue;
    std::string env = "STARLING_BROKER_";
    for (const char c : name) env += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    opt->envname(env);
  }
  CLI11_PARSE(app, argc, argv);

  try {
    spdlog::set_level(spdlog::level::from_str(log_level));
    // Logs go to stderr: stdout carries the one "listening on" line.
    spdlog::default_logger()->sinks().clear();
    spdlog::default_logger()->sinks().push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());

    starling::broker::BrokerConfig config;
    config.data_dir = data_dir;
    config.default_partitions = partitions;
    config.auto_create_topics = auto_create;
    if (flush != "every-batch") {
      try {
        config.flush_interval_ms = std::stoll(flush);
      } catch (const std::exception&) {
        throw std::runtime_error("--flush must be every-batch or a number of milliseconds, got " + flush);
      }
      if (config.flush_interval_ms <= 0) throw std::runtime_error("--flush interval must be > 0 ms");
    }
    config.log.retention_ms = retention_ms;
    config.log.retention_bytes = retention_bytes;
    config.log.segment_bytes = segment_bytes;
    config.max_open_segment_files = max_open_segment_files;
    config.message_max_bytes = message_max_bytes;
    group_config.initial_rebalance_delay = std::chrono::milliseconds(group_initial_rebalance_delay_ms);
    config.groups = group_config;

    server_config.connections_max_idle = std::chrono::milliseconds(connections_max_idle_ms);
    server_config.request_read_timeout = std::chrono::milliseconds(request_read_timeout_ms);
    auto endpoint = parse_listen(listen);
    starling::broker::asio::io_context io(1);
    starling::broker::Broker broker(io.get_executor(), config);
    starling::broker::Server server(io, broker, endpoint, server_config);
    auto bound = server.local_endpoint();
    broker.config().advertised_host = advertised_host.empty() ? bound.address().to_string() : advertised_host;
    broker.config().advertised_port = advertised_port != 0 ? static_cast<uint16_t>(advertised_port) : bound.port();
    broker.start();
    server.start();

    // /metrics on its own HTTP listener (Starling's HTTP server, with its
    // limits). A scrape first refreshes the gauges read from broker state on
    // the broker's thread, then renders the page from there.
    std::unique_ptr<starling::HttpServer> metrics_server;
    if (!metrics_listen.empty()) {
      const auto metrics_endpoint = parse_listen(metrics_listen, "--metrics-listen");
      auto ex = io.get_executor();
      metrics_server = std::make_unique<starling::HttpServer>(
          starling::HttpServerOptions{.address = metrics_endpoint.address().to_string(),
                                      .port = metrics_endpoint.port(),
                                      .threads = 1,
                                      .body_limit = 1024,
                                      .header_limit = 8 << 10,
                                      .read_timeout_s = 10,
                                      .max_connections = 64},
          [&broker, &server, ex](const starling::HttpRequest& req, const starling::HttpResponder& done) {
            if (req.path == "/healthz" && req.method == "GET") {
              done({200, R"({"status":"ok"})"});
            } else if (req.path == "/metrics" && req.method == "GET") {
              starling::broker::asio::post(ex, [&broker, &server, done] {
                broker.refresh_metrics();
                starling::metrics()
                    .gauge("starling_broker_connections", "Open client connections on the Kafka listener")
                    .set(static_cast<double>(server.connection_count()));
                done({200, starling::metrics().render(), "text/plain; version=0.0.4; charset=utf-8", {}});
              });
            } else if (req.path == "/metrics" || req.path == "/healthz") {
              done(starling::json_error(405, "method_not_allowed", "only GET", "method"));
            } else {
              done(
                  starling::json_error(404, "not_found", "this listener serves GET /metrics and GET /healthz", "path"));
            }
          });
      metrics_server->start();
      const std::string metrics_address =
          metrics_endpoint.address().to_string() + ":" + std::to_string(metrics_server->port());
      if (!metrics_port_file.empty()) {
        if (auto st = starling::write_file_atomically(metrics_port_file, metrics_address + "\n"); !st) {
          throw std::runtime_error(st.error().message);
        }
      }
      spdlog::info("metrics on http://{}/metrics", metrics_address);
    }
    starling::metrics()
        .gauge("starling_build_info", "Always 1; the version of the running binary in its labels",
               {{"service", "starling-broker"}, {"version", STARLING_VERSION}})
        .set(1);

    starling::broker::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      spdlog::info("signal {}: shutting down", sig);
      if (metrics_server) metrics_server->stop();
      server.stop();
      broker.flush_all();
      io.stop();
    });

    std::string address = bound.address().to_string() + ":" + std::to_string(bound.port());
    std::cout << "listening on " << address << '\n' << std::flush;
    if (!port_file.empty()) {
      // Replaced whole, so a reader never sees a partial file.
      if (auto st = starling::write_file_atomically(port_file, address + "\n"); !st) {
        throw std::runtime_error(st.error().message);
      }
    }
    spdlog::info("starling-broker listening on {} (advertised {}:{}), data in {}", address,
                 broker.config().advertised_host, broker.config().advertised_port, data_dir);
    io.run();
    spdlog::info("stopped");
    return 0;
  } catch (const std::exception& e) {
    spdlog::critical("starling-broker: {}", e.what());
    return 1;
  }
} catch (const std::exception& e) {
  // Only the flags' setup gets here (the body catches its own).
  std::cerr << "starling-broker: " << e.what() << '\n';
  return 1;
}
