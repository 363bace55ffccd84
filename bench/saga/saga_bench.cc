// The saga coordinator's cost per event as sagas pile up: facts folded
// through Coordinator + RocksSagaStore and outcomes relayed from the outbox
// (as starling-saga does after every batch that decided one), against a
// baseline of the same number of plain RocksDB WriteBatch puts (same batch
// size, same default options, same run). Prints a table, then the cost of
// each tenth of the run: it must stay flat as the store fills.
//
//   saga_bench [events=1000000] [events_per_saga=10] [batch=5000]
//
// Each saga is what a device's request makes: INGESTED with its total, one
// CLEANED and one LOADED fact covering its seqs (so every saga COMPLETES and
// puts one outcome in the outbox). Facts arrive interleaved across sagas, the
// way batches from many devices do, a few hundred sagas apart.

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bench/support/measure.h"
#include "broker-adapters/kafka/outbox.h"
#include "services/common/pipeline.h"
#include "services/saga/coordinator.h"

namespace {

using namespace starling;

using bench::Measure;
using bench::measure;

constexpr int kFactsPerSaga = 3;
constexpr std::size_t kWindow = 256;  // sagas in flight at once

// A producer that persists at once and keeps nothing: the relay's own cost.
class CountingProducer final : public kafka::Producer {
 public:
  uint64_t sent = 0;
  void produce(const kafka::OutMessage& msg, kafka::DeliveryCallback done) override {
    kafka::Delivery d;
    d.topic = msg.topic;
    d.status = kafka::DeliveryStatus::kPersisted;
    ++sent;
    done(d);
  }
  Status flush(std::chrono::milliseconds) override { return {}; }
};

// Fact i of the stream: sagas enter in order, and saga s's facts are spread
// over the next kWindow sagas' arrivals.
kafka::InMessage make_fact(std::size_t i, uint32_t per_saga) {
  const std::size_t round = i / (kWindow * kFactsPerSaga);
  const std::size_t within = i % (kWindow * kFactsPerSaga);
  const auto step = static_cast<int>(within / kWindow);
  const std::size_t s = round * kWindow + within % kWindow;
  v1::ProgressFact f;
  f.set_saga_id(fmt::format("{:032x}", s * 0x9E3779B97F4A7C15ull));
  f.set_pipeline("bench");
  f.set_source("bench");
  f.set_time_ms(1'795'428'000'000 + static_cast<int64_t>(i));
  if (step == 0) {
    f.set_step(v1::STEP_INGESTED);
    f.set_total(per_saga);
  } else {
    f.set_step(step == 1 ? v1::STEP_CLEANED : v1::STEP_LOADED);
    auto* r = f.add_seqs();
    r->set_first(0);
    r->set_last(per_saga - 1);
  }
  kafka::InMessage m;
  m.topic = kSagaTopic;
  m.partition = static_cast<int32_t>(s % 3);
  m.offset = static_cast<int64_t>(i);
  m.key = f.saga_id();
  m.value = f.SerializeAsString();
  return m;
}

// CPU seconds of the calling thread only: the fold and the relay without
// RocksDB's background flushes and compactions.
double thread_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t events = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
  const auto per_saga = static_cast<uint32_t>(argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 10);
  const std::size_t batch = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 5'000;
  if (per_saga == 0 || batch == 0 || events < per_saga) {
    fmt::print(stderr, "usage: saga_bench [events>=events_per_saga] [events_per_saga>=1] [batch>=1]\n");
    return 2;
  }
  const std::size_t sagas = events / per_saga;
  const std::size_t n = sagas / kWindow * kWindow * kFactsPerSaga;  // whole rounds only
  if (n == 0) {
    fmt::print(stderr, "saga_bench: too few sagas for one round of {}\n", kWindow);
    return 2;
  }
  char tmpl[] = "/tmp/saga-bench-XXXXXX";
  const std::filesystem::path dir = ::mkdtemp(tmpl);

