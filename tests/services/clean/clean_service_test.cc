// The clean stage on the one consumer loop, through the fake consumer and
// producer: outputs, then state and offsets together; a restart resumes from
// them with the state it stored.
#include "services/clean/clean_service.h"

#include <gtest/gtest.h>

#include <atomic>

#include "starling/v1/ecowheels.pb.h"
#include "starling/v1/saga.pb.h"
#include "tests/services/clean/raw_events.h"
#include "tests/support/fake_kafka.h"
#include "tests/support/temp_dir.h"

namespace starling::clean {
namespace {

using starling::testing::FakeConsumer;
using starling::testing::FakeProducer;

// A raw envelope of bike-1 in saga s1; no temperature when `temperature` < -100.
std::string raw_value(const std::string& id, uint32_t seq, double temperature) {
  return raw(seq, id, "bike-1", kT0 + seq, temperature > -100 ? std::optional<double>(temperature) : std::nullopt)
      .value;
}

// The clean records produced, as event id → temperature.
std::map<std::string, double> cleaned(const FakeProducer& producer) {
  std::map<std::string, double> out;
  for (const auto& m : producer.produced()) {
    if (m.topic != "t.clean") continue;
    v1::Envelope env;
    EXPECT_TRUE(env.ParseFromString(m.value));
    v1::RideTelemetry r;
    EXPECT_TRUE(r.ParseFromString(env.payload()));
    out[env.event_id()] = r.temperature_c();
  }
  return out;
}

// Runs the stage until `n` clean records were produced (20 s at most).
int run_until_cleaned(CleanService& service, FakeProducer& producer, FakeConsumer& consumer, std::size_t n) {
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  return service.run(producer, consumer.factory(),
                     {.batch_max = 10, .batch_wait = std::chrono::milliseconds(10), .pipelined = true, .stop = [&] {
                        return cleaned(producer).size() >= n || std::chrono::steady_clock::now() > limit;
                      }});
}

TEST(CleanServiceTest, ARestartResumesFromTheStoredOffsetsWithTheStoredDeviceState) {
  starling::testing::TempDir dir;
  const auto p = pipeline();
  const kafka::TopicPartition tp{"t.raw", 0};
  {
    RocksCleanStore store(dir / "state", 0);
    CleanService service(p, store, {}, "clean-test");
    FakeConsumer consumer;
    FakeProducer producer;
    consumer.append("t.raw", 0, raw_value("e1", 0, 21.5));
    consumer.append("t.raw", 0, raw_value("e2", 1, -999));  // filled from e1
    consumer.schedule({.assign = {tp}});
    ASSERT_EQ(run_until_cleaned(service, producer, consumer, 2), 0);
    EXPECT_EQ(cleaned(producer), (std::map<std::string, double>{{"e1", 21.5}, {"e2", 21.5}}));
    EXPECT_EQ(store.offsets().at(tp), 2);  // stored on stop: the outputs were persisted
  }
  // A new process: the same log plus one event, a store opened again.
  RocksCleanStore store(dir / "state", 0);
  CleanService service(p, store, {}, "clean-test");
  FakeConsumer consumer;
  FakeProducer producer;
  consumer.append("t.raw", 0, raw_value("e1", 0, 21.5));
  consumer.append("t.raw", 0, raw_value("e2", 1, -999));
  consumer.append("t.raw", 0, raw_value("e3", 2, -999));  // filled from the stored state
  consumer.schedule({.assign = {tp}});
  ASSERT_EQ(run_until_cleaned(service, producer, consumer, 1), 0);
  EXPECT_EQ(cleaned(producer), (std::map<std::string, double>{{"e3", 21.5}}));
  EXPECT_EQ(store.offsets().at(tp), 3);
}

TEST(CleanServiceTest, AnOutputTooLargeForItsTopicStopsTheStageWithNothingCommitted) {
  starling::testing::TempDir dir;
  const auto p = pipeline();
  RocksCleanStore store(dir / "state", 0);
  CleanService service(p, store, {}, "clean-test");
  FakeConsumer consumer;
  FakeProducer producer;
  producer.decide([](const kafka::OutMessage& m) {
    return m.topic == "t.clean" ? FakeProducer::failed("Broker: Message size too large", true)
                                : FakeProducer::persisted();
  });
  consumer.append("t.raw", 0, raw_value("e1", 0, 21.5));
  consumer.schedule({.assign = {{"t.raw", 0}}});
  std::atomic<bool> late{false};
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  const int rc = service.run(producer, consumer.factory(),
                             {.batch_wait = std::chrono::milliseconds(10), .pipelined = true, .stop = [&] {
                                return late = std::chrono::steady_clock::now() > limit;
                              }});
  EXPECT_FALSE(late) << "a permanent produce error was retried";
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(cleaned(producer).size(), 1u);  // sent once, not again
  EXPECT_TRUE(store.offsets().empty());
  EXPECT_EQ(store.staged_layers(), 0u);  // what was staged for it is rolled back
}

// A clean record over the message limit (an event id of 3,000 bytes against
// a limit of 4,000) never reaches Kafka: it is rejected as too_large in its
// truncated form, its saga gets a REJECTED fact for that seq, and the
// partition goes on.
TEST(CleanServiceTest, ARecordOverTheMessageLimitIsRejectedAsTooLargeAndThePartitionGoesOn) {
  starling::testing::TempDir dir;
  const auto p = pipeline();
  RocksCleanStore store(dir / "state", 0);
  CleanService service(p, store, {}, "clean-test");
  FakeConsumer consumer;
  FakeProducer producer;
  const std::string big_id = "e2-" + std::string(3'000, 'x');
  consumer.append("t.raw", 0, raw_value("e1", 0, 21.5));
  consumer.append("t.raw", 0, raw_value(big_id, 1, 20));
  consumer.append("t.raw", 0, raw_value("e3", 2, 19));
  consumer.schedule({.assign = {{"t.raw", 0}}});
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  ASSERT_EQ(
      service.run(producer, consumer.factory(),
                  {.batch_max = 10,
                   .batch_wait = std::chrono::milliseconds(10),
                   .pipelined = true,
                   .stop = [&] { return cleaned(producer).size() >= 2 || std::chrono::steady_clock::now() > limit; },
                   .max_output_bytes = 4'000}),
      0);
  EXPECT_EQ(cleaned(producer), (std::map<std::string, double>{{"e1", 21.5}, {"e3", 19}}));
  std::vector<v1::RejectedRecord> rejected;
  std::vector<v1::ProgressFact> refusals;
  for (const auto& m : producer.produced()) {
    EXPECT_LE(kafka::output_bytes(m), 4'000u) << m.topic;
    if (m.topic == "t.rejected") {
      ASSERT_TRUE(rejected.emplace_back().ParseFromString(m.value));
    }
    v1::ProgressFact f;
    if (m.topic == kSagaTopic && f.ParseFromString(m.value) && f.step() == v1::STEP_REJECTED) refusals.push_back(f);
  }
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].reasons(0).rule(), "too_large");
  EXPECT_EQ(rejected[0].envelope().event_id(), big_id);
  EXPECT_TRUE(rejected[0].envelope().payload().empty()) << "the dead letter is the truncated form";
  ASSERT_EQ(refusals.size(), 1u);
  ASSERT_EQ(refusals[0].rejections_size(), 1);
  EXPECT_EQ(refusals[0].rejections(0).seq(), 1u);
  EXPECT_EQ(refusals[0].rejections(0).reasons(0).rule(), "too_large");
  EXPECT_EQ(store.offsets().at({"t.raw", 0}), 3);
}

}  // namespace
}  // namespace starling::clean
