// The clean stage's own work per event, without Kafka: Cleaner::clean_batch
// over the simulator's fleet in batches of 10,000, each batch sealed and its
// state committed to RocksDB one batch later (as starling-clean does, minus
// the network and the commit's own thread).
// Google Benchmark; items/s are events/s on one thread.
//
//   build/release/bin/cleaner_bench [--benchmark_repetitions=5]

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>
#include <optional>

#include "bench/clean/raw_events.h"
#include "services/clean/cleaner.h"
#include "services/clean/state.h"

namespace {

using namespace starling;

struct Input {
  PipelineConfig pipeline = load_pipeline(STARLING_SOURCE_DIR "/pipelines/ecowheels.yaml");
  std::vector<std::vector<kafka::InMessage>> batches;
  Input() {
    auto raw = bench::raw_events(pipeline, 100'000);
    if (!raw) throw std::runtime_error(raw.error().message);
    std::vector<int64_t> next(static_cast<std::size_t>(pipeline.partitions), 0);
    for (std::size_t i = 0; i < raw->size(); ++i) {
      if (i % 10'000 == 0) batches.emplace_back();
      auto& m = (*raw)[i];
      const auto part = static_cast<int32_t>(std::hash<std::string>{}(m.key) % next.size());
      batches.back().push_back(
          {m.topic, part, next[static_cast<std::size_t>(part)]++, 0, m.key, std::move(m.value), {}});
    }
  }
};

void BM_CleanAndCommit(benchmark::State& state) {
  static const Input in;
  clean::Cleaner cleaner(in.pipeline, "bench");
  const auto dir = std::filesystem::temp_directory_path() / ("cleaner-bench-" + std::to_string(::getpid()));
  uint64_t events = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::filesystem::remove_all(dir);
    {
      clean::RocksCleanStore store(dir.string(), in.pipeline.dedupe_window_ms);
      state.ResumeTiming();
      // Pipelined as the service is: batch n is cleaned while n-1 is staged
      // and uncommitted, so lookups go through two layers.
      std::optional<clean::CleanedBatch> previous;
      for (const auto& batch : in.batches) {
        auto done = cleaner.clean_batch(batch, store, 0);
        store.seal();
        if (previous) {
          if (auto st = store.commit(previous->next_offsets); !st) state.SkipWithError(st.error().message.c_str());
        }
        benchmark::DoNotOptimize(done.out.data());
        previous = std::move(done);
        events += batch.size();
      }
      if (auto st = store.commit(previous->next_offsets); !st) state.SkipWithError(st.error().message.c_str());
      state.PauseTiming();
    }
    state.ResumeTiming();
  }
  std::filesystem::remove_all(dir);
  state.SetItemsProcessed(static_cast<int64_t>(events));
}
BENCHMARK(BM_CleanAndCommit)->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
