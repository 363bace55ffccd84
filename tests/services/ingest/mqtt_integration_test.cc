// The MQTT front door against the real things: Debian's mosquitto and
// starling-broker on free loopback ports, starling-ingest --mqtt as a child
// process, and a device publishing at QoS 1 with libmosquitto.

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <mosquitto.h>

#include <atomic>
#include <csignal>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/http.h"
#include "services/common/pipeline.h"
#include "services/common/process.h"
#include "services/ingest/mqtt_bridge.h"
#include "starling/v1/ecowheels.pb.h"
#include "starling/v1/envelope.pb.h"
#include "tests/services/broker/broker_process.h"
#include "tests/support/ingest_argv.h"
#include "tests/support/mosquitto_server.h"
#include "tests/support/mqtt_publisher.h"
#include "tests/support/prometheus_sample.h"
#include "tests/support/temp_dir.h"

namespace starling::ingest {
namespace {

using namespace std::chrono_literals;
using testing::Publisher;

// starling-ingest with --mqtt; killed with the test.
class Ingest {
 public:
  Ingest(std::string dir, std::vector<std::string> args) : dir_(std::move(dir)), args_(std::move(args)) {}

  ::testing::AssertionResult start() {
    const auto port_file = dir_ + "/ingest.port";
    std::filesystem::remove(port_file);
    const auto argv = testing::ingest_argv(dir_ + "/ingest", port_file, args_);
    auto p = ChildProcess::spawn(argv, fmt::format("{}/ingest-{}.log", dir_, ++starts_));
    if (!p) return ::testing::AssertionFailure() << p.error().message;
    proc_ = std::move(*p);
    auto port = wait_for_file(port_file, 60s);
    if (!port) return ::testing::AssertionFailure() << "starling-ingest did not start: " << port.error().message;
    url_ = "http://127.0.0.1:" + *port;
    return ::testing::AssertionSuccess();
  }

  /// Polls /readyz (bounded); the last answer.
  HttpResponse wait_ready(std::chrono::seconds bound) {
    const auto end = std::chrono::steady_clock::now() + bound;
    HttpResponse last;
    last.status = 0;
    while (std::chrono::steady_clock::now() < end) {
      if (auto r = http_call("GET", url_ + "/readyz")) {
        last = *r;
        if (r->status == 200) break;
      }
      std::this_thread::sleep_for(100ms);
    }
    return last;
  }

  /// A sample of /metrics, e.g. value("starling_ingest_mqtt_records_refused_total{pipeline=\"ecowheels\"}");
  /// -1 when unreadable, 0 when the series is not there yet.
  double value(const std::string& series) const {
    auto r = http_call("GET", url_ + "/metrics");
    if (!r || r->status != 200) return -1;
    return testing::prometheus_sample(r->body, series).value_or(0);
  }

  void kill9() {
    proc_.signal(SIGKILL);
    proc_.wait(30s);
  }

 private:
  std::string dir_;
  std::vector<std::string> args_;
  std::string url_;
  int starts_ = 0;
  ChildProcess proc_;
};

// Reads `topic` from the start of every partition until `enough` says so,
// or the bound passes.
std::vector<v1::Envelope> read_until(const std::string& bootstrap, const std::string& topic,
                                     const std::function<bool(const std::vector<v1::Envelope>&)>& enough,
                                     std::chrono::seconds bound) {
  std::vector<v1::Envelope> out;
  auto reader = kafka::TopicReader::create({bootstrap, "mqtt-test", {}});
  EXPECT_TRUE(reader.has_value());
  if (!reader) return out;
  auto parts = (*reader)->partitions(topic);
  EXPECT_TRUE(parts.has_value());
  if (!parts) return out;
  std::map<kafka::TopicPartition, int64_t> starts;
  for (int i = 0; i < *parts; ++i) starts[{topic, i}] = 0;
  EXPECT_TRUE((*reader)->assign(starts).has_value());
  const auto end = std::chrono::steady_clock::now() + bound;
  while (!enough(out) && std::chrono::steady_clock::now() < end) {
    auto batch = (*reader)->poll_batch(1000, 200ms);
    if (!batch) continue;
    for (const auto& m : *batch) {
      v1::Envelope e;
      EXPECT_TRUE(e.ParseFromString(m.value));
      out.push_back(std::move(e));
    }
  }
  return out;
}

std::string ride_of(const v1::Envelope& e) {
  v1::RideTelemetry r;
  EXPECT_TRUE(r.ParseFromString(e.payload()));
  return r.ride_id();
}

class MqttIngestIntegration : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(mosquitto_.start()) << "mosquitto did not start; see " << mosquitto_.log_path();
    broker_ = std::make_unique<broker::testing::BrokerProcess>(std::filesystem::path(dir_ / "broker"));
    auto st = kafka::create_topics({broker_->bootstrap(), "mqtt-test", {}}, {{"ecowheels.raw", 3}, {kSagaTopic, 3}});
    ASSERT_TRUE(st.has_value()) << st.error().message;
  }

