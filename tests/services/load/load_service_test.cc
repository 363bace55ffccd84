// The load stage on the one consumer loop, through the fake consumer and
// producer: rows, offsets and LOADED facts in one transaction, the facts
// relayed after; a restart resumes from the offsets stored in the sink.
#include "services/load/load_service.h"

#include <gtest/gtest.h>

#include "services/load/sqlite_sink.h"
#include "starling/v1/ecowheels.pb.h"
#include "starling/v1/saga.pb.h"
#include "tests/services/load/sink_rows.h"
#include "tests/support/fake_kafka.h"
#include "tests/support/temp_dir.h"

namespace starling::load {
namespace {

using starling::testing::FakeConsumer;
using starling::testing::FakeProducer;

std::string clean_envelope(const std::string& id, uint32_t seq) {
  v1::RideTelemetry r;
  r.set_event_id(id);
  r.set_device_id("bike-1");
  r.set_speed_kmh(10 + seq);
  v1::Envelope env;
  env.set_event_id(id);
  env.set_saga_id("s1");
  env.set_seq(seq);
  env.set_pipeline("t");
  env.set_device_id("bike-1");
  env.set_payload(r.SerializeAsString());
  return env.SerializeAsString();
}

// The seqs of saga s1 that LOADED facts reported.
std::set<uint32_t> loaded_seqs(const FakeProducer& producer) {
  std::set<uint32_t> seqs;
  for (const auto& m : producer.produced()) {
    if (m.topic != kSagaTopic) continue;
    v1::ProgressFact f;
    EXPECT_TRUE(f.ParseFromString(m.value));
    if (f.step() != v1::STEP_LOADED) continue;
    for (const auto& r : f.seqs()) {
      for (uint32_t s = r.first(); s <= r.last(); ++s) seqs.insert(s);
    }
  }
  return seqs;
}

int run_until_loaded(LoadService& service, FakeProducer& producer, FakeConsumer& consumer, std::size_t n) {
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  return service.run(producer, consumer.factory(),
                     {.batch_max = 2, .batch_wait = std::chrono::milliseconds(10), .stop = [&] {
                        return loaded_seqs(producer).size() >= n || std::chrono::steady_clock::now() > limit;
                      }});
}

TEST(LoadServiceTest, RowsOffsetsAndFactsCommitTogetherAndARestartResumesFromTheStoredOffsets) {
  starling::testing::TempDir dir;
  const auto p = parse_pipeline(kPipeline, "t.yaml");
  const kafka::TopicPartition tp{"t.clean", 0};
  // One process: a log of `events` envelopes, run until `loaded` seqs were
  // reported LOADED; returns those seqs and the offset stored after.
  auto process = [&](uint32_t events, std::size_t loaded) {
    SqliteSink sink(dir / "w.db", p);
    LoadService service(p, sink, {}, "load-test");
    FakeConsumer consumer;
    FakeProducer producer;
    for (uint32_t i = 0; i < events; ++i) consumer.append("t.clean", 0, clean_envelope("e" + std::to_string(i), i));
    consumer.schedule({.assign = {tp}});
    EXPECT_EQ(run_until_loaded(service, producer, consumer, loaded), 0);
    auto offsets = sink.offsets();
    EXPECT_TRUE(offsets && offsets->contains(tp));
    return std::pair{loaded_seqs(producer), offsets && offsets->contains(tp) ? offsets->at(tp) : -1};
  };
  EXPECT_EQ(process(3, 3), (std::pair{std::set<uint32_t>{0, 1, 2}, int64_t{3}}));
  // Restarted over the same log plus one: only what was not stored is loaded.
  EXPECT_EQ(process(4, 1), (std::pair{std::set<uint32_t>{3}, int64_t{4}}));
}

}  // namespace
}  // namespace starling::load
