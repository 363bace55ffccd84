// Pull throughput: starling-extract against a plain shell chain, on the same
// starling-broker (port 0), from the same fake weather API (in this process,
// port 0, no faults), over the same pages, in one run:
//   ours:      a real starling-extract process catching up P hourly windows
//              of one page of R records each (the source of
//              pipelines/weather.yaml with window: 1h, pointed at the API):
//              each page parsed, each record converted and wrapped in its
//              envelope, one saga per page, the cursor written (synced) per
//              window; timed from its start until its polls have counted
//              P x R records, which they do once every record of a window is
//              PERSISTED in <p>.raw (acks=all, idempotent) and the cursor
//              passed it;
//   baseline:  `curl -K urls | jq -c '.features[]' | kcat -P` over the very
//              page URLs extract asked for (from the API's request log), one
//              message per record, with the producer settings of ours
//              (acks=all, idempotence, lz4, linger.ms=2); timed until kcat
//              exits, which it does once every message is acknowledged.
// Each side's count in its topic is checked from the watermarks after it.
//
//   build/release/bin/extract_bench [--pages P] [--records R] [--json FILE]

#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/http.h"
#include "services/common/pipeline.h"
#include "services/common/process.h"
#include "services/common/time.h"
#include "services/extract/fake_weather_api.h"
#include "starling/v1/weather.pb.h"

namespace {

using namespace starling;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr int64_t kHourMs = 3'600'000;

// CPU seconds (user + system) a process has used so far, from /proc.
double cpu_seconds(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (stat.empty()) return 0;
  // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i >= 14) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Of every waited-for descendant so far (the shell chain, once reaped).
double children_cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_CHILDREN, &ru);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

// A line of /proc/<pid>/status in MiB (VmRSS now, VmHWM the peak); 0 if gone.
double status_mib(pid_t pid, const std::string& key) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with(key + ":")) return std::stod(line.substr(key.size() + 1)) / 1024.0;  // in kB
  }
  return 0;
}

std::string exe_of(pid_t pid) {
  std::error_code ec;
  return fs::read_symlink(fmt::format("/proc/{}/exe", pid), ec).string();
}

// The RSS of a process and its children (a shell and the commands of its
// pipe), in MiB. A child not yet exec'd still maps this process (fork
// shares its pages): it does not count.
double tree_rss_mib(pid_t pid) {
  static const auto self = exe_of(::getpid());
  double sum = exe_of(pid) == self ? 0 : status_mib(pid, "VmRSS");
  std::ifstream in(fmt::format("/proc/{0}/task/{0}/children", pid));
  for (pid_t child = 0; in >> child;) sum += tree_rss_mib(child);
  return sum;
}

// Samples RSS while a side runs: the median of the samples is its steady RSS.
struct RssSamples {
  std::vector<double> mib;
  void add(double v) {
    if (v > 0) mib.push_back(v);
  }
  double median() const {
    if (mib.empty()) return 0;
    auto v = mib;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
  }
  double peak() const { return mib.empty() ? 0 : *std::max_element(mib.begin(), mib.end()); }
};

uint64_t metric(const std::string& url, const std::string& series) {
  auto r = http_call("GET", url, {}, {}, 2000);
  if (!r || r->status != 200) return 0;
  std::istringstream lines(r->body);
  for (std::string line; std::getline(lines, line);) {
    if (line.size() > series.size() && line.starts_with(series) && line[series.size()] == ' ') {
      return static_cast<uint64_t>(std::stod(line.substr(series.size() + 1)));
    }
  }
  return 0;
}

// Messages stored in a topic: the sum of its partitions' high - low watermarks.
Result<uint64_t> stored(const kafka::KafkaOptions& k, const std::string& topic) {
  auto reader = kafka::TopicReader::create(k);
  if (!reader) return std::unexpected(reader.error());
  auto parts = (*reader)->partitions(topic);
  if (!parts) return std::unexpected(parts.error());
  uint64_t n = 0;
  for (int p = 0; p < *parts; ++p) {
    auto w = (*reader)->watermarks({topic, p});
    if (!w) return std::unexpected(w.error());
    n += static_cast<uint64_t>(w->second - w->first);
  }
  return n;
}