  std::unique_ptr<Ingest> ingest(const std::string& client_id) {
    return std::make_unique<Ingest>(
        dir_.path(), std::vector<std::string>{"--kafka", broker_->bootstrap(), "--mqtt", mosquitto_.address(),
                                              "--mqtt-client-id", client_id});
  }

  testing::TempDir dir_;
  testing::MosquittoServer mosquitto_{dir_.path()};
  std::unique_ptr<broker::testing::BrokerProcess> broker_;
};

TEST_F(MqttIngestIntegration, PublishedRecordsArriveOnRawWithTheTopicsDeviceIdAndBadOnesAreCounted) {
  // Given ingest bridged to mosquitto (subscribed once /readyz is 200)
  auto in = ingest("it-bridge");
  ASSERT_TRUE(in->start());
  const auto ready = in->wait_ready(60s);
  ASSERT_EQ(ready.status, 200) << ready.body;

  // When a fleet publishes 40 good messages (every fourth an array of two
  // records) and four bad ones
  Publisher pub(mosquitto_.port());
  ASSERT_TRUE(pub.ok());
  struct Sent {
    std::string device, topic, payload;
  };
  std::map<std::string, Sent> by_ride;  // ride id -> the message that carried it
  auto send = [&](const std::string& device, const std::string& payload, const std::vector<std::string>& rides) {
    const auto topic = fmt::format("starling/ecowheels/{}/events", device);
    for (const auto& r : rides) by_ride[r] = {device, topic, payload};
    ASSERT_TRUE(pub.publish(topic, payload));
  };
  for (int i = 0; i < 40; ++i) {
    const auto device = fmt::format("bike-{:04}", i % 5);
    if (i % 4 == 0) {
      send(device, fmt::format(R"([{{"ride_id":"ride-{0}a","battery_pct":50}},{{"ride_id":"ride-{0}b"}}])", i),
           {fmt::format("ride-{}a", i), fmt::format("ride-{}b", i)});
    } else if (i % 4 == 1) {
      // A record may name its device, if it is the topic's.
      send(device, fmt::format(R"({{"ride_id":"ride-{}","device_id":"{}"}})", i, device), {fmt::format("ride-{}", i)});
    } else {
      send(device, fmt::format(R"({{"ride_id":"ride-{}","speed_kmh":12.5}})", i), {fmt::format("ride-{}", i)});
    }
  }
  // one good and one wrongly typed record; the good one goes through
  send("bike-0001", R"([{"ride_id":"good-1"},{"ride_id":"bad-1","battery_pct":"full"}])", {"good-1"});
  // a record naming another device than its topic
  ASSERT_TRUE(pub.publish("starling/ecowheels/bike-0002/events", R"({"ride_id":"other","device_id":"bike-0003"})"));
  ASSERT_TRUE(pub.publish("starling/nosuch/bike-0001/events", R"({"ride_id":"nowhere"})"));
  ASSERT_TRUE(pub.publish("starling/ecowheels/bike-0001/events", "not json"));
  ASSERT_TRUE(pub.wait_acked(60s));

  // Then every good record is on ecowheels.raw, with the topic's device id
  // and the saga id derived from its message
  const auto envs = read_until(
      broker_->bootstrap(), "ecowheels.raw",
      [&](const std::vector<v1::Envelope>& got) { return got.size() >= by_ride.size(); }, 120s);
  std::set<std::string> rides;
  for (const auto& e : envs) {
    const auto ride = ride_of(e);
    rides.insert(ride);
    ASSERT_TRUE(by_ride.contains(ride)) << "unexpected record " << ride;
    const auto& s = by_ride.at(ride);
    v1::RideTelemetry r;
    ASSERT_TRUE(r.ParseFromString(e.payload()));
    EXPECT_EQ(r.device_id(), s.device) << ride;
    EXPECT_EQ(e.device_id(), s.device) << ride;
    EXPECT_EQ(e.saga_id(), mqtt_saga_id("ecowheels", s.topic, s.payload)) << ride;
    EXPECT_EQ(e.event_id(), fmt::format("{}-{}", e.saga_id(), e.seq())) << ride;
  }
  EXPECT_EQ(rides.size(), by_ride.size());
  EXPECT_EQ(envs.size(), by_ride.size()) << "a record arrived twice without any crash";

  // and /metrics counts the refused ones (once all 44 messages are answered)
  const int messages = 44;
  const auto answered = [&] {
    double refused = 0;
    for (const char* reason : {"bad_topic", "unknown_pipeline", "undecodable", "no_valid_record"}) {
      refused += in->value(fmt::format(R"(starling_ingest_mqtt_messages_refused_total{{reason="{}"}})", reason));
    }
    return in->value("starling_ingest_mqtt_messages_accepted_total") + refused;
  };
  for (int i = 0; i < 300 && answered() < messages; ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(in->value("starling_ingest_mqtt_messages_received_total"), messages);
  EXPECT_EQ(in->value("starling_ingest_mqtt_messages_accepted_total"), 41);
  EXPECT_EQ(in->value(R"(starling_ingest_mqtt_records_accepted_total{pipeline="ecowheels"})"), by_ride.size());
  EXPECT_EQ(in->value(R"(starling_ingest_mqtt_records_refused_total{pipeline="ecowheels"})"), 2);  // bad-1, other
  EXPECT_EQ(in->value(R"(starling_ingest_mqtt_messages_refused_total{reason="no_valid_record"})"), 1);
  EXPECT_EQ(in->value(R"(starling_ingest_mqtt_messages_refused_total{reason="unknown_pipeline"})"), 1);
  EXPECT_EQ(in->value(R"(starling_ingest_mqtt_messages_refused_total{reason="undecodable"})"), 1);
  EXPECT_EQ(in->value("starling_ingest_mqtt_connected"), 1);
}

TEST_F(MqttIngestIntegration, ReadyzNamesTheMqttConnectionWhileMosquittoCannotBeReached) {
  // Given ingest pointed at a port where no mosquitto listens
  auto in = std::make_unique<Ingest>(dir_.path(),
                                     std::vector<std::string>{"--kafka", broker_->bootstrap(), "--mqtt",
                                                              fmt::format("127.0.0.1:{}", testing::free_port())});
  ASSERT_TRUE(in->start());
  // Then /readyz stays 503 and says why (Kafka itself is reachable)
  // (it waits six seconds for a 200 that must not come)
  const auto r = in->wait_ready(6s);
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("MQTT"), std::string::npos) << r.body;
}

