// End to end, open loop (issue 19): the whole stack (starling-broker, ingest,
// clean, load, saga as `starling up` runs them, on loopback ports it picks)
// with the ecowheels pipeline, driven by the simulated fleet at fixed rates:
// requests of B events over M keep-alive connections, sent on schedule
// whether or not earlier ones were answered. Each shape (B, M) gets a fresh
// stack and sweeps the rates upward until one saturates (some requests not
// started in time, or accepted or finished events below 90% of the rate).
//
// Per rate: achieved events/s (accepted by ingest; finished = loaded or
// rejected), the 202's latency from each request's due time, ingest→loaded
// latency of every loaded event (from the saga facts on starling.saga: the
// INGESTED fact's time, when ingest accepted the saga, to the time of the
// LOADED fact that covers the event, which load publishes after its commit),
// each process's CPU-µs per accepted event (/proc/<pid>/stat utime+stime)
// and RSS (VmRSS sampled every 200 ms: median and max; VmHWM), and whether the
// run ended CONSISTENT by the demo's check.
//
// The floor row: kcat passing the same number of events through the same
// kind of broker in as many hops (produce to a; a → b; consume b), timed,
// with the CPU of kcat and of the broker per event.
//
//   build/release/bin/e2e_bench --help
//   build/release/bin/e2e_bench --batches 1,20,1000 --connections 64 --rates 2000,5000,10000,20000 --json e2e.json

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/support/measure.h"
#include "broker-adapters/kafka/kafka.h"
#include "services/common/pipeline.h"
#include "services/common/process.h"
#include "services/common/time.h"
#include "services/simulator/histogram.h"
#include "services/simulator/report.h"
#include "services/simulator/simulate.h"
#include "services/supervisor/stack.h"
#include "starling/v1/saga.pb.h"

namespace {

using namespace starling;
using nlohmann::json;
namespace fs = std::filesystem;
using simulator::LatencyHistogram;

// The stack's processes are our children: found by their parent pid and
// named by their executable (starling-broker → broker).
std::map<std::string, pid_t> stack_children() {
  std::map<std::string, pid_t> out;
  const pid_t me = ::getpid();
  for (const auto& e : fs::directory_iterator("/proc")) {
    const auto name = e.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid != me) continue;
    std::ifstream cmd(e.path() / "cmdline");
    std::vector<std::string> args;
    for (std::string a; std::getline(cmd, a, '\0');) args.push_back(a);
    if (args.empty()) continue;
    auto exe = fs::path(args[0]).filename().string();
    if (!exe.starts_with("starling-")) continue;
    exe = exe.substr(9);
    // The stack names each instance (--instance clean.ecowheels.2): the
    // stage, then .N for the second and later instances of it.
    for (std::size_t i = 1; i + 1 < args.size(); ++i) {
      if (args[i] != "--instance") continue;
      const auto& id = args[i + 1];
      const auto dot = id.rfind('.');
      const auto tail = dot == std::string::npos ? std::string() : id.substr(dot + 1);
      if (!tail.empty() && std::all_of(tail.begin(), tail.end(), ::isdigit)) exe += "." + tail;
    }
    out[exe] = static_cast<pid_t>(std::stol(name));
  }
  return out;
}

// utime + stime of a process, in µs (0 when it is gone).
double cpu_us(pid_t pid) { return process_cpu_seconds(pid) * 1e6; }

