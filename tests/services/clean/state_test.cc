// The clean stage's state: last known values and the dedupe window in
// RocksDB, committed with the offsets, surviving a restart.
#include "services/clean/state.h"

#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "services/clean/cleaner.h"
#include "starling/v1/ecowheels.pb.h"
#include "starling/v1/saga.pb.h"
#include "tests/services/clean/raw_events.h"
#include "tests/support/temp_dir.h"

namespace starling::clean {
namespace {

double temperature_of(const kafka::OutMessage& m) {
  v1::Envelope env;
  EXPECT_TRUE(env.ParseFromString(m.value));
  v1::RideTelemetry r;
  EXPECT_TRUE(r.ParseFromString(env.payload()));
  return r.temperature_c();
}

// all[from, from + n), clipped to its end.
std::vector<kafka::InMessage> slice(const std::vector<kafka::InMessage>& all, std::size_t from, std::size_t n) {
  const auto end = std::min(all.size(), from + n);
  return {all.begin() + static_cast<std::ptrdiff_t>(from), all.begin() + static_cast<std::ptrdiff_t>(end)};
}

class CleanStateTest : public ::testing::Test {
 protected:
  std::string path() const { return dir_ / "state"; }
  testing::TempDir dir_;
  PipelineConfig p_ = pipeline();
  Cleaner cleaner_{p_, "test"};
};

TEST_F(CleanStateTest, MissingValueIsFilledFromTheDevicesLastKnownValueAcrossARestart) {
  {
    RocksCleanStore store(path(), p_.dedupe_window_ms);
    auto b = cleaner_.clean_batch({raw(0, "e0", "bike-1", kT0, 20.5), raw(1, "e1", "bike-2", kT0, 7.0)}, store, 0);
    ASSERT_EQ(b.cleaned, 2u);
    ASSERT_TRUE(store.commit(b.next_offsets).has_value());
  }
  // After a restart, the next event of bike-1 without a temperature gets 20.5,
  RocksCleanStore store(path(), p_.dedupe_window_ms);
  EXPECT_EQ(store.offsets().at({"t.raw", 0}), 2);
  auto b = cleaner_.clean_batch({raw(2, "e2", "bike-1", kT0 + 60'000, std::nullopt)}, store, 0);
  ASSERT_EQ(b.cleaned, 1u);
  EXPECT_EQ(temperature_of(b.out[0]), 20.5);
  // and its envelope says why, with the value as a number.
  EXPECT_TRUE(b.out[0].headers.empty());
  v1::Envelope env;
  ASSERT_TRUE(env.ParseFromString(b.out[0].value));
  ASSERT_EQ(env.changes_size(), 1);
  const auto& c = env.changes(0);
  EXPECT_EQ(c.field(), "temperature_c");
  EXPECT_EQ(c.rule(), "fill_last_known");
  EXPECT_EQ(c.from_case(), v1::Change::FROM_NOT_SET);  // it was missing
  ASSERT_EQ(c.to_case(), v1::Change::kToNumber);
  EXPECT_EQ(c.to_number(), 20.5);
}

TEST_F(CleanStateTest, ARawEnvelopeThatClaimsChangesLosesThemWhenTheRulesChangeNothing) {
  RocksCleanStore store(path(), p_.dedupe_window_ms);
  auto in = raw(0, "e0", "bike-1", kT0, 20.5);
  v1::Envelope env;
  ASSERT_TRUE(env.ParseFromString(in.value));
  auto* forged = env.add_changes();
  forged->set_field("temperature_c");
  forged->set_rule("default");
  in.value = env.SerializeAsString();
  auto b = cleaner_.clean_batch({in}, store, 0);
  ASSERT_EQ(b.cleaned, 1u);
  ASSERT_TRUE(env.ParseFromString(b.out[0].value));
  EXPECT_EQ(env.changes_size(), 0);
  EXPECT_EQ(temperature_of(b.out[0]), 20.5);
}

TEST_F(CleanStateTest, LastKnownValueIsKeptPerPartitionSoAnotherPartitionsStateIsNotUsed) {
  RocksCleanStore store(path(), p_.dedupe_window_ms);
  auto b = cleaner_.clean_batch({raw(0, "e0", "bike-1", kT0, 20.5, /*partition=*/0)}, store, 0);
  ASSERT_TRUE(store.commit(b.next_offsets).has_value());
  b = cleaner_.clean_batch({raw(0, "e1", "bike-1", kT0 + 1000, std::nullopt, /*partition=*/1)}, store, 0);
  EXPECT_EQ(b.rejected, 1u);
}

TEST_F(CleanStateTest, EventIdSeenBeforeARestartIsRejectedAsADuplicate) {
  {
    RocksCleanStore store(path(), p_.dedupe_window_ms);
    auto b = cleaner_.clean_batch({raw(0, "e0", "bike-1", kT0, 20.5)}, store, 0);
    ASSERT_TRUE(store.commit(b.next_offsets).has_value());
  }
  RocksCleanStore store(path(), p_.dedupe_window_ms);
  auto b = cleaner_.clean_batch({raw(1, "e0", "bike-1", kT0 + 599'000, 20.5)}, store, 0);
  ASSERT_EQ(b.rejected, 1u);
  v1::RejectedRecord rej;
  ASSERT_TRUE(rej.ParseFromString(b.out[0].value));
  ASSERT_EQ(rej.reasons_size(), 1);
  EXPECT_EQ(rej.reasons(0).rule(), "dedupe");
  EXPECT_EQ(rej.reasons(0).field(), "event_id");
  EXPECT_EQ(rej.reasons(0).value(), "e0");
  // Its saga still hears about the seq: a REJECTED fact follows the record.
  EXPECT_EQ(b.out.back().topic, kSagaTopic);
}

// Ingest re-produces a saga's identical envelopes when a request is retried
// with its Idempotency-Key (after a 503: some copies may be in Kafka) or an
// MQTT message is redelivered: same saga and seq, later ingest time.
kafka::InMessage reproduced(const kafka::InMessage& first, int64_t offset, int64_t ingest_ms, const std::string& saga) {
  v1::Envelope env;
  EXPECT_TRUE(env.ParseFromString(first.value));
  env.set_ingest_time_ms(ingest_ms);
  env.set_saga_id(saga);
  auto m = first;
  m.offset = offset;
  m.value = env.SerializeAsString();
  return m;
}

TEST_F(CleanStateTest, SameEventOfTheSameSagaAgainIsCleanedAgainNotRejectedAsADuplicate) {
  const auto first = raw(0, "e0", "bike-1", kT0, 20.5);
  {
    RocksCleanStore store(path(), p_.dedupe_window_ms);
    auto b = cleaner_.clean_batch({first}, store, 0);
    ASSERT_EQ(b.rejected, 0u);
    ASSERT_TRUE(store.commit(b.next_offsets).has_value());
  }
  RocksCleanStore store(path(), p_.dedupe_window_ms);
  auto again = cleaner_.clean_batch({reproduced(first, 7, kT0 + 5'000, "s1")}, store, 0);
  EXPECT_EQ(again.rejected, 0u) << "the retried saga's own copy";
  EXPECT_EQ(again.out[0].topic, "t.clean");
  // The same event id in another saga is a duplicate, as before.
  auto other = cleaner_.clean_batch({reproduced(first, 8, kT0 + 6'000, "s2")}, store, 0);
  ASSERT_EQ(other.rejected, 1u);
  v1::RejectedRecord rej;
  ASSERT_TRUE(rej.ParseFromString(other.out[0].value));
  EXPECT_EQ(rej.reasons(0).rule(), "dedupe");
}

// `starling replay --stage clean` re-publishes each event with a new saga id
// and seq, and its original's in origin_saga_id / origin_seq. A replay of
// the original's first copy is cleaned (it skips its own dedupe); a replay of
// a copy that was rejected as a duplicate is rejected again, so replaying
// with unchanged rules never loads a duplicate over the first copy's row.
// A warm-up event (from before the replayed range) is sent as state only.
kafka::InMessage replayed(const kafka::InMessage& original, int64_t offset, uint32_t replay_seq,
                          const std::string& replay_saga = "replay-1", bool warm_up = false) {
  v1::Envelope env;
  EXPECT_TRUE(env.ParseFromString(original.value));
  env.set_origin_saga_id(env.saga_id());
  env.set_origin_seq(env.seq());
  env.set_saga_id(replay_saga);
  env.set_seq(replay_seq);
  env.set_warm_up(warm_up);
  auto m = original;
  m.topic = "t.raw.replay";
  m.offset = offset;
  m.value = env.SerializeAsString();
  return m;
}

TEST_F(CleanStateTest, AReplayedDuplicateIsRejectedAsItsOriginalWasAndTheFirstCopyIsCleaned) {
  RocksCleanStore store(path(), p_.dedupe_window_ms);
  const auto first = raw(0, "e0", "bike-1", kT0, 20.5);
  const auto resend = reproduced(raw(1, "e0", "bike-1", kT0, 99.0), 1, kT0 + 1'000, "s2");
  auto live = cleaner_.clean_batch({first, resend}, store, 0);
  ASSERT_EQ(live.cleaned, 1u);
  ASSERT_EQ(live.rejected, 1u);
  auto replay = cleaner_.clean_batch({replayed(first, 0, 0), replayed(resend, 1, 1)}, store, 0);
  EXPECT_EQ(replay.cleaned, 1u) << "the first copy's replay";
  ASSERT_EQ(replay.rejected, 1u) << "the duplicate's replay would overwrite the first copy's row";
  EXPECT_EQ(replay.out[0].topic, "t.clean");
  v1::RejectedRecord rej;
  ASSERT_TRUE(rej.ParseFromString(replay.out[1].value));
  EXPECT_EQ(rej.reasons(0).rule(), "dedupe");
}

// Item 9 of the hostile-input issue: a replay starting after a device's last
// reading used to start with no last known value, so the range's first
// reading was not filled as in the original run (here: rejected instead of
// loaded with 20.5). The warm-up events before the range rebuild that state
// and output nothing, not even a fact.
TEST_F(CleanStateTest, AReplaysWarmUpGivesTheRangesFirstReadingTheOriginalRunsLastKnownValue) {
  RocksCleanStore store(path(), p_.dedupe_window_ms);
  const auto before = raw(0, "e0", "bike-1", kT0, 20.5);
  const auto first_in_range = raw(1, "e1", "bike-1", kT0 + 60'000, std::nullopt);
  auto live = cleaner_.clean_batch({before, first_in_range}, store, 0);
  ASSERT_EQ(live.cleaned, 2u);
  EXPECT_EQ(temperature_of(live.out[1]), 20.5);

  auto cold = cleaner_.clean_batch({replayed(first_in_range, 0, 0, "replay-cold")}, store, 0);
  EXPECT_EQ(cold.rejected, 1u) << "without a warm-up the range starts with no last known value";

  auto warm = cleaner_.clean_batch(
      {replayed(before, 0, 0, "replay-warm", /*warm_up=*/true), replayed(first_in_range, 1, 0, "replay-warm")}, store,
      0);
  EXPECT_EQ(warm.cleaned, 1u) << "the warm-up is not counted";
  EXPECT_EQ(warm.rejected, 0u);
  ASSERT_EQ(warm.out.size(), 2u) << "the range's record and its fact; nothing for the warm-up";
  EXPECT_EQ(warm.out[0].topic, "t.clean");
  EXPECT_EQ(temperature_of(warm.out[0]), 20.5);
  v1::ProgressFact fact;
  ASSERT_TRUE(fact.ParseFromString(warm.out[1].value));
  EXPECT_EQ(fact.saga_id(), "replay-warm");
  ASSERT_EQ(fact.seqs_size(), 1);
  EXPECT_EQ(fact.seqs(0).first(), 0u);
  EXPECT_EQ(fact.seqs(0).last(), 0u);
  EXPECT_EQ(warm.next_offsets.at({"t.raw.replay", 0}), 2) << "the warm-up's offsets are consumed";
}

TEST_F(CleanStateTest, DuplicateWithinOneBatchIsRejected) {
  RocksCleanStore store(path(), p_.dedupe_window_ms);
  auto b = cleaner_.clean_batch({raw(0, "e0", "bike-1", kT0, 1.0), raw(1, "e0", "bike-1", kT0 + 5, 1.0)}, store, 0);
  EXPECT_EQ(b.cleaned, 1u);
  EXPECT_EQ(b.rejected, 1u);
}

TEST_F(CleanStateTest, EventIdOutsideTheWindowIsNotADuplicateAndOldIdsExpire) {
  RocksCleanStore store(path(), p_.dedupe_window_ms);
  auto b = cleaner_.clean_batch({raw(0, "e0", "bike-1", kT0, 1.0)}, store, 0);
  ASSERT_TRUE(store.commit(b.next_offsets).has_value());
  b = cleaner_.clean_batch({raw(1, "e1", "bike-1", kT0 + 600'001, 1.0)}, store, 0);
  ASSERT_TRUE(store.commit(b.next_offsets).has_value());
  EXPECT_FALSE(store.seen(0, "e0").has_value()) << "beyond the horizon: older than the watermark minus the window";
  const auto stored = store.dump();  // compacts: the filter drops ids beyond the committed horizon
  EXPECT_EQ(stored.count(std::string("e") + std::string(4, '\0') + "e0"), 0u);
  EXPECT_EQ(stored.count(std::string("e") + std::string(4, '\0') + "e1"), 1u);
  b = cleaner_.clean_batch({raw(2, "e0", "bike-1", kT0 + 600'002, 1.0)}, store, 0);
  EXPECT_EQ(b.cleaned, 1u);
}

TEST_F(CleanStateTest, RolledBackBatchLeavesNoStateAndNoOffsets) {
  RocksCleanStore store(path(), p_.dedupe_window_ms);
  auto b = cleaner_.clean_batch({raw(0, "e0", "bike-1", kT0, 20.5)}, store, 0);
  EXPECT_TRUE(store.seen(0, "e0").has_value()) << "staged writes are read back within the batch";
  store.rollback();
  EXPECT_FALSE(store.seen(0, "e0").has_value());
  EXPECT_TRUE(store.offsets().empty());
  EXPECT_TRUE(store.dump().empty());
  // Replayed, the batch gives the same output as the first time.
  auto again = cleaner_.clean_batch({raw(0, "e0", "bike-1", kT0, 20.5)}, store, 0);
  ASSERT_EQ(again.out.size(), b.out.size());
  EXPECT_EQ(again.out[0].value, b.out[0].value);
}

TEST_F(CleanStateTest, FinalStateDoesNotDependOnBatchBoundaries) {
  // Given 300 events of 7 bikes, some without a temperature and some repeated,
  std::vector<kafka::InMessage> all;
  for (int i = 0; i < 300; ++i) {
    const auto id = "e" + std::to_string(i % 17 == 0 ? i - 1 : i);
    all.push_back(raw(i, id, "bike-" + std::to_string(i % 7), kT0 + int64_t{i} * 7'000,
                      i % 3 == 0 ? std::nullopt : std::optional<double>(i * 0.5)));
  }
  auto run = [&](const std::string& dir, std::size_t batch) {
    RocksCleanStore store(dir, p_.dedupe_window_ms);
    std::vector<std::string> outputs;
    for (std::size_t i = 0; i < all.size(); i += batch) {
      const auto part = slice(all, i, batch);
      auto b = cleaner_.clean_batch(part, store, 0);
      for (const auto& m : b.out) {
        if (m.topic != kSagaTopic) outputs.push_back(m.topic + m.value);
      }
      EXPECT_TRUE(store.commit(b.next_offsets).has_value());
    }
    return std::make_pair(store.dump(), outputs);
  };
  // when cleaned in batches of 1, 13 and 300,
  const auto one = run(dir_ / "a", 1);
  const auto thirteen = run(dir_ / "b", 13);
  const auto whole = run(dir_ / "c", 300);
  // then the stored state and every output are the same.
  EXPECT_EQ(one.first, thirteen.first);
  EXPECT_EQ(one.first, whole.first);
  EXPECT_EQ(one.second, thirteen.second);
  EXPECT_EQ(one.second, whole.second);
  EXPECT_GT(one.first.size(), 7u);
}

TEST_F(CleanStateTest, PipelinedBatchesGiveTheSameOutputsAndStateAsOneBatchAtATime) {
  // Given events with missing temperatures, repeats, and ingest times that go
  // back by more than the window (a late copy of an id older than the horizon),
  std::vector<kafka::InMessage> all;
  for (int i = 0; i < 240; ++i) {
    const auto id = "e" + std::to_string(i % 11 == 0 ? i - 1 : i % 37 == 0 ? i - 32 : i);
    const int64_t t = kT0 + int64_t{i} * 20'000 - (i % 37 == 0 ? 590'000 : 0);
    all.push_back(
        raw(i, id, "bike-" + std::to_string(i % 5), t, i % 4 == 0 ? std::nullopt : std::optional<double>(i * 0.25)));
  }
  auto outputs_of = [](const CleanedBatch& b, std::vector<std::string>& into) {
    for (const auto& m : b.out) {
      if (m.topic != kSagaTopic) into.push_back(m.topic + m.value);
    }
  };
  // when cleaned one event at a time (clean, commit: every expiry as early
  // as it can be),
  std::vector<std::string> serial_out;
  std::map<std::string, std::string> serial_state;
  {
    RocksCleanStore store(dir_ / "serial", p_.dedupe_window_ms);
    for (std::size_t i = 0; i < all.size(); ++i) {
      std::vector<kafka::InMessage> part{all[i]};
      auto b = cleaner_.clean_batch(part, store, 0);
      outputs_of(b, serial_out);
      ASSERT_TRUE(store.commit(b.next_offsets).has_value());
    }
    serial_state = store.dump();
  }
  // and pipelined in batches of 13 (batch n+1 cleaned before batch n is
  // committed, so batch n's expiry has not run yet),
  std::vector<std::string> piped_out;
  RocksCleanStore store(dir_ / "piped", p_.dedupe_window_ms);
  std::optional<CleanedBatch> in_flight;
  for (std::size_t i = 0; i < all.size(); i += 13) {
    const auto part = slice(all, i, 13);
    auto b = cleaner_.clean_batch(part, store, 0);
    store.seal();
    if (in_flight) {
      ASSERT_EQ(store.staged_layers(), 2u);
      ASSERT_TRUE(store.commit(in_flight->next_offsets).has_value());
    }
    outputs_of(b, piped_out);
    in_flight = std::move(b);
  }
  ASSERT_TRUE(in_flight && store.commit(in_flight->next_offsets).has_value());
  EXPECT_EQ(store.staged_layers(), 0u);
  // then every output and the stored state are the same.
  EXPECT_EQ(piped_out, serial_out);
  EXPECT_EQ(store.dump(), serial_state);
  EXPECT_GT(std::count_if(serial_out.begin(), serial_out.end(),
                          [](const auto& o) { return o.find("dedupe") != std::string::npos; }),
            5);
}

TEST_F(CleanStateTest, CleaningPartitionsOnThreadsGivesTheSameOutputsAndStateAsOneThread) {
  // Given 900 events of 12 bikes over 3 partitions, some without a
  // temperature, some repeated,
  std::vector<kafka::InMessage> all;
  std::vector<int64_t> next(3, 0);
  for (int i = 0; i < 900; ++i) {
    const int bike = i % 12;
    const int32_t partition = bike % 3;
    const auto id = "e" + std::to_string(i % 19 == 0 ? i - 12 : i);  // the same bike's event 12 back
    all.push_back(raw(next[static_cast<std::size_t>(partition)]++, id, "bike-" + std::to_string(bike),
                      kT0 + int64_t{i} * 3'000, i % 5 == 0 ? std::nullopt : std::optional<double>(i * 0.1), partition));
  }
  auto run = [&](const std::string& dir, int threads) {
    Cleaner cleaner(p_, "test", threads);
    RocksCleanStore store(dir, p_.dedupe_window_ms);
    std::vector<std::string> outputs;
    for (std::size_t i = 0; i < all.size(); i += 100) {
      const auto part = slice(all, i, 100);
      auto b = cleaner.clean_batch(part, store, 0);
      for (const auto& m : b.out) {
        outputs.push_back(m.topic + m.key + m.value);
        for (const auto& h : m.headers) outputs.back() += h.key + h.value;
      }
      EXPECT_TRUE(store.commit(b.next_offsets).has_value());
    }
    return std::make_pair(store.dump(), outputs);
  };
  // when cleaned on one thread and on three,
  const auto one = run(dir_ / "one", 1);
  const auto three = run(dir_ / "three", 3);
  // then every output (records and facts, in input order) and the stored state are the same.
  EXPECT_EQ(one.second, three.second);
  EXPECT_EQ(one.first, three.first);
  EXPECT_GT(std::count_if(one.second.begin(), one.second.end(),
                          [](const auto& o) { return o.find("dedupe") != std::string::npos; }),
            10);
  EXPECT_GT(std::count_if(one.second.begin(), one.second.end(),
                          [](const auto& o) { return o.find("fill_last_known") != std::string::npos; }),
            10);
}

TEST_F(CleanStateTest, CommitWritesOnlyTheOldestLayerAndRollbackDropsTheRest) {
  RocksCleanStore store(path(), p_.dedupe_window_ms);
  auto first = cleaner_.clean_batch({raw(0, "e0", "bike-1", kT0, 20.5)}, store, 0);
  store.seal();
  auto second = cleaner_.clean_batch({raw(1, "e1", "bike-1", kT0 + 1000, 21.5)}, store, 0);
  store.seal();
  EXPECT_TRUE(store.seen(0, "e1").has_value()) << "a later layer reads through the earlier ones";
  ASSERT_TRUE(store.commit(first.next_offsets).has_value());
  EXPECT_EQ(store.offsets().at({"t.raw", 0}), 1);
  EXPECT_EQ(store.dump().count(std::string("e") + std::string(4, '\0') + "e1"), 0u) << "batch 2 is not committed";
  store.rollback();
  EXPECT_FALSE(store.seen(0, "e1").has_value());
  EXPECT_TRUE(store.seen(0, "e0").has_value());
  // Crash-equivalent: redoing batch 2 gives what it gave the first time.
  auto again = cleaner_.clean_batch({raw(1, "e1", "bike-1", kT0 + 1000, 21.5)}, store, 0);
  ASSERT_EQ(again.out.size(), second.out.size());
  EXPECT_EQ(again.out[0].value, second.out[0].value);
}

TEST(DeviceMemoryCodec, RoundTrips) {
  DeviceMemory m{{3, {-5, std::string("a\0b", 3)}}, {9, {kT0, ""}}};
  EXPECT_EQ(decode_memory(encode_memory(m)), m);
}

}  // namespace
}  // namespace starling::clean