TEST_F(MqttIngestIntegration, MessageKafkaCouldNotPersistIsNotAcknowledgedAndArrivesOnceKafkaIsBack) {
  // Given ingest bridged to mosquitto, with a short produce timeout
  auto in = std::make_unique<Ingest>(
      dir_.path(), std::vector<std::string>{"--kafka", broker_->bootstrap(), "--mqtt", mosquitto_.address(),
                                            "--mqtt-client-id", "outage-bridge", "--produce-timeout", "1500"});
  ASSERT_TRUE(in->start());
  ASSERT_EQ(in->wait_ready(60s).status, 200);
  Publisher pub(mosquitto_.port());
  ASSERT_TRUE(pub.ok());

  // When starling-broker is killed and a device publishes meanwhile
  broker_->kill9();
  const std::string topic = "starling/ecowheels/bike-0042/events";
  const std::string payload = R"({"ride_id":"during-outage"})";
  ASSERT_TRUE(pub.publish(topic, payload));
  ASSERT_TRUE(pub.wait_acked(30s));
  // (Kafka did not confirm it at least once: no PUBACK, the bridge reconnected)
  for (int i = 0; i < 600 && in->value("starling_ingest_mqtt_messages_unconfirmed_total") < 1; ++i) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_GE(in->value("starling_ingest_mqtt_messages_unconfirmed_total"), 1);
  EXPECT_EQ(in->value("starling_ingest_mqtt_messages_accepted_total"), 0);

  // Then, once the broker is back, mosquitto's redelivery lands on <p>.raw
  broker_->restart_on_same_port();
  const auto envs = read_until(
      broker_->bootstrap(), "ecowheels.raw", [](const std::vector<v1::Envelope>& got) { return !got.empty(); }, 120s);
  ASSERT_FALSE(envs.empty()) << "the message published during the outage is lost";
  for (const auto& e : envs) {
    EXPECT_EQ(ride_of(e), "during-outage");
    EXPECT_EQ(e.saga_id(), mqtt_saga_id("ecowheels", topic, payload));
  }
  for (int i = 0; i < 300 && in->value("starling_ingest_mqtt_messages_accepted_total") < 1; ++i) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(in->value("starling_ingest_mqtt_messages_accepted_total"), 1);
}

