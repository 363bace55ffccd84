// A consumer-group member as its own process, for the group failover test:
// prints "partition offset" per message and auto-commits every 100 ms, like
// a service would. Runs until killed. (kcat -G does not auto-commit while
// running, so it cannot show take-over from committed offsets.) With an
// INSTANCE_ID it is a static member (group.instance.id): librdkafka then
// closes without sending LeaveGroup, so a restart can take its place.
#include <librdkafka/rdkafka.h>

#include <csignal>
#include <cstdio>

namespace {
volatile std::sig_atomic_t g_run = 1;
}

int main(int argc, char** argv) {
  if (argc < 4 || argc > 6) {
    std::fprintf(stderr, "usage: %s BOOTSTRAP GROUP TOPIC [INSTANCE_ID [SESSION_TIMEOUT_MS]]\n", argv[0]);
    return 2;
  }
  std::signal(SIGTERM, [](int) { g_run = 0; });
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  const char* props[][2] = {{"bootstrap.servers", argv[1]},     {"group.id", argv[2]},
                            {"auto.offset.reset", "earliest"},  {"enable.auto.commit", "true"},
                            {"auto.commit.interval.ms", "100"}, {"session.timeout.ms", "3000"},
                            {"heartbeat.interval.ms", "300"},   {"partition.assignment.strategy", "range"},
                            {"broker.address.family", "v4"}};
  char err[512];
  for (auto& p : props) {
    if (rd_kafka_conf_set(conf, p[0], p[1], err, sizeof err) != RD_KAFKA_CONF_OK) {
      std::fprintf(stderr, "%s\n", err);
      return 2;
    }
  }
  if ((argc > 4 && rd_kafka_conf_set(conf, "group.instance.id", argv[4], err, sizeof err) != RD_KAFKA_CONF_OK) ||
      (argc > 5 && rd_kafka_conf_set(conf, "session.timeout.ms", argv[5], err, sizeof err) != RD_KAFKA_CONF_OK)) {
    std::fprintf(stderr, "%s\n", err);
    return 2;
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (!rk) {
    std::fprintf(stderr, "%s\n", err);
    return 2;
  }
  rd_kafka_poll_set_consumer(rk);
  auto* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, argv[3], RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(rk, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  while (g_run) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::printf("%d %lld\n", static_cast<int>(m->partition), static_cast<long long>(m->offset));
      std::fflush(stdout);
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return 0;
}
