// starling-broker's /metrics listener, environment variables and --version,
// against a broker process and a librdkafka producer and group consumer.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "services/common/http.h"
#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/metrics_page.h"
#include "tests/services/broker/raw_client.h"
#include "tests/services/broker/rdkafka_helpers.h"
#include "tests/support/promtool.h"

namespace starling::broker::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(Metrics, ScrapeShowsRequestsBytesOffsetsLagConnectionsAndFsyncAndPassesPromtool) {
  TempDir dir;
  const auto port_file = dir.path() / "metrics-port";
  BrokerProcess broker(
      dir.path(), {"--partitions", "2", "--metrics-listen", "127.0.0.1:0", "--metrics-port-file", port_file.string()});
  const auto address = metrics_address(port_file);
  ASSERT_FALSE(address.empty()) << broker.log();

  Producer producer(broker.bootstrap(), {{"enable.idempotence", "true"}});
  // Both partitions get records (left to the sticky partitioner, 300 small
  // records may all land in one, and partition 1 then has no committed
  // offset to show: seen once in CI).
  for (int i = 0; i < 300; ++i) producer.produce("rides", "ride-" + std::to_string(i), i % 2);
  ASSERT_TRUE(producer.flush());
  {
    Consumer consumer(broker.bootstrap(),
                      {{"group.id", "loader"}, {"enable.auto.commit", "false"}, {"auto.offset.reset", "earliest"}});
    consumer.subscribe("rides");
    ASSERT_EQ(consumer.consume(300, 30s).size(), 300u);
    ASSERT_EQ(consumer.commit_sync(), RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  for (int i = 0; i < 50; ++i) producer.produce("rides", "late-" + std::to_string(i), 0);
  ASSERT_TRUE(producer.flush());
  RawClient idle(broker.port());  // one connection held open while scraping

  const auto page = scrape(address);
  // Offsets per partition, and the group's committed offsets and lag: the 50
  // late records all went to partition 0.
  const double end0 = sample(page, R"(starling_broker_log_end_offset{partition="0",topic="rides"})");
  const double end1 = sample(page, R"(starling_broker_log_end_offset{partition="1",topic="rides"})");
  EXPECT_EQ(end0 + end1, 350) << page;
  EXPECT_EQ(sample(page, R"(starling_broker_group_committed_offset{group="loader",partition="0",topic="rides"})"),
            end0 - 50);
  EXPECT_EQ(sample(page, R"(starling_broker_group_committed_offset{group="loader",partition="1",topic="rides"})"),
            end1);
  EXPECT_EQ(sample(page, R"(starling_broker_group_lag{group="loader",partition="0",topic="rides"})"), 50);
  EXPECT_EQ(sample(page, R"(starling_broker_group_lag{group="loader",partition="1",topic="rides"})"), 0);
  // Bytes: every appended byte is in the log; the consumer read the first 300.
  const double in = sample(page, R"(starling_broker_bytes_in_total{topic="rides"})");
  EXPECT_EQ(in, sample(page, R"(starling_broker_log_size_bytes{partition="0",topic="rides"})") +
                    sample(page, R"(starling_broker_log_size_bytes{partition="1",topic="rides"})"));
  EXPECT_GT(sample(page, R"(starling_broker_bytes_out_total{topic="rides"})"), 0);
  // Requests per API, with latency buckets; fsync of each acknowledged batch.
  EXPECT_GE(sample(page, R"(starling_broker_request_duration_seconds_count{api="Produce"})"), 2);
  EXPECT_GE(sample(page, R"(starling_broker_request_duration_seconds_count{api="OffsetCommit"})"), 1);
  EXPECT_GE(sample(page, R"(starling_broker_request_duration_seconds_count{api="JoinGroup"})"), 1);
  EXPECT_THAT(page, HasSubstr(R"(starling_broker_request_duration_seconds_bucket{api="Fetch",le="+Inf"} )"));
  EXPECT_GE(sample(page, "starling_broker_fsync_duration_seconds_count"), 2);
  EXPECT_GE(sample(page, "starling_broker_connections"), 2);  // the producer's and the idle one
  EXPECT_GT(sample(page, "process_open_fds"), 0);
  EXPECT_EQ(sample(page, R"(starling_build_info{service="starling-broker",version=")" STARLING_VERSION R"("})"), 1);
  const auto check = starling::testing::promtool_check_metrics(page);
  EXPECT_EQ(check.exit_code, 0) << check.output;

  // The listener answers nothing else, and a deleted topic's series go.
  auto other = http_call("GET", "http://" + address + "/topics");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 404);
  auto post = http_call("POST", "http://" + address + "/metrics", "x");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
  // DeleteTopics v1: ["rides"], timeout 5000 ms.
  ASSERT_TRUE(idle.call(20, 1, Bytes{0, 0, 0, 1, 0, 5, 'r', 'i', 'd', 'e', 's', 0, 0, 0x13, 0x88}));
  const auto after = scrape(address);
  EXPECT_THAT(after, Not(HasSubstr(R"(starling_broker_log_end_offset{partition="0",topic="rides"})")));
  EXPECT_THAT(after, Not(HasSubstr(R"(starling_broker_group_lag{group="loader",partition="0",topic="rides"} 50)")));
}

TEST(Metrics, NoListenerUnlessAskedAndABadAddressIsRefusedNamingTheFlag) {
  TempDir dir;
  const std::string base =
      std::string(STARLING_BIN_DIR) + "/starling-broker --listen 127.0.0.1:0 --data-dir " + dir.path().string();
  auto out = run(base + " --metrics-listen 127.0.0.1:99999 2>&1");
  EXPECT_THAT(out, HasSubstr("--metrics-listen: expected HOST:PORT with a port 0..65535"));
  out = run(base + " --metrics-listen nohost:0 2>&1");
  EXPECT_THAT(out, HasSubstr("--metrics-listen: expected an IP address"));
  out = run(std::string(STARLING_BIN_DIR) + "/starling-broker --listen 127.0.0.1:x --data-dir " + dir.path().string() +
            " 2>&1");
  EXPECT_THAT(out, HasSubstr("--listen: expected HOST:PORT"));
}

TEST(Executable, VersionAndEveryFlagFromTheEnvironment) {
  EXPECT_EQ(run(std::string(STARLING_BIN_DIR) + "/starling-broker --version"),
            std::string("starling-broker ") + STARLING_VERSION + "\n");
  // Each flag has a variable, named in --help.
  const auto help = run(std::string(STARLING_BIN_DIR) + "/starling-broker --help");
  for (const char* env : {"STARLING_BROKER_LISTEN", "STARLING_BROKER_DATA_DIR", "STARLING_BROKER_PARTITIONS",
                          "STARLING_BROKER_RETENTION_MS", "STARLING_BROKER_MESSAGE_MAX_BYTES",
                          "STARLING_BROKER_GROUP_INITIAL_REBALANCE_DELAY_MS", "STARLING_BROKER_METRICS_LISTEN",
                          "STARLING_BROKER_LOG_LEVEL", "STARLING_BROKER_MAX_CONNECTIONS"}) {
    EXPECT_THAT(help, HasSubstr(env));
  }
  // A broker configured by the environment alone: auto-created topics get
  // STARLING_BROKER_PARTITIONS partitions; a bad value is refused by name.
  TempDir dir;
  ::setenv("STARLING_BROKER_PARTITIONS", "3", 1);
  {
    BrokerProcess broker(dir.path());
    Producer producer(broker.bootstrap(), {});
    for (int32_t p = 0; p < 3; ++p) producer.produce("from-env", std::to_string(p), p);
    ASSERT_TRUE(producer.flush());
    ASSERT_EQ(producer.deliveries().size(), 3u);
    for (const auto& d : producer.deliveries()) EXPECT_EQ(d.err, RD_KAFKA_RESP_ERR_NO_ERROR) << d.partition;
  }
  ::setenv("STARLING_BROKER_PARTITIONS", "0", 1);
  auto out = run(std::string(STARLING_BIN_DIR) + "/starling-broker --data-dir " + dir.path().string() + " 2>&1");
  ::unsetenv("STARLING_BROKER_PARTITIONS");
  EXPECT_THAT(out, HasSubstr("--partitions: Value 0 not in range 1 to 1000"));
}

}  // namespace
}  // namespace starling::broker::testing
