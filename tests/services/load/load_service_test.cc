// The load stage on the one consumer loop, through the fake consumer and
// producer: rows, offsets and LOADED facts in one transaction, the facts
// relayed after; a restart resumes from the offsets stored in the sink.
#include "services/load/load_service.h"

#include <gtest/gtest.h>

#include "services/load/sqlite_sink.h"
#include "starling/v1/ecowheels.pb.h"
#include "starling/v1/saga.pb.h"
#include "tests/services/load/sink_rows.h"
#include "tests/services/load/sqlite_query.h"
#include "tests/support/fake_kafka.h"
#include "tests/support/temp_dir.h"

namespace starling::load {
namespace {

using starling::testing::FakeConsumer;
using starling::testing::FakeProducer;

std::string clean_envelope(const std::string& id, uint32_t seq, const std::string& saga = "s1",
                           const std::string& device = "bike-1") {
  v1::RideTelemetry r;
  r.set_event_id(id);
  r.set_device_id(device);
  r.set_speed_kmh(10 + seq);
  v1::Envelope env;
  env.set_event_id(id);
  env.set_saga_id(saga);
  env.set_seq(seq);
  env.set_pipeline("t");
  env.set_device_id(device);
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

// A FAILED outcome deletes rows only in a pipeline that opted into
// all-or-nothing batches (saga.atomic); otherwise accepted data stays,
// whoever published FAILED.
TEST(LoadServiceTest, AFailedOutcomeRemovesTheSagasRowsOnlyInAnAtomicPipeline) {
  for (const bool atomic : {false, true}) {
    starling::testing::TempDir dir;
    const auto p = parse_pipeline(std::string(kPipeline) + (atomic ? "saga:\n  atomic: true\n" : ""), "t.yaml");
    ASSERT_EQ(p.saga_atomic, atomic);
    SqliteSink sink(dir / "w.db", p);
    LoadService service(p, sink, {}, "load-test");
    FakeConsumer consumer;
    FakeProducer producer;
    for (uint32_t i = 0; i < 3; ++i) consumer.append("t.clean", 0, clean_envelope("e" + std::to_string(i), i));
    v1::SagaOutcome failed;
    failed.set_saga_id("s1");
    failed.set_pipeline("t");
    failed.set_state(v1::SAGA_STATE_FAILED);
    failed.set_reason("atomic batch: 1 of 4 seqs refused by the sink");
    consumer.append(kOutcomeTopic, 0, failed.SerializeAsString());
    consumer.schedule({.assign = {{"t.clean", 0}, {kOutcomeTopic, 0}}});
    const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    EXPECT_EQ(service.run(producer, consumer.factory(),
                          {.batch_max = 10,
                           .batch_wait = std::chrono::milliseconds(10),
                           .stop =
                               [&] {
                                 return (consumer.drained() && loaded_seqs(producer).size() == 3) ||
                                        std::chrono::steady_clock::now() > limit;
                               }}),
              0);
    ASSERT_TRUE(consumer.drained()) << "atomic=" << atomic;
    const auto rows = query(dir / "w.db", "SELECT count(*) FROM rides")[0][0];
    const auto compensations = query(dir / "w.db", "SELECT count(*) FROM _starling_compensated")[0][0];
    EXPECT_EQ(rows, atomic ? "0" : "3") << "atomic=" << atomic;
    EXPECT_EQ(compensations, atomic ? "1" : "0") << "atomic=" << atomic;
  }
}

// Both routes to another tenant's row: an event id a device chose that
// another device already used, and an Idempotency-Key reused after ingest's
// cache forgot it (the same saga id, so the same derived "<saga>-<seq>" ids).
// Each is refused at load with the reason event_id_conflict, dead-lettered,
// and reported to the saga; the first device's row stays as it was.
TEST(LoadServiceTest, AnotherDevicesRowIsNeverOverwrittenAndTheAttemptIsRejectedAsEventIdConflict) {
  starling::testing::TempDir dir;
  const auto p = parse_pipeline(kPipeline, "t.yaml");
  SqliteSink sink(dir / "w.db", p);
  LoadService service(p, sink, {}, "load-test");
  FakeConsumer consumer;
  FakeProducer producer;
  consumer.append("t.clean", 0, clean_envelope("ride-7", 0, "s1", "bike-1"));
  consumer.append("t.clean", 0, clean_envelope("key-saga-0", 1, "key-saga", "bike-1"));
  consumer.append("t.clean", 0, clean_envelope("ride-7", 5, "s2", "bike-2"));
  consumer.append("t.clean", 0, clean_envelope("key-saga-0", 6, "key-saga", "bike-2"));
  consumer.schedule({.assign = {{"t.clean", 0}}});
  std::vector<v1::RejectedRecord> dead;
  std::vector<v1::ProgressFact> refusals;
  auto collect = [&] {
    dead.clear();
    refusals.clear();
    for (const auto& m : producer.produced()) {
      if (m.topic == "t.dlq") (void)dead.emplace_back().ParseFromString(m.value);
      v1::ProgressFact f;
      if (m.topic == kSagaTopic && f.ParseFromString(m.value) && f.step() == v1::STEP_REJECTED_AT_LOAD) {
        refusals.push_back(f);
      }
    }
    return dead.size() >= 2 && refusals.size() >= 2;
  };
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  EXPECT_EQ(service.run(producer, consumer.factory(),
                        {.batch_max = 1,
                         .batch_wait = std::chrono::milliseconds(10),
                         .stop = [&] { return collect() || std::chrono::steady_clock::now() > limit; }}),
            0);
  collect();
  ASSERT_EQ(dead.size(), 2u);
  for (const auto& d : dead) {
    ASSERT_EQ(d.reasons_size(), 1);
    EXPECT_EQ(d.reasons(0).rule(), "event_id_conflict");
    EXPECT_EQ(d.reasons(0).field(), "event_id");
    EXPECT_EQ(d.envelope().device_id(), "bike-2");
  }
  ASSERT_EQ(refusals.size(), 2u);
  EXPECT_EQ(refusals[0].rejections(0).reasons(0).rule(), "event_id_conflict");
  EXPECT_EQ(query(dir / "w.db", "SELECT event_id, saga_id, device_id, speed_kmh FROM rides ORDER BY event_id"),
            (std::vector<std::vector<std::string>>{{"key-saga-0", "key-saga", "bike-1", "11.0"},
                                                   {"ride-7", "s1", "bike-1", "10.0"}}));
}

}  // namespace
}  // namespace starling::load