  // Baseline: the same number of puts, batch by batch, into plain RocksDB.
  Measure base;
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    if (!rocksdb::DB::Open(o, (dir / "plain").string(), &raw).ok()) return 1;
    std::unique_ptr<rocksdb::DB> db(raw);
    base = measure([&] {
      for (std::size_t i = 0; i < n; i += batch) {
        rocksdb::WriteBatch wb;
        for (std::size_t j = i; j < std::min(n, i + batch); ++j) {
          const auto m = make_fact(j, per_saga);
          wb.Put(m.key + std::to_string(j), m.value);
        }
        if (!db->Write({}, &wb).ok()) std::abort();
      }
    });
  }

  // Each tenth of the run, measured on its own.
  struct Tenth {
    Measure fold;
    Measure relay;
    double foreground = 0;  // this thread's CPU seconds, fold and relay
  };
  std::vector<Tenth> tenths(10);
  uint64_t completed = 0;
  CountingProducer producer;
  double rss_end = 0;
  double rss_peak = 0;
  {
    saga::RocksSagaStore store((dir / "sagas").string());
    saga::CoordinatorOptions co;
    co.pipelines["bench"] = {.stall_after_ms = 3'600'000, .overdue_after_ms = 7'200'000};
    saga::Coordinator coordinator(store, co, [] { return int64_t{1'795'428'000'000}; });
    std::vector<kafka::InMessage> b;
    for (std::size_t i = 0; i < n; i += batch) {
      auto& t = tenths[std::min<std::size_t>(9, i * 10 / n)];
      b.clear();
      for (std::size_t j = i; j < std::min(n, i + batch); ++j) b.push_back(make_fact(j, per_saga));
      std::size_t outcomes = 0;
      const double fg0 = thread_cpu_seconds();
      const auto f = measure([&] {
        auto r = coordinator.fold_batch(b);
        if (!r) {
          fmt::print(stderr, "fold: {}\n", r.error().message);
          std::abort();
        }
        outcomes = *r;
      });
      t.fold.seconds += f.seconds;
      t.fold.cpu += f.cpu;
      if (outcomes > 0) {
        const auto r = measure([&] {
          if (auto sent = kafka::relay_outbox(store, producer); !sent) {
            fmt::print(stderr, "relay: {}\n", sent.error().message);
            std::abort();
          }
        });
        t.relay.seconds += r.seconds;
        t.relay.cpu += r.cpu;
      }
      t.foreground += thread_cpu_seconds() - fg0;
    }
    std::tie(rss_end, rss_peak) = bench::rss_mib();
    (void)store.scan([&](const v1::SagaRecord& r) {
      completed += r.state() == v1::SAGA_STATE_COMPLETED;
      return true;
    });
  }
  std::filesystem::remove_all(dir);

  Measure ours;
  Measure relay;
  for (const auto& t : tenths) {
    ours.seconds += t.fold.seconds;
    ours.cpu += t.fold.cpu;
    relay.seconds += t.relay.seconds;
    relay.cpu += t.relay.cpu;
  }
  const std::size_t n_sagas = n / kFactsPerSaga;
  const double n_events = static_cast<double>(n_sagas) * per_saga;
  const double ours_rate = static_cast<double>(n) / ours.seconds;
  const double base_rate = static_cast<double>(n) / base.seconds;
  fmt::print(
      "saga_bench: {} facts, {} sagas of {} events ({} events), {} COMPLETED, {} outcomes relayed, "
      "batches of {}\n\n",
      n, n_sagas, per_saga, n_events, completed, producer.sent, batch);
  fmt::print("{:<30} {:>12} {:>12} {:>7} {:>13} {:>13}\n", "", "ours/s", "baseline/s", "ratio", "ours cpu-µs",
             "base cpu-µs");
  fmt::print("{:<30} {:>12.0f} {:>12.0f} {:>7.2f} {:>13.2f} {:>13.2f}\n", "fold facts vs RocksDB puts", ours_rate,
             base_rate, ours_rate / base_rate, ours.cpu / static_cast<double>(n) * 1e6,
             base.cpu / static_cast<double>(n) * 1e6);
  fmt::print("{:<30} {:>12.0f} {:>12} {:>7} {:>13.2f} {:>13}\n", "relay outcomes (per outcome)",
             static_cast<double>(producer.sent) / relay.seconds, "", "",
             relay.cpu / static_cast<double>(producer.sent) * 1e6, "");
  fmt::print("\nCPU-µs per event (fold + relay) by tenth of the run:\n");
  fmt::print("{:<34}", "all threads (with RocksDB's own)");
  for (const auto& t : tenths) fmt::print(" {:>5.2f}", (t.fold.cpu + t.relay.cpu) / (n_events / 10) * 1e6);
  fmt::print("\n{:<34}", "the folding thread");
  for (const auto& t : tenths) fmt::print(" {:>5.2f}", t.foreground / (n_events / 10) * 1e6);
  const double first = tenths.front().fold.cpu + tenths.front().relay.cpu;
  const double last = tenths.back().fold.cpu + tenths.back().relay.cpu;
  fmt::print("\nlast tenth / first tenth: {:.2f} (all threads), {:.2f} (the folding thread)\n", last / first,
             tenths.back().foreground / tenths.front().foreground);
  fmt::print("RSS with {} sagas stored: {:.0f} MiB (peak {:.0f} MiB)\n", n_sagas, rss_end, rss_peak);
  return 0;
}
