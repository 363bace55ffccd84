// Clean-stage throughput against a no-op passthrough, on the same
// starling-broker, in the same run, over the same raw events:
//   kcat:        `kcat -C -e | kcat -P` (lz4, acks=all, as librdkafka's
//                defaults) copying <p>.raw to another topic, the baseline the
//                issue names;
//   loop:        the same in this process through Starling's Kafka adapter:
//                poll and produce every value unchanged (idempotent,
//                acks=all), streaming, until every copy is PERSISTED;
//   floor:       the loop plus the least any clean stage must do per event
//                under the guarantees, in this process: decode the
//                envelope and the record, look the event id up in RocksDB
//                and stage it, encode record and envelope again; each
//                batch's ids go to RocksDB in one WriteBatch, in key order,
//                with its offsets (no rules, no device state, no change
//                header, no facts, one thread, and the write does not wait
//                for the outputs: a lower bound);
//   clean:       the real starling-clean process (rules, per-device state and
//                offsets committed to RocksDB, outputs and facts persisted).
// Each side starts at the beginning of the topic; the time runs from its
// start until all its outputs are in Kafka.
//
//   build/release/bin/clean_bench [--events N] [--pipeline pipelines/ecowheels.yaml]

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <sstream>
#include <thread>

#include "bench/clean/raw_events.h"
#include "bench/support/measure.h"
#include "broker-adapters/kafka/kafka.h"
#include "services/clean/clean_service.h"
#include "services/clean/state.h"
#include "services/common/http.h"
#include "services/common/pipeline.h"
#include "services/common/process.h"
#include "services/common/records.h"
#include "starling/v1/envelope.pb.h"

namespace {

using namespace starling;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Counts messages on `topics` from the beginning until `want`; returns when done.
uint64_t count_until(const kafka::KafkaOptions& k, const std::vector<std::string>& topics, uint64_t want,
                     std::chrono::seconds limit) {
  auto c = kafka::KafkaConsumer::create(k, "bench-count-" + std::to_string(Clock::now().time_since_epoch().count()),
                                        topics, {});
  if (!c) throw std::runtime_error(c.error().message);
  uint64_t n = 0;
  const auto until = Clock::now() + limit;
  while (n < want && Clock::now() < until) {
    auto b = (*c)->poll_batch(5000, 50ms);
    if (!b) throw std::runtime_error(b.error().message);
    n += b->size();
  }
  (*c)->close();
  return n;
}

// The input offsets starling-clean has committed for `topic`, summed over
// partitions, from its /metrics (0 until it answers).
uint64_t committed_input(const std::string& url, const std::string& topic) {
  auto r = http_call("GET", url, {}, {}, 2000);
  if (!r || r->status != 200) return 0;
  uint64_t sum = 0;
  std::istringstream lines(r->body);
  const auto label = fmt::format("topic=\"{}\"", topic);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("starling_clean_committed_offset{") && line.find(label) != std::string::npos) {
      sum += static_cast<uint64_t>(std::stod(line.substr(line.rfind(' ') + 1)));
    }
  }
  return sum;
}

// Keeps a value the optimiser would otherwise drop.
void benchmark_sink(uint64_t v) {
  static std::atomic<uint64_t> sink;
  sink.store(v, std::memory_order_relaxed);
}

