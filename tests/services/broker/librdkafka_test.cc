// Integration tests: the real starling-broker process driven by librdkafka 2.0.2.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <thread>

#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/raw_client.h"
#include "tests/services/broker/rdkafka_helpers.h"

namespace starling::broker::testing {
namespace {

using namespace std::chrono_literals;

const Props idempotent_props = {{"enable.idempotence", "true"}, {"acks", "all"}, {"linger.ms", "5"}};

std::string value_of(int i) { return "message-" + std::to_string(i); }

TEST(Librdkafka, IdempotentCompressedProduceWithHeadersIsReadBackExactly) {
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--partitions", "3"});
  const int per_codec = 3000;
  int next = 0;
  for (const char* codec : {"lz4", "zstd", "none"}) {
    Props props = idempotent_props;
    props["compression.codec"] = codec;
    Producer producer(broker.bootstrap(), props);
    for (int i = 0; i < per_codec; ++i, ++next) {
      producer.produce("events", value_of(next), RD_KAFKA_PARTITION_UA, {{"trace-id", "t" + std::to_string(next)}});
    }
    ASSERT_TRUE(producer.flush()) << broker.log();
    ASSERT_EQ(producer.deliveries().size(), static_cast<size_t>(per_codec));
    for (const auto& d : producer.deliveries()) {
      ASSERT_EQ(d.err, RD_KAFKA_RESP_ERR_NO_ERROR) << codec << ": " << rd_kafka_err2str(d.err);
      ASSERT_GE(d.offset, 0);
    }
  }
  Consumer consumer(broker.bootstrap(), {{"group.id", "reader"}, {"enable.auto.commit", "false"}});
  consumer.assign("events", 3);
  auto got = consumer.consume(static_cast<size_t>(next), 30s);
  ASSERT_EQ(got.size(), static_cast<size_t>(next));
  std::set<std::string> values;
  std::map<int32_t, int64_t> last_offset;
  for (const auto& r : got) {
    values.insert(r.value);
    // Offsets within a partition are dense and increasing.
    auto it = last_offset.find(r.partition);
    EXPECT_EQ(r.offset, it == last_offset.end() ? 0 : it->second + 1);
    last_offset[r.partition] = r.offset;
    ASSERT_EQ(r.headers.count("trace-id"), 1u);
    EXPECT_EQ("message-" + r.headers.at("trace-id").substr(1), r.value);
  }
  EXPECT_EQ(values.size(), static_cast<size_t>(next));
  EXPECT_EQ(last_offset.size(), 3u);
}

TEST(Librdkafka, AcknowledgedMessagesSurviveKill9DuringProduce) {
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--partitions", "2"});
  std::vector<Delivery> acked;
  {
    Props props = idempotent_props;
    props["message.timeout.ms"] = "3000";
    Producer producer(broker.bootstrap(), props);
    // Given a producer in full flow
    bool killed = false;
    for (int i = 0; i < 20000; ++i) {
      producer.produce("durable", value_of(i));
      if (i % 50 == 0) producer.poll(1);
      // When the broker is killed with -9 part way through
      if (!killed && producer.deliveries().size() >= 3000) {
        broker.kill9();
        killed = true;
      }
    }
    while (!killed && producer.deliveries().size() < 3000) producer.poll(10);
    if (!killed) broker.kill9();
    producer.flush(5000);
    for (const auto& d : producer.deliveries()) {
      if (d.err == RD_KAFKA_RESP_ERR_NO_ERROR) acked.push_back(d);
    }
  }
  ASSERT_GE(acked.size(), 3000u);
  // Then after a restart every acknowledged message is there at its offset
  broker.start();
  Consumer consumer(broker.bootstrap(), {{"group.id", "verify"}});
  // Read everything stored (acknowledged or not), not just acked.size()
  // messages: unacknowledged ones may be stored too.
  size_t stored_count = 0;
  for (int p = 0; p < 2; ++p) {
    int64_t low = 0;
    int64_t high = 0;
    ASSERT_EQ(rd_kafka_query_watermark_offsets(consumer.get(), "durable", p, &low, &high, 10000),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    stored_count += static_cast<size_t>(high - low);
  }
  ASSERT_GE(stored_count, acked.size());
  consumer.assign("durable", 2);
  auto got = consumer.consume(stored_count, 30s);
  ASSERT_EQ(got.size(), stored_count);
  std::map<std::pair<int32_t, int64_t>, std::string> stored;
  for (const auto& r : got) stored[{r.partition, r.offset}] = r.value;
  for (const auto& d : acked) {
    auto it = stored.find({d.partition, d.offset});
    ASSERT_NE(it, stored.end()) << "acknowledged " << d.value << " at " << d.partition << "/" << d.offset << " lost";
    EXPECT_EQ(it->second, d.value);
  }
}

// The durability scenario. STARLING_SOAK=1 runs it at full size (1M
// messages); by default it is small enough for every ctest run. Both kill the
// broker three times.
TEST(Librdkafka, EveryAcknowledgedMessageSurvivesThreeKill9RestartsInOrderWithoutDuplicates) {
  const char* soak = std::getenv("STARLING_SOAK");
  const bool full = soak != nullptr && std::string(soak) == "1";
  const int total = full ? 1'000'000 : 30'000;
  const int partitions = 4;
  const auto started = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(); };
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--partitions", std::to_string(partitions)});
  std::vector<Delivery> deliveries;
  {
    Props props = idempotent_props;
    // Long enough to ride out each restart: every message must end up acknowledged.
    props["message.timeout.ms"] = "300000";
    props["queue.buffering.max.messages"] = "200000";
    Producer producer(broker.bootstrap(), props);
    // Given an idempotent acks=all producer in full flow
    int kills = 0;
    auto maybe_kill = [&] {
      // When the broker is killed with -9 (with batches in flight) after each
      // quarter of the messages is acknowledged, and restarted on its port
      if (kills < 3 && producer.deliveries().size() >= static_cast<size_t>(total) / 4 * (kills + 1)) {
        broker.kill9();
        ++kills;
        std::fprintf(stderr, "[%.1fs] kill -9 #%d after %zu deliveries\n", elapsed(), kills,
                     producer.deliveries().size());
        broker.restart_on_same_port();
      }
    };
    for (int i = 0; i < total; ++i) {
      producer.produce("soak", value_of(i));
      if (i % 100 == 0) {
        producer.poll(0);
        maybe_kill();
      }
    }
    while (kills < 3) {
      producer.poll(10);
      maybe_kill();
    }
    ASSERT_TRUE(producer.flush(300000)) << broker.log();
    deliveries = producer.deliveries();
    std::fprintf(stderr, "[%.1fs] produced %d messages, %d kills\n", elapsed(), total, kills);
  }
  // Then every message was acknowledged (idempotent retries across restarts
  // were accepted, not fenced or refused as out of order)
  ASSERT_EQ(deliveries.size(), static_cast<size_t>(total));
  for (const auto& d : deliveries) {
    ASSERT_EQ(d.err, RD_KAFKA_RESP_ERR_NO_ERROR) << d.value << ": " << rd_kafka_err2str(d.err) << "\n" << broker.log();
  }
  // and the log holds exactly those messages: each once, at its acknowledged
  // offset, in production order within its partition.
  Consumer consumer(broker.bootstrap(), {{"group.id", "verify"}, {"fetch.max.bytes", "52428800"}});
  std::vector<int64_t> low(partitions), high(partitions);
  size_t stored_count = 0;
  for (int p = 0; p < partitions; ++p) {
    ASSERT_EQ(rd_kafka_query_watermark_offsets(consumer.get(), "soak", p, &low[p], &high[p], 10000),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    EXPECT_EQ(low[p], 0);
    stored_count += static_cast<size_t>(high[p] - low[p]);
  }
  EXPECT_EQ(stored_count, static_cast<size_t>(total)) << "duplicates or extra records";
  consumer.assign("soak", partitions);
  auto got = consumer.consume(stored_count, full ? 600s : 60s);
  ASSERT_EQ(got.size(), stored_count);
  std::vector<std::vector<std::string>> stored(partitions);
  for (int p = 0; p < partitions; ++p) stored[p].resize(static_cast<size_t>(high[p]));
  std::vector<int> last_index(partitions, -1);
  std::vector<bool> seen(total, false);
  for (auto& r : got) {
    ASSERT_TRUE(r.partition >= 0 && r.partition < partitions && r.offset >= 0 && r.offset < high[r.partition]);
    int index = std::stoi(r.value.substr(std::string("message-").size()));
    ASSERT_TRUE(index >= 0 && index < total) << r.value;
    ASSERT_FALSE(seen[index]) << "duplicate " << r.value << " at " << r.partition << "/" << r.offset;
    seen[index] = true;
    ASSERT_GT(index, last_index[r.partition]) << "out of order in partition " << r.partition << " at " << r.offset;
    last_index[r.partition] = index;
    stored[r.partition][r.offset] = std::move(r.value);
  }
  for (const auto& d : deliveries) {
    ASSERT_TRUE(d.partition >= 0 && d.partition < partitions && d.offset >= 0 && d.offset < high[d.partition])
        << "acknowledged " << d.value << " at " << d.partition << "/" << d.offset << " is beyond the log";
    ASSERT_EQ(stored[d.partition][d.offset], d.value) << "at " << d.partition << "/" << d.offset;
  }
  std::fprintf(stderr, "[%.1fs] verified %zu messages in %d partitions\n", elapsed(), got.size(), partitions);
}

TEST(Librdkafka, GroupCommitSurvivesBrokerKill9AndConsumerResumesFromCommittedOffset) {
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--partitions", "2"});
  {
    Producer producer(broker.bootstrap(), idempotent_props);
    for (int i = 0; i < 1000; ++i) producer.produce("orders", value_of(i));
    ASSERT_TRUE(producer.flush());
  }
  const Props group = {{"group.id", "billing"},
                       {"enable.auto.commit", "false"},
                       {"auto.offset.reset", "earliest"},
                       {"session.timeout.ms", "6000"}};
  std::set<std::string> first_half;
  {
    Consumer consumer(broker.bootstrap(), group);
    consumer.subscribe("orders");
    auto got = consumer.consume(600, 30s);
    ASSERT_EQ(got.size(), 600u);
    for (const auto& r : got) first_half.insert(r.value);
    ASSERT_EQ(consumer.commit_sync(), RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  broker.kill9();
  broker.start();
  Consumer consumer(broker.bootstrap(), group);
  consumer.subscribe("orders");
  auto rest = consumer.consume(400, 15s);
  auto extra = consumer.consume(1, 2s);
  rest.insert(rest.end(), extra.begin(), extra.end());
  // Exactly the 400 messages after the committed offsets, none of the first 600.
  EXPECT_EQ(rest.size(), 400u);
  for (const auto& r : rest) EXPECT_EQ(first_half.count(r.value), 0u) << r.value;
  std::set<std::string> all(first_half);
  for (const auto& r : rest) all.insert(r.value);
  EXPECT_EQ(all.size(), 1000u);
}

TEST(Librdkafka, LongPollFetchIsWokenByNewDataNotByItsTimeout) {
  TempDir dir;
  BrokerProcess broker(dir.path());
  Producer producer(broker.bootstrap(), {{"linger.ms", "0"}, {"acks", "all"}});
  producer.produce("wake", "warmup");
  ASSERT_TRUE(producer.flush());
  Consumer consumer(broker.bootstrap(), {{"group.id", "w"}, {"fetch.wait.max.ms", "10000"}});
  consumer.assign("wake", 1);
  ASSERT_EQ(consumer.consume(1, 10s).size(), 1u);
  std::this_thread::sleep_for(500ms);  // the consumer is now parked in a long poll
  auto sent = std::chrono::steady_clock::now();
  producer.produce("wake", "now");
  ASSERT_TRUE(producer.flush());
  auto got = consumer.consume(1, 9s);
  auto latency = std::chrono::steady_clock::now() - sent;
  ASSERT_EQ(got.size(), 1u);
  EXPECT_LT(latency, 2s);
}

/// The "disconnects" count of broker `name` in librdkafka statistics JSON,
/// -1 when it is not there.
int64_t disconnects(const std::string& stats, const std::string& name) {
  auto at = stats.find("\"name\":\"" + name + "\"");
  if (at == std::string::npos) return -1;
  auto field = stats.find("\"disconnects\":", at);
  if (field == std::string::npos) return -1;
  return std::stoll(stats.substr(field + 14));
}

TEST(Librdkafka, AConsumerInALongPollIsNotClosedByTheIdleOrReadTimeout) {
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--connections-max-idle-ms", "300", "--request-read-timeout-ms", "300"});
  Producer producer(broker.bootstrap(), {{"linger.ms", "0"}, {"acks", "all"}});
  producer.produce("quiet", "warmup");
  ASSERT_TRUE(producer.flush());
  // Given a consumer whose fetches park for 3 s, ten times the timeouts.
  // (Its connections may be closed as idle while it starts up, between
  // requests; librdkafka reconnects. Only what happens after its fetch loop
  // runs counts.)
  Consumer consumer(broker.bootstrap(),
                    {{"group.id", "q"}, {"fetch.wait.max.ms", "3000"}, {"statistics.interval.ms", "100"}});
  consumer.assign("quiet", 1);
  ASSERT_EQ(consumer.consume(1, 10s).size(), 1u);
  const std::string node = broker.bootstrap() + "/0";
  auto fresh_disconnects = [&] {
    size_t seen = consumer.stats_count();
    for (int i = 0; i < 100 && consumer.stats_count() < seen + 2; ++i) consumer.consume(1, 100ms);
    return disconnects(consumer.stats(), node);
  };
  const int64_t before = fresh_disconnects();
  ASSERT_GE(before, 0) << consumer.stats();
  // When it has been parked longer than the idle timeout (a raw connection
  // opened after that has been closed for idleness)
  RawClient witness(broker.port());
  ASSERT_TRUE(witness.closed_by_peer(10000));
  // Then its fetch connection was not closed, and the parked fetch gets new data
  producer.produce("quiet", "later");
  ASSERT_TRUE(producer.flush());
  auto got = consumer.consume(1, 10s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, "later");
  EXPECT_EQ(fresh_disconnects(), before) << consumer.stats();
}

TEST(Librdkafka, ProducingToAnUnknownTopicFailsWhenAutoCreateIsOff) {
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--auto-create", "false"});
  Producer producer(broker.bootstrap(), {{"message.timeout.ms", "2000"}});
  producer.produce("nope", "x");
  producer.flush(5000);
  ASSERT_EQ(producer.deliveries().size(), 1u);
  EXPECT_NE(producer.deliveries()[0].err, RD_KAFKA_RESP_ERR_NO_ERROR);
}

TEST(Librdkafka, AdminCreatesAndDeletesTopicsAndTheyPersist) {
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--auto-create", "false"});
  Producer admin_client(broker.bootstrap(), {});
  rd_kafka_t* rk = admin_client.get();
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  char err[256];
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new("created", 4, 1, err, sizeof err);
  rd_kafka_CreateTopics(rk, &nt, 1, nullptr, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 10000);
  ASSERT_NE(ev, nullptr);
  size_t n = 0;
  const rd_kafka_topic_result_t** res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(rd_kafka_topic_result_error(res[0]), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_event_destroy(ev);
  // Creating it again reports TOPIC_ALREADY_EXISTS.
  rd_kafka_CreateTopics(rk, &nt, 1, nullptr, q);
  ev = rd_kafka_queue_poll(q, 10000);
  res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
  EXPECT_EQ(rd_kafka_topic_result_error(res[0]), RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS);
  rd_kafka_event_destroy(ev);
  rd_kafka_NewTopic_destroy(nt);

  broker.stop();
  broker.start();
  const rd_kafka_metadata_t* md = nullptr;
  Producer client(broker.bootstrap(), {});
  ASSERT_EQ(rd_kafka_metadata(client.get(), 1, nullptr, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  bool found = false;
  for (int i = 0; i < md->topic_cnt; ++i) {
    if (std::string(md->topics[i].topic) == "created") {
      found = true;
      EXPECT_EQ(md->topics[i].partition_cnt, 4);
    }
  }
  rd_kafka_metadata_destroy(md);
  EXPECT_TRUE(found);

  rd_kafka_queue_t* q2 = rd_kafka_queue_new(client.get());
  rd_kafka_DeleteTopic_t* dt = rd_kafka_DeleteTopic_new("created");
  rd_kafka_DeleteTopics(client.get(), &dt, 1, nullptr, q2);
  ev = rd_kafka_queue_poll(q2, 10000);
  ASSERT_NE(ev, nullptr);
  res = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &n);
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(rd_kafka_topic_result_error(res[0]), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_event_destroy(ev);
  rd_kafka_DeleteTopic_destroy(dt);
  rd_kafka_queue_destroy(q2);
  rd_kafka_queue_destroy(q);
}

/// One topic's result of an admin CreateTopics: error code and string.
struct AdminResult {
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
  std::string message;
};

/// rd_kafka_CreateTopics of `nt` (destroyed here), validate_only if asked.
AdminResult admin_create(rd_kafka_t* rk, rd_kafka_NewTopic_t* nt, bool validate_only = false) {
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t* opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  char err[256];
  if (validate_only) rd_kafka_AdminOptions_set_validate_only(opts, 1, err, sizeof err);
  rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
  AdminResult out;
  if (rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 10000)) {
    size_t n = 0;
    const rd_kafka_topic_result_t** res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      out = {rd_kafka_event_error(ev), rd_kafka_event_error_string(ev)};
    } else if (n == 1) {
      const char* msg = rd_kafka_topic_result_error_string(res[0]);
      out = {rd_kafka_topic_result_error(res[0]), msg != nullptr ? msg : ""};
    }
    rd_kafka_event_destroy(ev);
  }
  rd_kafka_AdminOptions_destroy(opts);
  rd_kafka_queue_destroy(q);
  rd_kafka_NewTopic_destroy(nt);
  return out;
}

rd_kafka_NewTopic_t* new_topic(const std::string& name, int partitions, int replication,
                               const std::vector<std::pair<std::string, std::string>>& configs = {}) {
  char err[256];
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(name.c_str(), partitions, replication, err, sizeof err);
  if (nt == nullptr) throw std::runtime_error(err);
  for (const auto& [k, v] : configs) rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str());
  return nt;
}

bool topic_exists(rd_kafka_t* rk, const std::string& name) {
  const rd_kafka_metadata_t* md = nullptr;
  if (rd_kafka_metadata(rk, 1, nullptr, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) return false;
  bool found = false;
  for (int i = 0; i < md->topic_cnt; ++i) found = found || name == md->topics[i].topic;
  rd_kafka_metadata_destroy(md);
  return found;
}

TEST(Librdkafka, AdminCreateTopicsRefusesUnknownConfigsTakesKnownOnesAndHonoursValidateOnly) {
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--auto-create", "false"});
  Producer client(broker.bootstrap(), {});
  rd_kafka_t* rk = client.get();

  auto r = admin_create(rk, new_topic("typo", 1, 1, {{"retention.msec", "1000"}}));
  EXPECT_EQ(r.err, RD_KAFKA_RESP_ERR_INVALID_CONFIG) << rd_kafka_err2str(r.err) << " " << r.message;
  EXPECT_NE(r.message.find("retention.msec"), std::string::npos) << r.message;
  EXPECT_FALSE(topic_exists(rk, "typo"));

  r = admin_create(rk, new_topic("limited", 2, 1, {{"max.message.bytes", "20000"}}));
  EXPECT_EQ(r.err, RD_KAFKA_RESP_ERR_NO_ERROR) << r.message;
  EXPECT_TRUE(topic_exists(rk, "limited"));

  // validate_only with a config and a manual assignment to this broker (id 0)
  rd_kafka_NewTopic_t* dry = new_topic("dry", 2, -1, {{"max.message.bytes", "20000"}});
  char err[256];
  int32_t broker0[] = {0};
  for (int p = 0; p < 2; ++p) {
    ASSERT_EQ(rd_kafka_NewTopic_set_replica_assignment(dry, p, broker0, 1, err, sizeof err), RD_KAFKA_RESP_ERR_NO_ERROR)
        << err;
  }
  r = admin_create(rk, dry, /*validate_only=*/true);
  EXPECT_EQ(r.err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(r.err) << " " << r.message;
  EXPECT_FALSE(topic_exists(rk, "dry"));
  r = admin_create(rk, new_topic("dry", 1, 1, {{"no.such.config", "1"}}), /*validate_only=*/true);
  EXPECT_EQ(r.err, RD_KAFKA_RESP_ERR_INVALID_CONFIG) << r.message;

  // An assignment naming another broker
  rd_kafka_NewTopic_t* elsewhere = new_topic("elsewhere", 1, -1);
  int32_t broker1[] = {1};
  ASSERT_EQ(rd_kafka_NewTopic_set_replica_assignment(elsewhere, 0, broker1, 1, err, sizeof err),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  r = admin_create(rk, elsewhere);
  EXPECT_EQ(r.err, RD_KAFKA_RESP_ERR_INVALID_REPLICA_ASSIGNMENT) << rd_kafka_err2str(r.err) << " " << r.message;
  EXPECT_FALSE(topic_exists(rk, "elsewhere"));
}

TEST(Librdkafka, ARecordOverTheTopicsMaxMessageBytesFailsWithMsgSizeTooLargeAndSmallOnesLand) {
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--auto-create", "false"});
  Producer client(broker.bootstrap(), {});
  ASSERT_EQ(admin_create(client.get(), new_topic("small-only", 1, 1, {{"max.message.bytes", "10000"}})).err,
            RD_KAFKA_RESP_ERR_NO_ERROR);
  // A producer that itself would send up to 4 MB, so the broker decides.
  Producer producer(broker.bootstrap(),
                    {{"message.max.bytes", "4000000"}, {"compression.codec", "none"}, {"acks", "all"}});
  std::string big(50000, 'b');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + (i * 7919) % 26);
  auto send = [&](const std::string& v) {
    producer.produce("small-only", v, 0);
    ASSERT_TRUE(producer.flush(10000));
  };
  send("small-1");
  send(big);
  send("small-2");
  ASSERT_EQ(producer.deliveries().size(), 3u);
  EXPECT_EQ(producer.deliveries()[0].err, RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(producer.deliveries()[1].err, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
      << rd_kafka_err2str(producer.deliveries()[1].err);
  EXPECT_EQ(producer.deliveries()[2].err, RD_KAFKA_RESP_ERR_NO_ERROR);

  Consumer consumer(broker.bootstrap(), {{"group.id", "sizes"}, {"enable.auto.commit", "false"}});
  consumer.assign("small-only", 1);
  auto got = consumer.consume(3, 5s);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].value, "small-1");
  EXPECT_EQ(got[1].value, "small-2");
  EXPECT_EQ(got[1].offset, 1);
}

TEST(Librdkafka, GarbageTailLeftByACrashIsTruncatedAtRestartAndTheLogContinues) {
  TempDir dir;
  BrokerProcess broker(dir.path());
  {
    Producer producer(broker.bootstrap(), idempotent_props);
    for (int i = 0; i < 10; ++i) producer.produce("torn", value_of(i));
    ASSERT_TRUE(producer.flush());
  }
  broker.kill9();
  // Given half a batch header at the end of the segment (a torn write)
  auto segment = dir.path() / "data" / "logs" / "torn-0" / "00000000000000000000.log";
  ASSERT_TRUE(fs::exists(segment));
  auto size = fs::file_size(segment);
  {
    std::ofstream f(segment, std::ios::app | std::ios::binary);
    f << std::string(30, '\x7f');
  }
  // When the broker restarts
  broker.start();
  EXPECT_EQ(fs::file_size(segment), size);
  EXPECT_NE(broker.log().find("truncating"), std::string::npos) << broker.log();
  // Then old and new messages are all readable in order
  {
    Producer producer(broker.bootstrap(), idempotent_props);
    for (int i = 10; i < 20; ++i) producer.produce("torn", value_of(i));
    ASSERT_TRUE(producer.flush());
  }
  Consumer consumer(broker.bootstrap(), {{"group.id", "t"}, {"enable.auto.commit", "false"}});
  consumer.assign("torn", 1);
  auto got = consumer.consume(20, 20s);
  ASSERT_EQ(got.size(), 20u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(got[static_cast<size_t>(i)].value, value_of(i));
    EXPECT_EQ(got[static_cast<size_t>(i)].offset, i);
  }
}

TEST(Librdkafka, MetadataAdvertisesTheConfiguredHost) {
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--advertised-host", "localhost"});
  Producer client(broker.bootstrap(), {});
  const rd_kafka_metadata_t* md = nullptr;
  ASSERT_EQ(rd_kafka_metadata(client.get(), 1, nullptr, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(md->broker_cnt, 1);
  EXPECT_STREQ(md->brokers[0].host, "localhost");
  EXPECT_EQ(md->brokers[0].port, broker.port());
  rd_kafka_metadata_destroy(md);
}

TEST(Executable, HelpExplainsEveryFlagAndBadFlagsFail) {
  auto help = run(std::string(STARLING_BIN_DIR) + "/starling-broker --help");
  for (const char* flag : {"--listen", "--data-dir", "--port-file", "--advertised-host", "--partitions",
                           "--auto-create", "--flush", "--retention-ms", "--retention-bytes", "--segment-bytes",
                           "--message-max-bytes", "--group-initial-rebalance-delay-ms", "--log-level"}) {
    EXPECT_NE(help.find(flag), std::string::npos) << flag;
  }
  TempDir dir;
  std::string base =
      std::string(STARLING_BIN_DIR) + "/starling-broker --listen 127.0.0.1:0 --data-dir " + dir.path().string();
  EXPECT_NE(std::system((base + " --flush sometimes >/dev/null 2>&1").c_str()), 0);
  EXPECT_NE(std::system((base + " --partitions 0 >/dev/null 2>&1").c_str()), 0);
  EXPECT_NE(std::system((base + " --message-max-bytes -1 >/dev/null 2>&1").c_str()), 0);
  EXPECT_NE(std::system((base + " --group-initial-rebalance-delay-ms -1 >/dev/null 2>&1").c_str()), 0);
  EXPECT_NE(std::system((std::string(STARLING_BIN_DIR) + "/starling-broker >/dev/null 2>&1").c_str()), 0);
}

TEST(Librdkafka, SigtermWithConnectedClientsExitsCleanly) {
  TempDir dir;
  BrokerProcess broker(dir.path());
  Producer producer(broker.bootstrap(), idempotent_props);
  producer.produce("t", "x");
  ASSERT_TRUE(producer.flush());
  // A consumer parked in a long-poll fetch (assigned, so closing it later
  // does not wait for a group coordinator that is gone).
  Consumer consumer(broker.bootstrap(), {{"group.id", "g"}, {"enable.auto.commit", "false"}});
  consumer.assign("t", 1);
  ASSERT_EQ(consumer.consume(1, 20s).size(), 1u);
  int status = broker.stop();
  ASSERT_TRUE(WIFEXITED(status)) << broker.log();
  EXPECT_EQ(WEXITSTATUS(status), 0) << broker.log();
}

TEST(Librdkafka, WatermarksAndOffsetsForTimes) {
  TempDir dir;
  BrokerProcess broker(dir.path());
  Producer producer(broker.bootstrap(), {{"linger.ms", "0"}, {"acks", "all"}});
  const int64_t base = 1'700'000'000'000;
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(
        rd_kafka_producev(producer.get(), RD_KAFKA_V_TOPIC("times"), RD_KAFKA_V_PARTITION(0),
                          RD_KAFKA_V_VALUE(const_cast<char*>("v"), 1), RD_KAFKA_V_TIMESTAMP(base + int64_t{1000} * i),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
        RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_TRUE(producer.flush());  // one batch per message
  }
  int64_t low = -1;
  int64_t high = -1;
  ASSERT_EQ(rd_kafka_query_watermark_offsets(producer.get(), "times", 0, &low, &high, 10000),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(low, 0);
  EXPECT_EQ(high, 10);
  auto* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, "times", 0)->offset = base + 4500;
  ASSERT_EQ(rd_kafka_offsets_for_times(producer.get(), list, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(list->elems[0].offset, 5);
  rd_kafka_topic_partition_list_destroy(list);
}

/// Record batches stored in a partition's log (its segment files read directly).
size_t stored_batches(const fs::path& partition_dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(partition_dir)) {
    if (e.path().extension() != ".log") continue;
    std::string bytes = read_file(e.path());
    for (size_t pos = 0; pos + 12 <= bytes.size(); ++n)
      pos += 12 + load_be32(reinterpret_cast<const uint8_t*>(bytes.data()) + pos + 8);
  }
  return n;
}

TEST(Librdkafka, OffsetsForTimesFindsTheRecordInsideABatch) {
  TempDir dir;
  BrokerProcess broker(dir.path());
  Producer producer(broker.bootstrap(), {{"linger.ms", "1000"}, {"acks", "all"}});
  const int64_t base = 1'700'000'000'000;
  auto produce = [&](int64_t timestamp) {
    return rd_kafka_producev(producer.get(), RD_KAFKA_V_TOPIC("batched"), RD_KAFKA_V_PARTITION(0),
                             RD_KAFKA_V_VALUE(const_cast<char*>("v"), 1), RD_KAFKA_V_TIMESTAMP(timestamp),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  };
  // Given offset 0 stamped a second before base (it also makes the producer
  // learn the topic, so the next records queue on partition 0 at once)
  ASSERT_EQ(produce(base - 1000), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_TRUE(producer.flush());
  // And offsets 1-10 stamped base, base + 1 s, ... in one batch
  for (int i = 0; i < 10; ++i) ASSERT_EQ(produce(base + int64_t{1000} * i), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_TRUE(producer.flush());
  ASSERT_EQ(stored_batches(dir.path() / "data" / "logs" / "batched-0"), 2u);
  // When librdkafka asks for the offsets of several times
  const std::vector<std::pair<int64_t, int64_t>> expected = {{base - 1000, 0}, {base - 999, 1},  {base, 1},
                                                             {base + 1, 2},    {base + 4500, 6}, {base + 9000, 10},
                                                             {base + 9001, -1}};
  for (const auto& [at, offset] : expected) {
    auto* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, "batched", 0)->offset = at;
    ASSERT_EQ(rd_kafka_offsets_for_times(producer.get(), list, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    // Then each is the first record stamped at or after it, inside the batch
    EXPECT_EQ(list->elems[0].err, RD_KAFKA_RESP_ERR_NO_ERROR) << at - base;
    EXPECT_EQ(list->elems[0].offset, offset) << at - base;
    rd_kafka_topic_partition_list_destroy(list);
  }
}

/// A group member over the C API whose rebalance callback commits what it
/// consumed from the revoked partitions, synchronously, before letting them
/// go (the librdkafka example's pattern: state is flushed before revoking).
class CommittingMember {
 public:
  CommittingMember(const std::string& bootstrap, const std::string& group, const std::string& topic) : topic_(topic) {
    rd_kafka_conf_t* conf = make_conf(bootstrap, {{"group.id", group},
                                                  {"enable.auto.commit", "false"},
                                                  {"auto.offset.reset", "earliest"},
                                                  {"partition.assignment.strategy", "range"},
                                                  {"heartbeat.interval.ms", "100"},
                                                  {"session.timeout.ms", "6000"}});
    rd_kafka_conf_set_rebalance_cb(conf, &CommittingMember::on_rebalance);
    rd_kafka_conf_set_opaque(conf, this);
    char err[512];
    rk_.reset(rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err));
    if (!rk_) throw std::runtime_error(err);
    rd_kafka_poll_set_consumer(rk_.get());
    auto* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic.c_str(), RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk_.get(), list);
    rd_kafka_topic_partition_list_destroy(list);
  }
  ~CommittingMember() { rd_kafka_consumer_close(rk_.get()); }
  CommittingMember(const CommittingMember&) = delete;
  CommittingMember& operator=(const CommittingMember&) = delete;

  void poll(int ms) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_.get(), ms);
    if (m == nullptr) return;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      got_.push_back({m->partition, m->offset, std::string(static_cast<const char*>(m->payload), m->len), {}});
      next_[m->partition] = m->offset + 1;
    }
    rd_kafka_message_destroy(m);
  }

  const std::vector<Received>& got() const { return got_; }
  size_t assigned() const { return assigned_; }
  /// The result of each commit made while revoking.
  const std::vector<rd_kafka_resp_err_t>& revoke_commits() const { return revoke_commits_; }
  /// Partition -> offset committed while revoking (the last one of each).
  const std::map<int32_t, int64_t>& committed_at_revoke() const { return committed_at_revoke_; }
  rd_kafka_t* get() { return rk_.get(); }

 private:
  static void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
                           void* opaque) {
    auto* self = static_cast<CommittingMember*>(opaque);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      self->assigned_ = static_cast<size_t>(parts->cnt);
      rd_kafka_assign(rk, parts);
      return;
    }
    auto* offsets = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; ++i) {
      auto it = self->next_.find(parts->elems[i].partition);
      if (it == self->next_.end()) continue;
      rd_kafka_topic_partition_list_add(offsets, self->topic_.c_str(), it->first)->offset = it->second;
      self->committed_at_revoke_[it->first] = it->second;
      self->next_.erase(it);
    }
    if (offsets->cnt > 0) self->revoke_commits_.push_back(rd_kafka_commit(rk, offsets, 0));
    rd_kafka_topic_partition_list_destroy(offsets);
    self->assigned_ = 0;
    rd_kafka_assign(rk, nullptr);
  }

  std::string topic_;
  KafkaPtr rk_;
  std::vector<Received> got_;
  std::map<int32_t, int64_t> next_;  // partition -> offset after the last one consumed
  size_t assigned_ = 0;
  std::vector<rd_kafka_resp_err_t> revoke_commits_;
  std::map<int32_t, int64_t> committed_at_revoke_;
};

TEST(Librdkafka, OffsetsCommittedInTheRevokeCallbackWhileASecondMemberJoinsAreKept) {
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--partitions", "4"});
  const int total = 400;
  {
    Producer producer(broker.bootstrap(), idempotent_props);
    for (int i = 0; i < total; ++i) producer.produce("handover", value_of(i), i % 4);
    ASSERT_TRUE(producer.flush());
  }
  // Given a member that owns all four partitions and has consumed half
  CommittingMember a(broker.bootstrap(), "handover-group", "handover");
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (a.got().size() < total / 2 && std::chrono::steady_clock::now() < deadline) a.poll(50);
  ASSERT_GE(a.got().size(), static_cast<size_t>(total / 2));
  // When a second member joins, so the first commits in its revoke callback
  // while the group prepares the rebalance
  CommittingMember b(broker.bootstrap(), "handover-group", "handover");
  deadline = std::chrono::steady_clock::now() + 60s;
  while (a.got().size() + b.got().size() < static_cast<size_t>(total) && std::chrono::steady_clock::now() < deadline) {
    a.poll(20);
    b.poll(20);
  }
  // (any duplicate would arrive now)
  for (auto until = std::chrono::steady_clock::now() + 2s; std::chrono::steady_clock::now() < until;) {
    a.poll(20);
    b.poll(20);
  }
  // Then the commits were accepted
  ASSERT_FALSE(a.revoke_commits().empty());
  for (auto e : a.revoke_commits()) EXPECT_EQ(e, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(e);
  EXPECT_GT(a.assigned(), 0u);
  EXPECT_GT(b.assigned(), 0u);
  // And the group's committed offsets are what the first member had consumed
  auto* list = rd_kafka_topic_partition_list_new(4);
  for (int32_t p = 0; p < 4; ++p) rd_kafka_topic_partition_list_add(list, "handover", p);
  ASSERT_EQ(rd_kafka_committed(b.get(), list, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  for (int i = 0; i < list->cnt; ++i) {
    const auto& e = list->elems[i];
    auto it = a.committed_at_revoke().find(e.partition);
    EXPECT_EQ(e.offset, it == a.committed_at_revoke().end() ? RD_KAFKA_OFFSET_INVALID : it->second)
        << "partition " << e.partition;
  }
  rd_kafka_topic_partition_list_destroy(list);
  // And across both members every record was consumed exactly once
  std::map<std::string, int> seen;
  for (const auto* m : {&a, &b}) {
    for (const auto& r : m->got()) ++seen[r.value];
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(total));
  for (const auto& [value, n] : seen) EXPECT_EQ(n, 1) << value;
}

TEST(Librdkafka, RetentionBytesDeletesOldSegmentsAndConsumersStartAtTheNewLogStart) {
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--segment-bytes", "4096", "--retention-bytes", "8192"});
  Producer producer(broker.bootstrap(), {{"linger.ms", "0"}, {"acks", "all"}});
  for (int i = 0; i < 100; ++i) {
    producer.produce("ret", std::string(500, static_cast<char>('a' + i % 26)), 0);
    ASSERT_TRUE(producer.flush());
  }
  int64_t low = 0;
  int64_t high = 0;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (low == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(200ms);
    rd_kafka_query_watermark_offsets(producer.get(), "ret", 0, &low, &high, 5000);
  }
  EXPECT_GT(low, 0);
  EXPECT_EQ(high, 100);
  {
    Consumer consumer(broker.bootstrap(), {{"group.id", "r"}, {"enable.auto.commit", "false"}});
    consumer.assign("ret", 1);
    auto got = consumer.consume(static_cast<size_t>(high - low), 20s);
    ASSERT_EQ(got.size(), static_cast<size_t>(high - low));
    EXPECT_EQ(got.front().offset, low);
  }
  // After a restart the log still starts at the same offset.
  broker.stop();
  broker.start();
  Producer again(broker.bootstrap(), {});
  int64_t low2 = 0;
  int64_t high2 = 0;
  ASSERT_EQ(rd_kafka_query_watermark_offsets(again.get(), "ret", 0, &low2, &high2, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_GE(low2, low);
  EXPECT_EQ(high2, 100);
}

TEST(Librdkafka, IntervalFlushModeServesProduceAndConsume) {
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--flush", "20", "--partitions", "2"});
  Producer producer(broker.bootstrap(), idempotent_props);
  for (int i = 0; i < 2000; ++i) producer.produce("iv", value_of(i));
  ASSERT_TRUE(producer.flush());
  for (const auto& d : producer.deliveries()) ASSERT_EQ(d.err, RD_KAFKA_RESP_ERR_NO_ERROR);
  broker.stop();  // clean shutdown flushes
  broker.start();
  Consumer consumer(broker.bootstrap(), {{"group.id", "iv"}});
  consumer.assign("iv", 2);
  EXPECT_EQ(consumer.consume(2000, 20s).size(), 2000u);
}

TEST(Librdkafka, ListAndDescribeGroups) {
  TempDir dir;
  BrokerProcess broker(dir.path());
  Producer producer(broker.bootstrap(), {});
  producer.produce("lg", "x");
  ASSERT_TRUE(producer.flush());
  Consumer consumer(broker.bootstrap(), {{"group.id", "listed"}, {"auto.offset.reset", "earliest"}});
  consumer.subscribe("lg");
  ASSERT_EQ(consumer.consume(1, 20s).size(), 1u);
  const rd_kafka_group_list* groups = nullptr;
  ASSERT_EQ(rd_kafka_list_groups(producer.get(), "listed", &groups, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(groups->group_cnt, 1);
  EXPECT_STREQ(groups->groups[0].group, "listed");
  EXPECT_STREQ(groups->groups[0].state, "Stable");
  EXPECT_STREQ(groups->groups[0].protocol_type, "consumer");
  EXPECT_EQ(groups->groups[0].member_cnt, 1);
  rd_kafka_group_list_destroy(groups);
}

}  // namespace
}  // namespace starling::broker::testing