TEST_F(MqttIngestIntegration, EveryMessageIsOnRawAfterKillNineDuringTheStreamAndDuplicatesAreIdentical) {
  // Given ingest bridged to mosquitto with a fixed client id, subscribed
  const std::string client_id = "crash-bridge";
  auto in = ingest(client_id);
  ASSERT_TRUE(in->start());
  ASSERT_EQ(in->wait_ready(60s).status, 200);

  // When a fleet of 20 bikes publishes 2,000 QoS 1 messages at about 250/s
  const int total = 2000;
  std::map<std::string, std::pair<std::string, std::string>> by_ride;  // ride -> (topic, payload)
  for (int i = 0; i < total; ++i) {
    const auto topic = fmt::format("starling/ecowheels/bike-{:04}/events", i % 20);
    by_ride[fmt::format("ride-{}", i)] = {topic,
                                          fmt::format(R"({{"ride_id":"ride-{}","battery_pct":{}}})", i, i % 100)};
  }
  Publisher pub(mosquitto_.port());
  ASSERT_TRUE(pub.ok());
  std::atomic<bool> published{false};
  std::thread device([&] {
    for (int i = 0; i < total; ++i) {
      const auto& [topic, payload] = by_ride.at(fmt::format("ride-{}", i));
      pub.publish(topic, payload);
      if (i % 25 == 24) std::this_thread::sleep_for(100ms);
    }
    published = true;
  });

  // and starling-ingest is killed with -9 five times, each time while it
  // holds messages it took but has not yet acknowledged (received > answered),
  // and restarted with the same client id
  int kills = 0;
  for (int k = 0; k < 5; ++k) {
    bool in_flight = false;
    for (int i = 0; i < 2000 && !in_flight; ++i) {
      const auto received = in->value("starling_ingest_mqtt_messages_received_total");
      const auto accepted = in->value("starling_ingest_mqtt_messages_accepted_total");
      in_flight = received > 0 && received > accepted;
      if (!in_flight) std::this_thread::sleep_for(5ms);
    }
    if (!in_flight) break;  // the stream is over
    in->kill9();
    ++kills;
    in = ingest(client_id);
    ASSERT_TRUE(in->start());
    ASSERT_EQ(in->wait_ready(60s).status, 200);
  }
  device.join();
  ASSERT_TRUE(pub.wait_acked(120s));
  ASSERT_TRUE(published);
  EXPECT_GE(kills, 2) << "the stream ended before ingest could be killed mid-flight";

  // Then every published message is on ecowheels.raw at least once
  const auto envs = read_until(
      broker_->bootstrap(), "ecowheels.raw",
      [&](const std::vector<v1::Envelope>& got) {
        std::set<std::string> seen;
        for (const auto& e : got) seen.insert(ride_of(e));
        return seen.size() >= by_ride.size();
      },
      300s);
  std::map<std::string, std::vector<const v1::Envelope*>> copies;
  for (const auto& e : envs) copies[ride_of(e)].push_back(&e);
  EXPECT_EQ(copies.size(), by_ride.size()) << "messages are missing after " << kills << " kill -9s";
  for (const auto& [ride, _] : by_ride) EXPECT_TRUE(copies.contains(ride)) << ride << " is lost";

  // and every copy of a message is the same saga, seq and event id: a
  // duplicate is an identical redelivery, which downstream folds
  std::size_t duplicates = 0;
  for (const auto& [ride, list] : copies) {
    ASSERT_TRUE(by_ride.contains(ride)) << "unexpected record " << ride;
    const auto& [topic, payload] = by_ride.at(ride);
    duplicates += list.size() - 1;
    for (const auto* e : list) {
      EXPECT_EQ(e->saga_id(), mqtt_saga_id("ecowheels", topic, payload)) << ride;
      EXPECT_EQ(e->seq(), 0u) << ride;
      EXPECT_EQ(e->event_id(), e->saga_id() + "-0") << ride;
    }
  }
  std::printf("%d kill -9s; %zu of %d messages were produced more than once (identical redeliveries)\n", kills,
              duplicates, total);
}

}  // namespace
}  // namespace starling::ingest