// CPU seconds (user + system) a process has used so far, from /proc.
double cpu_seconds(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i >= 14) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double rusage_seconds(int who) {
  rusage ru{};
  ::getrusage(who, &ru);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return s(ru.ru_utime) + s(ru.ru_stime);
}
double own_cpu_seconds() { return rusage_seconds(RUSAGE_SELF); }
// Of every waited-for descendant so far.
double children_cpu_seconds() { return rusage_seconds(RUSAGE_CHILDREN); }

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"clean_bench: starling-clean throughput against a consume-produce passthrough on starling-broker"};
  // kcat spends about half a second in librdkafka's start-up waits (the first
  // produce to a topic, the first fetch of a partition), which starling-clean
  // does not (broker-adapters/kafka/README.md): with few events that, not the
  // copying, is what kcat's rate measures.
  int events = 300'000;
  std::string pipeline_file = "pipelines/ecowheels.yaml";
  app.add_option("--events", events,
                 "Raw events to push through every side (fewer than ~300,000 mostly time kcat's start-up)")
      ->capture_default_str();
  app.add_option("--pipeline", pipeline_file, "Pipeline whose rules starling-clean applies")->capture_default_str();
  bool keep = false;
  std::string clean_log_level = "warn";
  app.add_flag("--keep", keep, "Keep the temporary directory (broker and starling-clean logs, data)");
  std::size_t batch_max = 0;
  app.add_option("--clean-batch-max", batch_max, "starling-clean's --batch-max (0: its default)");
  int clean_threads = 0;
  app.add_option("--clean-threads", clean_threads, "starling-clean's --threads (0: its default)");
  app.add_option("--clean-log-level", clean_log_level, "starling-clean's --log-level (debug shows per-batch timings)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const auto dir = std::filesystem::temp_directory_path() / fmt::format("clean-bench-{}", ::getpid());
  std::filesystem::create_directories(dir);
  const auto bin = executable_dir();
  const auto p = load_pipeline(pipeline_file);

  auto broker = ChildProcess::spawn(
      {bin + "/starling-broker", "--listen", "127.0.0.1:0", "--data-dir", (dir / "broker").string(), "--port-file",
       (dir / "broker.port").string(), "--group-initial-rebalance-delay-ms", "0", "--log-level", "warn"},
      (dir / "broker.log").string());
  if (!broker) return std::fprintf(stderr, "%s\n", broker.error().message.c_str()), 1;
  auto addr = wait_for_file((dir / "broker.port").string(), 30s);
  if (!addr) return std::fprintf(stderr, "%s\n", addr.error().message.c_str()), 1;
  const kafka::KafkaOptions k{*addr, "clean-bench", {}};
  if (auto st = kafka::create_topics(k, {{p.raw_topic(), p.partitions},
                                         {p.clean_topic(), p.partitions},
                                         {p.rejected_topic(), p.partitions},
                                         {"bench.passthrough", p.partitions},
                                         {"bench.floor", p.partitions},
                                         {"bench.kcat", p.partitions},
                                         {kSagaTopic, 3}});
      !st) {
    return std::fprintf(stderr, "%s\n", st.error().message.c_str()), 1;
  }

  auto generated = bench::raw_events(p, events);
  if (!generated) return std::fprintf(stderr, "%s\n", generated.error().message.c_str()), 1;
  auto raw = std::move(*generated);
  // kcat's key and message delimiters: no key or value may contain them.
  const std::string kd = "<<starling-bench-key>>";
  const std::string md = "<<starling-bench-msg>>";
  for (std::size_t i = 0; i < raw.size(); ++i) {
    for (const auto* text : {&raw[i].key, &raw[i].value}) {
      if (text->find(kd) != std::string::npos || text->find(md) != std::string::npos) {
        return std::fprintf(stderr, "event %zu contains a kcat delimiter\n", i), 1;
      }
    }
  }
  {
    auto prod = kafka::KafkaProducer::create(k, {.queue_full_wait = 60s, .topics = {p.raw_topic()}});
    if (!prod) return 1;
    if (auto st = kafka::produce_all(**prod, raw, 120s); !st) {
      return std::fprintf(stderr, "loading raw: %s\n", st.error().message.c_str()), 1;
    }
  }
  const auto n = static_cast<uint64_t>(events);

  // kcat through the same broker. Its CPU: both kcats, reaped by the shell.
  // Its consumer gets the fetch queue the Kafka adapter gives ours
  // (kFetchQueueByBytes in broker-adapters/kafka/kafka.cc): with librdkafka's
  // default, a kcat that empties its queue waits up to a second to fetch again.
  double kcat_s = 0;
  double kcat_cpu = 0;
  double kcat_broker_cpu = 0;
  const bool have_kcat = std::system("command -v kcat >/dev/null 2>&1") == 0;
  if (have_kcat) {
    const auto cmd = fmt::format(
        "kcat -C -b {0} -t {1} -o beginning -e -q -X queued.min.messages=10000000 -f '%k{2}%s{3}' | kcat -P -b {0} -t "
        "bench.kcat -K '{2}' -D '{3}' -z lz4 -q",
        *addr, p.raw_topic(), kd, md);
    const double cpu0 = children_cpu_seconds();
    kcat_broker_cpu = cpu_seconds(broker->pid());
    const auto t = Clock::now();
    auto pipe = ChildProcess::spawn({"/bin/sh", "-c", cmd}, (dir / "kcat.log").string());
    if (!pipe) return std::fprintf(stderr, "%s\n", pipe.error().message.c_str()), 1;
    const auto status = pipe->wait(300s);
    kcat_s = std::chrono::duration<double>(Clock::now() - t).count();
    kcat_cpu = children_cpu_seconds() - cpu0;
    kcat_broker_cpu = cpu_seconds(broker->pid()) - kcat_broker_cpu;
    if (!status || *status != 0) return std::fprintf(stderr, "kcat pipe failed; see %s/kcat.log\n", dir.c_str()), 1;
    if (const auto copied = count_until(k, {"bench.kcat"}, n, 60s); copied != n) {
      return std::fprintf(stderr, "kcat copied %llu of %llu events\n", static_cast<unsigned long long>(copied),
                          static_cast<unsigned long long>(n)),
             1;
    }
  }

  // Passthrough: poll and produce every value unchanged, without waiting for
  // delivery reports in between (as `kcat -C | kcat -P` streams), until every
  // copy is PERSISTED. Its producer looks its topic up at start, as
  // starling-clean's does. Its CPU is this process's while it runs (nothing
  // else runs here then). The floor runs the same loop with its per-event
  // work in `transform` and its per-batch write in `commit`.
  auto passthrough = [&](const std::string& group, const std::string& out_topic,
                         const std::function<std::string(const kafka::InMessage&)>& transform,
                         const std::function<void(const std::vector<kafka::InMessage>&)>& commit) -> int {
    auto c = kafka::KafkaConsumer::create(k, group, {p.raw_topic()}, {});
    auto prod = kafka::KafkaProducer::create(k, {.queue_full_wait = 60s, .topics = {out_topic}});
    if (!c || !prod) return 1;
    std::atomic<uint64_t> persisted = 0;
    std::atomic<bool> failed = false;
    uint64_t done = 0;
    while (done < n) {
      auto b = (*c)->poll_batch(2000, 100ms);
      if (!b) return std::fprintf(stderr, "%s\n", b.error().message.c_str()), 1;
      for (const auto& m : *b) {
        (*prod)->produce({out_topic, m.key, transform ? transform(m) : m.value, {}}, [&](const kafka::Delivery& d) {
          if (d.status != kafka::DeliveryStatus::kPersisted) failed = true;
          ++persisted;
        });
      }
      if (commit && !b->empty()) commit(*b);
      done += b->size();
    }
    if (auto st = (*prod)->flush(60s); !st || failed || persisted != done) {
      return std::fprintf(stderr, "%s: %llu of %llu persisted\n", group.c_str(),
                          static_cast<unsigned long long>(persisted.load()), static_cast<unsigned long long>(done)),
             1;
    }
    (*c)->close();
    return 0;
  };
  const double broker_cpu0 = cpu_seconds(broker->pid());
  const double pass_cpu0 = own_cpu_seconds();
  const auto t0 = Clock::now();
  if (passthrough("bench-passthrough", "bench.passthrough", {}, {}) != 0) return 1;
  const double pass_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const double pass_cpu = own_cpu_seconds() - pass_cpu0;
  const double broker_cpu1 = cpu_seconds(broker->pid());

  // The floor (see the top of this file), with the RocksDB options
  // starling-clean's store opens with.
  double floor_s = 0;
  double floor_cpu = 0;
  {
    rocksdb::DB* raw_db = nullptr;
    if (auto st = rocksdb::DB::Open(clean::store_options(), (dir / "floor").string(), &raw_db); !st.ok()) {
      return std::fprintf(stderr, "floor: %s\n", st.ToString().c_str()), 1;
    }
    std::unique_ptr<rocksdb::DB> db(raw_db);
    rocksdb::WriteBatch batch;
    std::vector<std::pair<std::string, std::string>> staged;
    v1::Envelope env;
    auto record = new_record(p);
    std::string value;
    uint64_t dupes = 0;
    auto transform = [&](const kafka::InMessage& m) {
      if (!env.ParseFromString(m.value)) throw std::runtime_error("floor: not an envelope");
      if (!parse_record(p, env.payload(), *record)) throw std::runtime_error("floor: not a record");
      std::string key = fmt::format("e{}{}", m.partition, env.event_id());
      if (db->Get({}, key, &value).ok()) ++dupes;
      staged.emplace_back(std::move(key), std::to_string(env.ingest_time_ms()));
      record->SerializeToString(env.mutable_payload());
      return env.SerializeAsString();
    };
    auto commit = [&](const std::vector<kafka::InMessage>& b) {
      std::map<std::pair<std::string_view, int32_t>, int64_t> next;
      for (const auto& m : b) next[{m.topic, m.partition}] = m.offset + 1;
      for (const auto& [tp, offset] : next) {
        staged.emplace_back(fmt::format("o{}{}", tp.first, tp.second), std::to_string(offset));
      }
      std::sort(staged.begin(), staged.end());
      for (const auto& [key, v] : staged) (void)batch.Put(key, v);
      staged.clear();
      if (auto st = db->Write({}, &batch); !st.ok()) throw std::runtime_error("floor: " + st.ToString());
      batch.Clear();
    };
    const double cpu0 = own_cpu_seconds();
    const auto t = Clock::now();
    if (passthrough("bench-floor", "bench.floor", transform, commit) != 0) return 1;
    floor_s = std::chrono::duration<double>(Clock::now() - t).count();
    floor_cpu = own_cpu_seconds() - cpu0;
    benchmark_sink(dupes);
  }
  const double broker_cpu2 = cpu_seconds(broker->pid());

  // starling-clean, the real process, until it has committed every input
  // offset: it commits a batch only after all of its outputs are PERSISTED.
  // Watched through its /metrics (cheaper than a consumer competing for the
  // cores); that every event is on clean or rejected is counted after.
  const double broker_cpu3 = cpu_seconds(broker->pid());
  const auto t1 = Clock::now();
  auto clean = ChildProcess::spawn(
      {bin + "/starling-clean", "--kafka", *addr, "--pipeline", std::filesystem::absolute(pipeline_file).string(),
       "--data-dir", (dir / "clean").string(), "--log-level", clean_log_level, "--listen", "127.0.0.1:0", "--port-file",
       (dir / "clean.port").string(), "--batch-max",
       std::to_string(batch_max > 0 ? batch_max : clean::CleanOptions{}.batch_max), "--threads",
       std::to_string(clean_threads > 0 ? clean_threads : clean::CleanOptions{}.threads)},
      (dir / "clean.log").string());
  if (!clean) return std::fprintf(stderr, "%s\n", clean.error().message.c_str()), 1;
  auto clean_port = wait_for_file((dir / "clean.port").string(), 30s);
  if (!clean_port) return std::fprintf(stderr, "%s\n", clean_port.error().message.c_str()), 1;
  const auto metrics_url = fmt::format("http://127.0.0.1:{}/metrics", *clean_port);
  const auto until = Clock::now() + 600s;
  // Every 20 ms: each look renders its /metrics, CPU taken from the stage.
  while (committed_input(metrics_url, p.raw_topic()) < n && Clock::now() < until) std::this_thread::sleep_for(20ms);
  const double clean_s = std::chrono::duration<double>(Clock::now() - t1).count();
  const double clean_cpu = cpu_seconds(clean->pid());
  const double clean_broker_cpu = cpu_seconds(broker->pid()) - broker_cpu3;
  const double clean_rss = bench::rss_mib(std::to_string(clean->pid())).second;
  const auto seen = count_until(k, {p.clean_topic(), p.rejected_topic()}, n, 60s);
  clean->stop(10s);
  broker->stop(10s);
  if (seen < n)
    return std::fprintf(stderr, "starling-clean produced %llu of %llu; see %s\n", static_cast<unsigned long long>(seen),
                        static_cast<unsigned long long>(n), dir.c_str()),
           1;
  if (keep) {
    std::printf("kept %s\n", dir.c_str());
  } else {
    std::filesystem::remove_all(dir);
  }

  // CPU-seconds per million events: the work each side does, which (unlike
  // events/s) hardly moves when other processes compete for the cores; and
  // the broker's while that side ran (its share of the same 2 cores).
  const auto count = static_cast<double>(n);
  auto row = [&](const char* side, double secs, double cpu, double broker_cpu) {
    std::printf("%-34s %8d %10.0f %9s %9.2f %14.1f %14.1f\n", side, events, count / secs,
                have_kcat ? fmt::format("{:.2f}", kcat_s / secs).c_str() : "-", pass_s / secs, cpu * 1e6 / count,
                broker_cpu * 1e6 / count);
  };
  std::printf("%-34s %8s %10s %9s %9s %14s %14s\n", "side", "events", "events/s", "vs kcat", "vs loop",
              "cpu-s/M events", "broker cpu-s/M");
  if (have_kcat) row("kcat -C | kcat -P", kcat_s, kcat_cpu, kcat_broker_cpu);
  row("passthrough loop (in-process)", pass_s, pass_cpu, broker_cpu1 - broker_cpu0);
  row("floor: decode, dedupe, encode", floor_s, floor_cpu, broker_cpu2 - broker_cpu1);
  row("starling-clean", clean_s, clean_cpu, clean_broker_cpu);
  std::printf("starling-clean peak RSS: %.0f MiB (VmHWM; PRODUCT.md's budget for a service is 64 MB)\n", clean_rss);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "clean_bench: %s\n", e.what());
  return 1;
}