// pipelines/weather.yaml without its source block (kept last), then one
// that reads the range hour by hour: one window, one page, one saga each.
std::string bench_pipeline(const std::string& weather_yaml, const std::string& base_url, int64_t first_ms) {
  std::ifstream in(weather_yaml);
  std::stringstream ss;
  ss << in.rdbuf();
  auto text = ss.str();
  if (const auto at = text.find("\nsource:\n"); at != std::string::npos) text.resize(at + 1);
  return text + fmt::format(R"(
source:
  http_poll:
    url: {}/geojson/observations?start=${{since}}&end=${{until}}
    every: 1h
    window: 1h
    start: "{}"
    records: /features
    paginate: {{next: /pagination/next}}
    map:
      station_id: /properties/station
      observed_at: /properties/timestamp
      air_temperature: /properties/temperature_f
      humidity_pct: /properties/relative_humidity
      wind_speed: /properties/wind_speed_mph
      pressure: /properties/pressure_inhg
      precipitation: /properties/precipitation_in
      sky: /properties/sky
)",
                            base_url, rfc3339_trimmed(first_ms));
}

struct Side {
  std::string name;
  double seconds = 0;
  double cpu = 0;
  double broker_cpu = 0;
  double rss_steady = 0;
  double rss_peak = 0;
};

}  // namespace

