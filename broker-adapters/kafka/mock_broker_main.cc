// starling-mock-broker: hosts librdkafka's in-memory mock cluster in its own
// process, for client-side fault-injection tests. It keeps nothing across a
// restart and, in librdkafka 2.0.2, drops data past 5 MiB per partition:
// it is not a substitute for starling-broker.
#include <csignal>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "services/common/http.h"
#include "services/common/logging.h"
#include "services/common/shutdown.h"

int main(int argc, char** argv) {
  CLI::App app{"Host librdkafka's mock Kafka cluster on loopback (client-side tests only)."};
  std::vector<std::string> topics;
  std::string port_file;
  std::string log_level = "info";
  int brokers = 1;
  app.add_option("--topic", topics, "Pre-create a topic, as name:partitions (repeatable)");
  app.add_option("--brokers", brokers, "Number of mock brokers")->check(CLI::Range(1, 9));
  app.add_option("--port-file", port_file, "Write the bootstrap address here once ready");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off");
  CLI11_PARSE(app, argc, argv);
  starling::setup_logging("mock-broker", log_level);
  starling::install_shutdown_handler();

  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == nullptr) {
    spdlog::error("rd_kafka_new: {}", err);
    return 1;
  }
  rd_kafka_mock_cluster_t* mc = rd_kafka_mock_cluster_new(rk, brokers);
  if (mc == nullptr) {
    spdlog::error("cannot create the mock cluster");
    return 1;
  }
  for (const auto& t : topics) {
    const auto colon = t.rfind(':');
    const auto name = t.substr(0, colon);
    const int parts = colon == std::string::npos ? 1 : std::stoi(t.substr(colon + 1));
    if (rd_kafka_mock_topic_create(mc, name.c_str(), parts, 1) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      spdlog::error("cannot create topic {}", t);
      return 1;
    }
  }
  const std::string bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
  fmt::print("listening on {}\n", bootstrap);
  std::fflush(stdout);
  if (!port_file.empty()) starling::write_port_file(port_file, bootstrap);
  starling::wait_for_shutdown();
  spdlog::info("stopping");
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(rk);
  return 0;
}
