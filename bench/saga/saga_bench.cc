// Facts folded per second through Coordinator + RocksSagaStore, against a
// baseline of the same number of plain RocksDB WriteBatch puts (same batch
// size, same default options, same machine, same run). Prints a table.
//
//   saga_bench [facts=220000] [batch=5000]

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "bench/support/measure.h"
#include "services/common/pipeline.h"
#include "services/saga/coordinator.h"

namespace {

using namespace starling;

using bench::Measure;
using bench::measure;

// Sagas of 100 events, as a pipeline produces them: INGESTED, then five
// CLEANED and five LOADED facts of 20 seqs each, interleaved across sagas the
// way batches from many devices arrive.
std::vector<kafka::InMessage> make_facts(std::size_t n) {
  constexpr int kPerSaga = 11;
  const std::size_t sagas = (n + kPerSaga - 1) / kPerSaga;
  std::vector<kafka::InMessage> out;
  out.reserve(n);
  for (int step = 0; step < kPerSaga && out.size() < n; ++step) {
    for (std::size_t s = 0; s < sagas && out.size() < n; ++s) {
      v1::ProgressFact f;
      f.set_saga_id(fmt::format("{:032x}", s * 0x9E3779B97F4A7C15ull));
      f.set_pipeline("bench");
      f.set_source("bench");
      f.set_time_ms(1'795'428'000'000 + static_cast<int64_t>(out.size()));
      if (step == 0) {
        f.set_step(v1::STEP_INGESTED);
        f.set_total(100);
      } else {
        f.set_step(step <= 5 ? v1::STEP_CLEANED : v1::STEP_LOADED);
        auto* r = f.add_seqs();
        r->set_first(static_cast<uint32_t>(((step - 1) % 5) * 20));
        r->set_last(r->first() + 19);
      }
      kafka::InMessage m;
      m.topic = kSagaTopic;
      m.partition = static_cast<int32_t>(s % 3);
      m.offset = static_cast<int64_t>(out.size());
      m.key = f.saga_id();
      m.value = f.SerializeAsString();
      out.push_back(std::move(m));
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 220'000;
  const std::size_t batch = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 5'000;
  char tmpl[] = "/tmp/saga-bench-XXXXXX";
  const std::filesystem::path dir = ::mkdtemp(tmpl);
  const auto facts = make_facts(n);

  // Baseline: the same number of puts, batch by batch, into plain RocksDB.
  Measure base;
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    if (!rocksdb::DB::Open(o, (dir / "plain").string(), &raw).ok()) return 1;
    std::unique_ptr<rocksdb::DB> db(raw);
    base = measure([&] {
      for (std::size_t i = 0; i < facts.size(); i += batch) {
        rocksdb::WriteBatch wb;
        for (std::size_t j = i; j < std::min(facts.size(), i + batch); ++j) {
          wb.Put(facts[j].key + std::to_string(j), facts[j].value);
        }
        if (!db->Write({}, &wb).ok()) std::abort();
      }
    });
  }

  Measure ours;
  uint64_t completed = 0;
  {
    saga::RocksSagaStore store((dir / "sagas").string());
    saga::CoordinatorOptions co;
    co.pipelines["bench"] = {.stall_after_ms = 3'600'000, .overdue_after_ms = 7'200'000};
    saga::Coordinator coordinator(store, co, [] { return int64_t{1'795'428'000'000}; });
    ours = measure([&] {
      for (std::size_t i = 0; i < facts.size(); i += batch) {
        std::vector<kafka::InMessage> b(facts.begin() + static_cast<std::ptrdiff_t>(i),
                                        facts.begin() + static_cast<std::ptrdiff_t>(std::min(facts.size(), i + batch)));
        if (auto st = coordinator.fold_batch(b); !st) {
          fmt::print(stderr, "fold: {}\n", st.error().message);
          std::abort();
        }
      }
    });
    (void)store.scan([&](const v1::SagaRecord& r) {
      completed += r.state() == v1::SAGA_STATE_COMPLETED;
      return true;
    });
  }
  std::filesystem::remove_all(dir);

  const double ours_rate = static_cast<double>(n) / ours.seconds;
  const double base_rate = static_cast<double>(n) / base.seconds;
  fmt::print("saga_bench: {} facts ({} sagas of 100 events, {} COMPLETED), batches of {}\n\n", n, (n + 10) / 11,
             completed, batch);
  fmt::print("{:<34} {:>14} {:>14} {:>7} {:>14} {:>14}\n", "stage", "ours/s", "baseline/s", "ratio", "ours cpu-s/M",
             "base cpu-s/M");
  fmt::print("{:<34} {:>14.0f} {:>14.0f} {:>7.2f} {:>14.2f} {:>14.2f}\n", "fold facts vs RocksDB puts", ours_rate,
             base_rate, ours_rate / base_rate, ours.cpu / static_cast<double>(n) * 1e6,
             base.cpu / static_cast<double>(n) * 1e6);
  return 0;
}