int main(int argc, char** argv) try {
  // The pipeline names its message type, found by reflection in the
  // generated pool: a use of the schemas library keeps it linked (a release
  // link with --as-needed drops a library nothing calls).
  (void)starling::v1::WeatherObservation::descriptor();
  CLI::App app{
      "extract_bench: starling-extract against curl | jq | kcat -P, pulling the same pages of a fake "
      "weather API into starling-broker"};
  int pages = 200;
  int records = 500;
  std::string weather_yaml = "pipelines/weather.yaml";
  std::string json_file;
  bool keep = false;
  app.add_option("--pages", pages, "Pages in the window (P)")->capture_default_str()->check(CLI::Range(1, 10000));
  app.add_option("--records", records, "Records per page (R): the API's stations, one hour a page")
      ->capture_default_str()
      ->check(CLI::Range(1, 17576));  // station names are 3 letters: KAAA..KZZZ
  app.add_option("--pipeline", weather_yaml, "The weather pipeline whose rules and mapping extract uses")
      ->capture_default_str();
  app.add_option("--json", json_file, "Also write the results to this file as JSON");
  app.add_flag("--keep", keep, "Keep the temporary directory (broker and extract logs, data)");
  CLI11_PARSE(app, argc, argv);

  const auto dir = fs::temp_directory_path() / fmt::format("extract-bench-{}", ::getpid());
  fs::create_directories(dir);
  const auto bin = executable_dir();
  const auto n = static_cast<uint64_t>(pages) * static_cast<uint64_t>(records);
  auto die = [&](const std::string& why) {
    std::fprintf(stderr, "extract_bench: %s (logs in %s)\n", why.c_str(), dir.c_str());
    return 1;
  };

  // The API: R stations x P hours ending at the current hour, R a page:
  // with windows of an hour, P windows of one page. (The fake API generates
  // a request's whole window to serve one page of it, so one window of P
  // pages would time the API's generation, P times over.)
  extract::FakeApiOptions api_opts;
  api_opts.stations = records;
  api_opts.hours = pages;
  api_opts.page_size = records;
  api_opts.first_hour_ms = (now_ms() / kHourMs) * kHourMs - pages * kHourMs;
  extract::FakeWeatherApi api(api_opts);
  api.start();

  auto broker =
      ChildProcess::spawn({bin + "/starling-broker", "--listen", "127.0.0.1:0", "--data-dir", (dir / "broker").string(),
                           "--port-file", (dir / "broker.port").string(), "--log-level", "warn"},
                          (dir / "broker.log").string());
  if (!broker) return die(broker.error().message);
  auto addr = wait_for_file((dir / "broker.port").string(), 30s);
  if (!addr) return die(addr.error().message);
  const kafka::KafkaOptions k{*addr, "extract-bench", {}, {}};

  const auto pipeline_file = (dir / "weather.yaml").string();
  std::ofstream(pipeline_file) << bench_pipeline(weather_yaml, api.base_url(), api_opts.first_hour_ms);
  const auto p = load_pipeline(pipeline_file);
  if (auto st = kafka::create_topics(k, {{p.raw_topic(), p.partitions},
                                         {p.rejected_topic(), p.partitions},
                                         {kSagaTopic, 3},
                                         {"bench.baseline", p.partitions}});
      !st) {
    return die(st.error().message);
  }

  // Ours: starling-extract until its poll of the window completed.
  Side ours{"starling-extract"};
  {
    const double broker_cpu0 = cpu_seconds(broker->pid());
    const auto t0 = Clock::now();
    auto extract = ChildProcess::spawn(
        {bin + "/starling-extract", "--kafka", *addr, "--pipeline", pipeline_file, "--data-dir",
         (dir / "extract").string(), "--listen", "127.0.0.1:0", "--port-file", (dir / "extract.port").string(),
         "--max-pages", std::to_string(pages + 1), "--log-level", "warn"},
        (dir / "extract.log").string());
    if (!extract) return die(extract.error().message);
    auto port = wait_for_file((dir / "extract.port").string(), 30s);
    if (!port) return die(port.error().message);
    const auto url = fmt::format("http://127.0.0.1:{}/metrics", *port);
    const auto series = fmt::format("starling_extract_records_total{{pipeline=\"{}\"}}", p.name);
    RssSamples rss;
    const auto until = Clock::now() + 600s;
    // Every 20 ms: each look renders its /metrics, CPU taken from extract.
    while (metric(url, series) < n && Clock::now() < until) {
      rss.add(tree_rss_mib(extract->pid()));
      std::this_thread::sleep_for(20ms);
    }
    ours.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    ours.cpu = cpu_seconds(extract->pid());
    ours.broker_cpu = cpu_seconds(broker->pid()) - broker_cpu0;
    ours.rss_steady = rss.median();
    ours.rss_peak = status_mib(extract->pid(), "VmHWM");
    extract->stop(10s);
    auto in_raw = stored(k, p.raw_topic());
    if (!in_raw) return die(in_raw.error().message);
    if (*in_raw != n) return die(fmt::format("starling-extract: {} of {} records in {}", *in_raw, n, p.raw_topic()));
  }

  // The page URLs extract asked for, in its order.
  const auto log = api.requests();
  std::ofstream urls(dir / "urls.conf");
  uint64_t asked = 0;
  for (const auto& r : log) {
    if (r.value("status", 0) != 200) continue;
    const auto& q = r["query"];
    auto url = fmt::format("{}{}?start={}&end={}", api.base_url(), r["path"].get<std::string>(),
                           q["start"].get<std::string>(), q["end"].get<std::string>());
    if (q.contains("page")) url += "&page=" + q["page"].get<std::string>();
    urls << "url = \"" << url << "\"\n";
    ++asked;
  }
  urls.close();

  // The baseline: the same pages through curl, jq and kcat.
  Side base{"curl, jq -c, kcat -P"};
  {
    const auto cmd = fmt::format(
        "curl -fsS -K {0} | jq -c '.features[]' | kcat -P -b {1} -t bench.baseline -z lz4 -X acks=all "
        "-X enable.idempotence=true -X linger.ms=2 -q",
        (dir / "urls.conf").string(), *addr);
    const double cpu0 = children_cpu_seconds();
    const double broker_cpu0 = cpu_seconds(broker->pid());
    const auto t0 = Clock::now();
    auto chain = ChildProcess::spawn({"/bin/sh", "-c", cmd}, (dir / "baseline.log").string());
    if (!chain) return die(chain.error().message);
    RssSamples rss;
    const auto until = Clock::now() + 600s;
    while (chain->running() && Clock::now() < until) {
      rss.add(tree_rss_mib(chain->pid()));
      std::this_thread::sleep_for(20ms);
    }
    const auto status = chain->wait(1s);
    base.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    base.cpu = children_cpu_seconds() - cpu0;
    base.broker_cpu = cpu_seconds(broker->pid()) - broker_cpu0;
    base.rss_steady = rss.median();
    base.rss_peak = rss.peak();
    if (!status || !WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
      if (!status) chain->stop(5s);
      return die("the curl | jq | kcat chain failed or took over 600 s; see baseline.log");
    }
    auto in_topic = stored(k, "bench.baseline");
    if (!in_topic) return die(in_topic.error().message);
    if (*in_topic != n) return die(fmt::format("the baseline: {} of {} records in bench.baseline", *in_topic, n));
  }
  broker->stop(10s);
  api.stop();
  if (keep) {
    std::printf("kept %s\n", dir.c_str());
  } else {
    fs::remove_all(dir);
  }

  const auto count = static_cast<double>(n);
  const double ratio = base.seconds / ours.seconds;  // records/s, ours over the baseline's
  std::printf(
      "extract_bench: %d pages x %d records = %llu records (%llu pages asked for), %s build, %u hardware "
      "threads\n",
      pages, records, static_cast<unsigned long long>(n), static_cast<unsigned long long>(asked), STARLING_BUILD_TYPE,
      std::thread::hardware_concurrency());
  std::printf("| %-24s | %10s | %6s | %13s | %13s | %10s | %8s |\n", "side", "records/s", "ratio", "CPU-us/record",
              "broker CPU-us", "RSS steady", "RSS peak");
  std::printf("|%s|%s|%s|%s|%s|%s|%s|\n", std::string(26, '-').c_str(), std::string(12, '-').c_str(),
              std::string(8, '-').c_str(), std::string(15, '-').c_str(), std::string(15, '-').c_str(),
              std::string(12, '-').c_str(), std::string(10, '-').c_str());
  nlohmann::json sides = nlohmann::json::array();
  for (const auto* s : {&ours, &base}) {
    const double r = s == &ours ? ratio : 1.0;
    std::printf("| %-24s | %10.0f | %6.2f | %13.1f | %13.1f | %6.0f MiB | %4.0f MiB |\n", s->name.c_str(),
                count / s->seconds, r, s->cpu * 1e6 / count, s->broker_cpu * 1e6 / count, s->rss_steady, s->rss_peak);
    sides.push_back({{"side", s->name},
                     {"seconds", s->seconds},
                     {"records_per_s", count / s->seconds},
                     {"ratio", r},
                     {"cpu_us_per_record", s->cpu * 1e6 / count},
                     {"broker_cpu_us_per_record", s->broker_cpu * 1e6 / count},
                     {"rss_steady_mib", s->rss_steady},
                     {"rss_peak_mib", s->rss_peak}});
  }
  std::printf(
      "ratio: records/s over the baseline's. CPU: the side's processes (extract; curl, jq and kcat), the "
      "broker's apart. RSS: extract's, and the chain's processes summed; steady = median while working\n");
  if (!json_file.empty()) {
    const nlohmann::json out = {{"bench", "extract"}, {"build", STARLING_BUILD_TYPE},
                                {"pages", pages},     {"records_per_page", records},
                                {"records", n},       {"hardware_threads", std::thread::hardware_concurrency()},
                                {"sides", sides}};
    std::ofstream(json_file) << out.dump(2) << "\n";
    std::printf("wrote %s\n", json_file.c_str());
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "extract_bench: %s\n", e.what());
  return 1;
}