// Samples every child's VmRSS until stopped.
class RssSampler {
 public:
  explicit RssSampler(std::map<std::string, pid_t> pids) : pids_(std::move(pids)) {
    thread_ = std::thread([this] {
      while (!stop_) {
        {
          std::lock_guard lock(mu_);
          for (const auto& [name, pid] : pids_) {
            const auto rss = bench::rss_mib(std::to_string(pid)).first;
            if (rss > 0) samples_[name].push_back(rss);
          }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
    });
  }
  ~RssSampler() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // Median and max of the samples.
  std::pair<double, double> of(const std::string& name) {
    std::lock_guard lock(mu_);
    auto v = samples_[name];
    if (v.empty()) return {0, 0};
    std::sort(v.begin(), v.end());
    return {v[v.size() / 2], v.back()};
  }

 private:
  std::map<std::string, pid_t> pids_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::map<std::string, std::vector<double>> samples_;
  std::thread thread_;
};

// Where each partition of starling.saga ends now.
Result<std::map<kafka::TopicPartition, int64_t>> saga_topic_ends(kafka::TopicReader& reader) {
  auto n = reader.partitions(kSagaTopic);
  if (!n) return std::unexpected(n.error());
  std::map<kafka::TopicPartition, int64_t> out;
  for (int32_t p = 0; p < *n; ++p) {
    kafka::TopicPartition tp{kSagaTopic, p};
    auto wm = reader.watermarks(tp);
    if (!wm) return std::unexpected(wm.error());
    out[tp] = wm->second;
  }
  return out;
}

struct FactLatency {
  LatencyHistogram ingest_to_loaded;  // per loaded event, in µs (facts carry ms)
  int64_t last_done_ms = 0;           // the last LOADED or REJECTED fact's time
  uint64_t unmatched = 0;             // loaded events whose saga's INGESTED fact was not read
  // With a kill: ingest→loaded of the events ingested within kKillWindowMs
  // of it (what a rebalance costs the events it catches), and of the events
  // ingested before kKillWindowMs ahead of it (the same run undisturbed).
  LatencyHistogram around_kill;
  LatencyHistogram before_kill;
};
constexpr int64_t kKillWindowMs = 1000;

// Reads the facts between `from` and `to` of one pipeline.
// `kill_ms`: when a process was killed (0: none).
Result<FactLatency> read_facts(const std::string& bootstrap, const std::string& pipeline,
                               const std::map<kafka::TopicPartition, int64_t>& from,
                               const std::map<kafka::TopicPartition, int64_t>& to, int64_t kill_ms) {
  auto reader = kafka::TopicReader::create({.bootstrap = bootstrap});
  if (!reader) return std::unexpected(reader.error());
  if (auto st = (*reader)->assign(from); !st) return std::unexpected(st.error());
  std::map<std::string, int64_t> ingested;                                   // saga → ingest time
  std::vector<std::pair<std::string, std::pair<int64_t, uint64_t>>> loaded;  // saga → (time, events)
  FactLatency out;
  std::map<kafka::TopicPartition, int64_t> at = from;
  auto done = [&] {
    return std::all_of(to.begin(), to.end(), [&](const auto& kv) { return at[kv.first] >= kv.second; });
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return fail(Errc::kTimeout, "reading starling.saga: timed out");
    auto batch = (*reader)->poll_batch(10'000, std::chrono::milliseconds(500));
    if (!batch) return std::unexpected(batch.error());
    for (const auto& m : *batch) {
      at[{m.topic, m.partition}] = m.offset + 1;
      if (m.offset >= to.at({m.topic, m.partition})) continue;
      v1::ProgressFact f;
      if (!f.ParseFromString(m.value) || f.pipeline() != pipeline) continue;
      uint64_t n = 0;
      for (const auto& r : f.seqs()) n += r.last() >= r.first() ? r.last() - r.first() + 1 : 0;
      if (f.step() == v1::STEP_INGESTED) ingested[f.saga_id()] = f.time_ms();
      if (f.step() == v1::STEP_LOADED) loaded.push_back({f.saga_id(), {f.time_ms(), n}});
      if (f.step() == v1::STEP_LOADED || f.step() == v1::STEP_REJECTED) {
        out.last_done_ms = std::max(out.last_done_ms, f.time_ms());
      }
    }
  }
  for (const auto& [saga, tn] : loaded) {
    auto it = ingested.find(saga);
    if (it == ingested.end()) {
      out.unmatched += tn.second;
      continue;
    }
    const auto us = static_cast<uint64_t>(std::max<int64_t>(0, tn.first - it->second)) * 1000;
    for (uint64_t k = 0; k < tn.second; ++k) out.ingest_to_loaded.record(us);
    if (kill_ms > 0 && std::abs(it->second - kill_ms) <= kKillWindowMs) {
      for (uint64_t k = 0; k < tn.second; ++k) out.around_kill.record(us);
    } else if (kill_ms > 0 && it->second < kill_ms - kKillWindowMs) {
      for (uint64_t k = 0; k < tn.second; ++k) out.before_kill.record(us);
    }
  }
  return out;
}

struct Options {
  std::string bin_dir;
  std::string pipeline = STARLING_SOURCE_DIR "/pipelines/ecowheels.yaml";
  std::vector<int> batches = {1, 20, 1000};
  std::vector<int> connections = {64};
  std::vector<double> rates = {2000, 5000, 10000, 20000, 50000, 100000};
  double seconds = 5;
  double warmup_s = 2;  // at the first rate, not reported: consumer groups join, caches fill
  int events = 0;       // per rate; 0: rate x seconds
  int bikes = 1000;
  double fault_rate = 0.05;
  int settle_s = 300;
  int floor_events = 200'000;
  bool no_sweep_stop = false;
  std::string instances;                      // --instances, as `starling up` takes it
  int partitions = 0;                         // 0: the pipeline's own
  std::vector<std::string> kafka_properties;  // k=v for every service
  std::string kill;                           // a process to kill with SIGKILL during each rate
  double kill_at_s = 0;                       // this long after the rate's first request
  std::string json_file;
  std::string data_dir;
  bool keep = false;
};

struct Proc {
  double cpu_us = 0;
  double rss_median = 0;
  double rss_max = 0;
  double hwm = 0;
};

// One rate of one shape.
json run_rate(supervisor::Stack& stack, const Options& o, int batch, int conns, double rate, double seconds, int events,
              int step, uint64_t& sagas, uint64_t& valid, uint64_t& faulty, bool& saturated) {
  simulator::SimOptions sim;
  sim.url = fmt::format("{}", fmt::join(stack.ingest_urls(), ","));
  sim.pipeline = stack.pipelines().front().name;
  sim.bikes = o.bikes;
  sim.batch = batch;
  sim.connections = std::max(conns, stack.instances("ingest"));
  sim.rate = rate;
  sim.events = events > 0 ? events : std::max(batch, static_cast<int>(rate * seconds));
  sim.fault_rate = o.fault_rate;
  sim.seed = static_cast<uint64_t>(step) + 1;
  sim.id_prefix = fmt::format("s{}-", step);
  sim.event_spacing_ms = 1;  // event times about now, as live devices send them
  sim.keep_ids = false;
  sim.give_up_after_s = std::max(3 * seconds, static_cast<double>(sim.events) / rate * 3) + 5;
  sim.max_retries = 50;

  auto reader = kafka::TopicReader::create({.bootstrap = stack.bootstrap()});
  if (!reader) throw std::runtime_error(reader.error().message);
  auto from = saga_topic_ends(**reader);
  if (!from) throw std::runtime_error(from.error().message);
  const auto pids = stack_children();
  std::map<std::string, double> cpu0;
  for (const auto& [name, pid] : pids) cpu0[name] = cpu_us(pid);
  const double fleet_cpu0 = bench::cpu_seconds();
  auto before = simulator::fetch_totals(stack.saga_urls(), sim.pipeline);
  if (!before) throw std::runtime_error(before.error().message);
  RssSampler rss(pids);
  const int64_t start_ms = now_ms();
  std::atomic<int64_t> kill_ms{0};
  std::thread killer;
  if (!o.kill.empty()) {
    killer = std::thread([&] {
      std::this_thread::sleep_for(std::chrono::duration<double>(o.kill_at_s));
      kill_ms = now_ms();
      if (auto st = stack.signal(o.kill, SIGKILL); !st) fmt::print(stderr, "--kill: {}\n", st.error().message);
    });
  }
  auto res = simulator::simulate(sim);
  if (killer.joinable()) killer.join();
  if (!res) throw std::runtime_error(res.error().message);
  const double fleet_cpu = bench::cpu_seconds() - fleet_cpu0;
  sagas += res->sagas;
  valid += res->valid;
  faulty += res->faulty;
  auto totals = simulator::wait_until_settled(stack.saga_urls(), sim.pipeline, sagas, std::chrono::seconds(o.settle_s));
  rss.stop();
  json row;
  bool consistent = false;
  if (!totals) {
    row["error"] = totals.error().message;
    totals = simulator::fetch_totals(stack.saga_urls(), sim.pipeline);
  } else {
    const auto& p = stack.pipelines().front();
    auto rows = simulator::count_rows(stack.db_path(p.name), p.table);
    if (rows) consistent = simulator::check_consistency(*totals, *rows, valid, faulty).ok() && totals->in_flight == 0;
  }
  const auto now_pids = stack_children();
  std::map<std::string, Proc> procs;
  double total_cpu = 0;
  const double accepted = static_cast<double>(std::max<uint64_t>(1, res->accepted));
  for (const auto& [name, pid] : pids) {
    Proc pr;
    pr.cpu_us = (cpu_us(pid) - cpu0[name]) / accepted;
    std::tie(pr.rss_median, pr.rss_max) = rss.of(name);
    pr.hwm = bench::rss_mib(std::to_string(pid)).second;
    if (!now_pids.contains(name) || now_pids.at(name) != pid) row["restarted"].push_back(name);
    total_cpu += pr.cpu_us;
    procs[name] = pr;
  }
  auto to = saga_topic_ends(**reader);
  if (!to) throw std::runtime_error(to.error().message);
  auto facts = read_facts(stack.bootstrap(), sim.pipeline, *from, *to, kill_ms.load());
  if (!facts) throw std::runtime_error(facts.error().message);
  const uint64_t finished = totals ? (totals->loaded + totals->rejected) - (before->loaded + before->rejected) : 0;
  const double finish_s = static_cast<double>(std::max<int64_t>(1, facts->last_done_ms - start_ms)) / 1000.0;
  // Over the schedule's span at least: the last request is due at
  // (events - batch)/rate, so a run that keeps up ends about then.
  const double accept_eps =
      static_cast<double>(res->accepted) / std::max({1e-3, res->seconds, static_cast<double>(sim.events) / rate});
  const double finish_eps = static_cast<double>(finished) / std::max(finish_s, static_cast<double>(sim.events) / rate);
  // Saturated: requests not started in time, ingest accepting less than
  // 90% of the rate, or the pipeline finishing less than 85% of it (a
  // backlog built up: finish_eps includes one ingest→loaded latency, which
  // costs a few % of a 5 s run when the pipeline keeps up).
  saturated = res->unsent > 0 || accept_eps < 0.9 * rate || finish_eps < 0.85 * rate;
  const auto& h = facts->ingest_to_loaded;
  row.update({{"batch", batch},
              {"connections", conns},
              {"rate", rate},
              {"events_planned", sim.events},
              {"accepted", res->accepted},
              {"unsent", res->unsent},
              {"retries", res->retries},
              {"late_starts", res->late_starts},
              {"requests", res->requests},
              {"accepted_eps", accept_eps},
              {"finished", finished},
              {"finished_eps", finish_eps},
              {"send_seconds", res->seconds},
              {"finish_seconds", finish_s},
              {"ack_ms",
               {{"p50", res->latency.percentile_ms(0.5)},
                {"p99", res->latency.percentile_ms(0.99)},
                {"p999", res->latency.percentile_ms(0.999)},
                {"max", static_cast<double>(res->latency.max_us()) / 1000}}},
              {"ingest_to_loaded_ms",
               {{"p50", h.percentile_ms(0.5)},
                {"p99", h.percentile_ms(0.99)},
                {"p999", h.percentile_ms(0.999)},
                {"max", static_cast<double>(h.max_us()) / 1000},
                {"samples", h.count()},
                {"unmatched", facts->unmatched}}},
              {"cpu_us_per_event_total", total_cpu},
              {"fleet_cpu_us_per_event", fleet_cpu * 1e6 / accepted},
              {"saturated", saturated},
              {"consistent", consistent}});
  if (kill_ms > 0) {
    const auto& k = facts->around_kill;
    const auto& b = facts->before_kill;
    row["kill"] = {{"process", o.kill},
                   {"at_s", static_cast<double>(kill_ms - start_ms) / 1000.0},
                   {"window_ms", kKillWindowMs},
                   {"ingest_to_loaded_ms_around_kill",
                    {{"p50", k.percentile_ms(0.5)},
                     {"p99", k.percentile_ms(0.99)},
                     {"max", static_cast<double>(k.max_us()) / 1000},
                     {"samples", k.count()}}},
                   {"ingest_to_loaded_ms_before_kill",
                    {{"p50", b.percentile_ms(0.5)},
                     {"p99", b.percentile_ms(0.99)},
                     {"max", static_cast<double>(b.max_us()) / 1000},
                     {"samples", b.count()}}}};
  }
  // Each stage's instances together: CPU added up, RSS per instance.
  for (const auto& [name, pr] : procs) {
    const auto stage = name.substr(0, name.find('.'));
    auto& st = row["stages"][stage];
    if (st.is_null()) st = json::object();
    st["instances"] = st.value("instances", 0) + 1;
    st["cpu_us_per_event"] = st.value("cpu_us_per_event", 0.0) + pr.cpu_us;
    st["rss_mib_max_per_instance"] = std::max(st.value("rss_mib_max_per_instance", 0.0), pr.rss_max);
  }
  for (const auto& [name, pr] : procs) {
    row["processes"][name] = {{"cpu_us_per_event", pr.cpu_us},
                              {"rss_mib_median", pr.rss_median},
                              {"rss_mib_max", pr.rss_max},
                              {"hwm_mib", pr.hwm}};
  }
  return row;
}

// kcat, produce to a, a → b, consume b, all at once: the floor of three hops.
json run_floor(supervisor::Stack& stack, const Options& o, const std::string& dir) {
  const std::string file = dir + "/floor-events.jsonl";
  {
    simulator::SimOptions sim;
    sim.events = o.floor_events;
    sim.bikes = o.bikes;
    sim.event_spacing_ms = 1;
    simulator::EventStream stream(sim);
    std::ofstream out(file);
    simulator::Reading r;
    std::string line;
    while (stream.next(r)) {
      line.clear();
      r.append_json(line);
      out << line << '\n';
    }
  }
  const auto& b = stack.bootstrap();
  const auto starling = o.bin_dir + "/starling";
  for (const auto* t : {"floor.a", "floor.b"}) {
    auto create =
        ChildProcess::spawn({starling, "topics", "create", t, "--partitions", "3", "--kafka", b}, dir + "/floor.log");
    if (!create || create->wait(std::chrono::seconds(30)) != 0)
      throw std::runtime_error("could not create " + std::string(t));
  }
  const auto n = std::to_string(o.floor_events);
  const std::vector<std::string> cmds = {
      fmt::format("kcat -C -b {} -t floor.b -o beginning -c {} -q > /dev/null", b, n),
      fmt::format(
          "kcat -C -b {} -t floor.a -o beginning -c {} -q | kcat -P -b {} -t floor.b -X enable.idempotence=true", b, n,
          b),
      fmt::format("kcat -P -b {} -t floor.a -X enable.idempotence=true < {}", b, file)};
  const auto broker = stack_children().at("broker");
  const double broker0 = cpu_us(broker);
  rusage r0{};
  getrusage(RUSAGE_CHILDREN, &r0);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<ChildProcess> running;
  for (const auto& c : cmds) {
    auto p = ChildProcess::spawn({"/bin/sh", "-c", c}, dir + "/floor.log");
    if (!p) throw std::runtime_error(p.error().message);
    running.push_back(std::move(*p));
  }
  for (auto& p : running) {
    if (p.wait(std::chrono::seconds(600)) != 0)
      throw std::runtime_error("a kcat stage failed; see " + dir + "/floor.log");
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rusage r1{};
  getrusage(RUSAGE_CHILDREN, &r1);
  auto tv = [](const timeval& t) { return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_usec); };
  const double kcat_us = tv(r1.ru_utime) + tv(r1.ru_stime) - tv(r0.ru_utime) - tv(r0.ru_stime);
  const double broker_us = cpu_us(broker) - broker0;
  const double events = o.floor_events;
  return {{"events", o.floor_events},
          {"seconds", secs},
          {"eps", events / secs},
          {"kcat_cpu_us_per_event", kcat_us / events},
          {"broker_cpu_us_per_event", broker_us / events},
          {"cpu_us_per_event_total", (kcat_us + broker_us) / events}};
}

std::string ms(const json& v) { return fmt::format("{:.1f}", v.get<double>()); }

void print_tables(const json& out) {
  fmt::print("\n{:>5} {:>5} {:>8} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {}\n", "B", "conns", "rate",
             "accepted", "finished", "202 p50", "202 p99", "i→l p50", "i→l p99", "i→l p999", "µs/ev", "verdict");
  for (const auto& r : out["runs"]) {
    fmt::print("{:>5} {:>5} {:>8.0f} {:>9.0f} {:>9.0f} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7.1f} {}{}\n",
               r["batch"].get<int>(), r["connections"].get<int>(), r["rate"].get<double>(),
               r["accepted_eps"].get<double>(), r["finished_eps"].get<double>(), ms(r["ack_ms"]["p50"]),
               ms(r["ack_ms"]["p99"]), ms(r["ingest_to_loaded_ms"]["p50"]), ms(r["ingest_to_loaded_ms"]["p99"]),
               ms(r["ingest_to_loaded_ms"]["p999"]), r["cpu_us_per_event_total"].get<double>(),
               r["consistent"].get<bool>() ? "CONSISTENT" : "INCONSISTENT",
               r["saturated"].get<bool>() ? " saturated" : "");
  }
  fmt::print("\nCPU-µs per event and RSS MiB (median / max sampled / VmHWM) per process\n");
  fmt::print("{:>5} {:>5} {:>8}", "B", "conns", "rate");
  for (const auto* p : {"broker", "ingest", "clean", "load", "saga"}) fmt::print(" {:>22}", p);
  fmt::print(" {:>7}\n", "fleet");
  for (const auto& r : out["runs"]) {
    fmt::print("{:>5} {:>5} {:>8.0f}", r["batch"].get<int>(), r["connections"].get<int>(), r["rate"].get<double>());
    for (const auto* p : {"broker", "ingest", "clean", "load", "saga"}) {
      if (!r["processes"].contains(p)) {
        fmt::print(" {:>22}", "-");
        continue;
      }
      // A stage run as several instances: its CPU added up, "×N", and the
      // first instance's RSS.
      const auto& x = r["processes"][p];
      const int n = r["stages"][p].value("instances", 1);
      fmt::print(" {:>22}",
                 fmt::format("{:.1f}{} {:.0f}/{:.0f}/{:.0f}", r["stages"][p]["cpu_us_per_event"].get<double>(),
                             n > 1 ? fmt::format("×{}", n) : "", x["rss_mib_median"].get<double>(),
                             x["rss_mib_max"].get<double>(), x["hwm_mib"].get<double>()));
    }
    fmt::print(" {:>7.1f}\n", r["fleet_cpu_us_per_event"].get<double>());
  }
  bool header = false;
  for (const auto& r : out["runs"]) {
    if (!r.contains("kill")) continue;
    const auto& k = r["kill"];
    if (!header) {
      fmt::print(
          "\nSIGKILL during the run: ingest→loaded of events ingested within {} ms of the kill, against those "
          "ingested before\n{:>5} {:>8} {:>22} {:>6} {:>10} {:>10} {:>10} {:>12}\n",
          k["window_ms"].get<int>(), "B", "rate", "killed", "at s", "p50 before", "p50 around", "p99 around",
          "max around");
      header = true;
    }
    const auto& a = k["ingest_to_loaded_ms_around_kill"];
    fmt::print("{:>5} {:>8.0f} {:>22} {:>6.1f} {:>10} {:>10} {:>10} {:>12}\n", r["batch"].get<int>(),
               r["rate"].get<double>(), k["process"].get<std::string>(), k["at_s"].get<double>(),
               ms(k["ingest_to_loaded_ms_before_kill"]["p50"]), ms(a["p50"]), ms(a["p99"]), ms(a["max"]));
  }
  if (out.contains("floor")) {
    const auto& f = out["floor"];
    fmt::print(
        "\nfloor: kcat produce → a → b → consume, {} events: {:.0f} ev/s, {:.1f} CPU-µs/event ({:.1f} kcat + "
        "{:.1f} broker)\n",
        f["events"].get<int>(), f["eps"].get<double>(), f["cpu_us_per_event_total"].get<double>(),
        f["kcat_cpu_us_per_event"].get<double>(), f["broker_cpu_us_per_event"].get<double>());
  }
}

int run(int argc, char** argv) {
  CLI::App app{
      "e2e_bench: the whole stack (broker, ingest, clean, load, saga) driven open loop by the simulated fleet: "
      "per rate, achieved events/s, 202 and ingest→loaded latency, CPU-µs per event and RSS of each process, "
      "and the consistency verdict; then a kcat floor through the same broker"};
  Options o;
  o.bin_dir = fs::canonical("/proc/self/exe").parent_path().string();
  app.add_option("--bin-dir", o.bin_dir, "Where starling-* and starling are")->capture_default_str();
  app.add_option("--pipeline", o.pipeline, "Pipeline YAML (an e-bike pipeline)")->capture_default_str();
  app.add_option("--batches", o.batches, "Events per request, one shape each (B)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--connections", o.connections, "Keep-alive connections (M), one shape each")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--rates", o.rates, "Offered events/s, swept upward per shape until one saturates")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--seconds", o.seconds, "Seconds of sending per rate")->capture_default_str();
  app.add_option("--warmup", o.warmup_s, "Seconds at the first rate before the sweep, not reported (0: none)")
      ->capture_default_str();
  app.add_option("--events", o.events, "Events per rate instead of rate x seconds")->capture_default_str();
  app.add_option("--bikes", o.bikes, "Devices in the fleet (ecowheels wants bike-0000..bike-9999)")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  app.add_option("--fault-rate", o.fault_rate, "Share of faulty readings (rejected by clean)")->capture_default_str();
  app.add_option("--settle-timeout", o.settle_s, "Seconds to wait for every saga of a rate to complete")
      ->capture_default_str();
  app.add_option("--floor-events", o.floor_events, "Messages through the kcat floor (0: no floor)")
      ->capture_default_str();
  app.add_flag("--no-sweep-stop", o.no_sweep_stop, "Run every rate even after one saturated");
  app.add_option("--instances", o.instances,
                 "Instances per stage, as `starling up --instances` takes them (clean=2,load=2,saga=2,ingest=2); the "
                 "table adds up each stage's CPU");
  app.add_option("--partitions", o.partitions,
                 "Partitions of the pipeline's topics (0: the pipeline's own); more than the instances of any stage "
                 "lets every instance work")
      ->check(CLI::Range(0, 1024));
  app.add_option("--kill", o.kill,
                 "A process to kill with SIGKILL during every rate (clean.ecowheels.2, saga, ...); the supervisor "
                 "restarts it. The table shows what it cost the events ingested around the kill");
  app.add_option("--kafka-property", o.kafka_properties,
                 "k=v for every service's librdkafka (repeatable); group.instance.id= (empty) makes the stages "
                 "dynamic group members instead of static ones");
  app.add_option("--kill-at", o.kill_at_s, "Seconds after the rate's first request to kill --kill")
      ->capture_default_str();
  app.add_option("--json", o.json_file, "Write the results here as JSON");
  app.add_option("--data-dir", o.data_dir, "Where the stacks keep their data (default: a temporary folder)");
  app.add_flag("--keep", o.keep, "Keep the data folder");
  CLI11_PARSE(app, argc, argv);

  if (o.data_dir.empty()) {
    char tmpl[] = "/tmp/starling-e2e-bench-XXXXXX";
    o.data_dir = ::mkdtemp(tmpl);
  }
  fs::create_directories(o.data_dir);
  std::map<std::string, int> instances;
  if (auto inst = supervisor::parse_instances(o.instances); inst) {
    instances = std::move(*inst);
  } else {
    fmt::print(stderr, "error: {}\n", inst.error().message);
    return 2;
  }
  if (o.partitions > 0) {
    // A copy of the pipeline with its topics' partitions set.
    std::ifstream in(o.pipeline);
    std::stringstream text;
    text << in.rdbuf();
    static const std::regex partitions_line(R"(^(\s*)partitions:\s*\d+)", std::regex::multiline);
    auto yaml = text.str();
    if (!std::regex_search(yaml, partitions_line)) {
      fmt::print(stderr, "error: --partitions: {} has no `partitions:` line to set\n", o.pipeline);
      return 2;
    }
    yaml = std::regex_replace(yaml, partitions_line, "$1partitions: " + std::to_string(o.partitions));
    o.pipeline = o.data_dir + "/" + fs::path(o.pipeline).filename().string();
    std::ofstream(o.pipeline) << yaml;
  }
  json out = {{"pipeline", o.pipeline},     {"cores", std::thread::hardware_concurrency()}, {"instances", instances},
              {"partitions", o.partitions}, {"kafka_properties", o.kafka_properties},       {"runs", json::array()}};
  int exit_code = 0;
  int step = 0;
  try {
    for (const int conns : o.connections) {
      for (const int batch : o.batches) {
        supervisor::StackOptions so;
        so.bin_dir = o.bin_dir;
        so.data_dir = fmt::format("{}/b{}-c{}", o.data_dir, batch, conns);
        so.pipeline_files = {o.pipeline};
        so.log_level = "warn";
        so.instances = instances;
        so.kafka_properties = o.kafka_properties;
        supervisor::Stack stack(so);
        fmt::print(stderr, "B={} connections={}: starting the stack in {}\n", batch, conns, so.data_dir);
        if (auto st = stack.start(); !st) throw std::runtime_error(st.error().message);
        uint64_t sagas = 0;
        uint64_t valid = 0;
        uint64_t faulty = 0;
        if (o.warmup_s > 0 && !o.rates.empty()) {
          bool ignored = false;
          fmt::print(stderr, "B={} connections={}: warming up for {} s at {:.0f}/s\n", batch, conns, o.warmup_s,
                     o.rates.front());
          (void)run_rate(stack, o, batch, conns, o.rates.front(), o.warmup_s, 0, step++, sagas, valid, faulty, ignored);
        }
        for (const double rate : o.rates) {
          bool saturated = false;
          fmt::print(stderr, "B={} connections={} rate={:.0f}/s ...\n", batch, conns, rate);
          auto row =
              run_rate(stack, o, batch, conns, rate, o.seconds, o.events, step++, sagas, valid, faulty, saturated);
          fmt::print(stderr, "  accepted {:.0f}/s, finished {:.0f}/s, ingest→loaded p99 {:.1f} ms, {}{}\n",
                     row["accepted_eps"].get<double>(), row["finished_eps"].get<double>(),
                     row["ingest_to_loaded_ms"]["p99"].get<double>(),
                     row["consistent"].get<bool>() ? "CONSISTENT" : "INCONSISTENT", saturated ? ", saturated" : "");
          if (!row["consistent"].get<bool>()) exit_code = 1;
          out["runs"].push_back(std::move(row));
          if (saturated && !o.no_sweep_stop) break;
        }
        stack.stop();
      }
    }
    if (o.floor_events > 0) {
      supervisor::StackOptions so;
      so.bin_dir = o.bin_dir;
      so.data_dir = o.data_dir + "/floor";
      so.pipeline_files = {o.pipeline};
      so.log_level = "warn";
      supervisor::Stack stack(so);
      fmt::print(stderr, "floor: kcat through starling-broker, {} events\n", o.floor_events);
      if (auto st = stack.start(); !st) throw std::runtime_error(st.error().message);
      out["floor"] = run_floor(stack, o, so.data_dir);
      stack.stop();
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    exit_code = 2;
  }
  print_tables(out);
  if (!o.json_file.empty()) std::ofstream(o.json_file) << out.dump(2) << '\n';
  if (!o.keep) {
    std::error_code ec;
    fs::remove_all(o.data_dir, ec);
  }
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
  } catch (...) {
    fmt::print(stderr, "error: an unknown exception\n");
  }
  return 2;
}
