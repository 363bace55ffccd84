#include "services/common/metrics.h"

#include <dirent.h>
#include <fmt/format.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

#include "services/common/error.h"
#include "services/common/process.h"

namespace starling {

namespace {

const auto g_start = std::chrono::system_clock::now();

// [a-zA-Z_:][a-zA-Z0-9_:]*
bool valid_name(const std::string& name) {
  auto ok = [](char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (!first && c >= '0' && c <= '9');
  };
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (!ok(name[i], i == 0)) return false;
  }
  return true;
}

std::string escape(const std::string& v, bool quote_too) {
  std::string out;
  for (const char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote_too) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

// A sample value as the text format spells it: NaN, +Inf and -Inf by name.
std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

}  // namespace

std::string render_labels(const Labels& labels) {
  if (labels.empty()) return {};
  std::string out = "{";
  for (const auto& [k, v] : labels) {
    if (out.size() > 1) out += ',';
    out += k + "=\"" + escape(v, true) + '"';
  }
  return out + "}";
}

uint64_t resident_bytes() {
  std::ifstream in("/proc/self/statm");
  uint64_t size = 0;
  uint64_t resident = 0;
  if (!(in >> size >> resident)) return 0;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

uint64_t open_fds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  uint64_t n = 0;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n > 0 ? n - 1 : 0;  // not counting the descriptor of the listing itself
}

void Counter::add(uint64_t n) { c_->Increment(static_cast<double>(n)); }
uint64_t Counter::value() const { return static_cast<uint64_t>(c_->Value()); }
void Gauge::set(double v) { g_->Set(v); }
double Gauge::value() const { return g_->Value(); }
void Histogram::observe(double v) { h_->Observe(v); }

MetricsRegistry::MetricsRegistry() : registry_(std::make_shared<prometheus::Registry>()) {}
MetricsRegistry::~MetricsRegistry() = default;

MetricsRegistry::Family& MetricsRegistry::family(const std::string& name, const std::string& help, const char* type,
                                                 std::vector<double> bounds) {
  STARLING_ASSERT(valid_name(name), "bad metric name");
  auto [it, inserted] = families_.try_emplace(name);
  Family& f = it->second;
  if (inserted) {
    f.type = type;
    f.bounds = std::move(bounds);
    const std::string t = type;
    // prometheus-cpp 1.0.1 writes HELP as given: a newline would end the
    // line early and break the page, so it gets the text format's escapes.
    const std::string escaped = escape(help, false);
    if (t == "counter") {
      f.family = &prometheus::BuildCounter().Name(name).Help(escaped).Register(*registry_);
    } else if (t == "gauge") {
      f.family = &prometheus::BuildGauge().Name(name).Help(escaped).Register(*registry_);
    } else {
      f.family = &prometheus::BuildHistogram().Name(name).Help(escaped).Register(*registry_);
    }
  }
  STARLING_ASSERT(f.type == type, "metric {} is a {}, not a {}", name, f.type, type);
  return f;
}

namespace {
std::map<std::string, std::string> label_map(const Labels& labels) { return {labels.begin(), labels.end()}; }
}  // namespace

Counter& MetricsRegistry::counter(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& f = family(name, help, "counter");
  auto& slot = f.counters[render_labels(labels)];
  if (!slot)
    slot = std::make_unique<Counter>(
        static_cast<prometheus::Family<prometheus::Counter>*>(f.family)->Add(label_map(labels)));
  return *slot;
}

Gauge& MetricsRegistry::gauge(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& f = family(name, help, "gauge");
  auto& slot = f.gauges[render_labels(labels)];
  if (!slot)
    slot =
        std::make_unique<Gauge>(static_cast<prometheus::Family<prometheus::Gauge>*>(f.family)->Add(label_map(labels)));
  return *slot;
}

Histogram& MetricsRegistry::histogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                                      const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& f = family(name, help, "histogram", std::move(bounds));
  auto& slot = f.histograms[render_labels(labels)];
  if (!slot) {
    slot = std::make_unique<Histogram>(
        static_cast<prometheus::Family<prometheus::Histogram>*>(f.family)->Add(label_map(labels), f.bounds));
  }
  return *slot;
}

void MetricsRegistry::retain_gauges(const std::string& name, const std::set<std::string>& keep) {
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end() || it->second.type != "gauge") return;
  auto* family = static_cast<prometheus::Family<prometheus::Gauge>*>(it->second.family);
  auto& gauges = it->second.gauges;
  for (auto g = gauges.begin(); g != gauges.end();) {
    if (keep.contains(g->first)) {
      ++g;
    } else {
      family->Remove(&g->second->series());
      g = gauges.erase(g);
    }
  }
}

void MetricsRegistry::remove_gauge(const std::string& name, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end() || it->second.type != "gauge") return;
  auto g = it->second.gauges.find(render_labels(labels));
  if (g == it->second.gauges.end()) return;
  static_cast<prometheus::Family<prometheus::Gauge>*>(it->second.family)->Remove(&g->second->series());
  it->second.gauges.erase(g);
}

std::string MetricsRegistry::render() const {
  std::string out = prometheus::TextSerializer().Serialize(registry_->Collect());
  const double start = std::chrono::duration<double>(g_start.time_since_epoch()).count();
  rlimit fds{};
  const double max_fds = ::getrlimit(RLIMIT_NOFILE, &fds) == 0 ? static_cast<double>(fds.rlim_cur) : 0;
  out += fmt::format(
      "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
      "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}\n"
      "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
      "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}\n"
      "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
      "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {}\n"
      "# HELP process_open_fds Number of open file descriptors.\n"
      "# TYPE process_open_fds gauge\nprocess_open_fds {}\n"
      "# HELP process_max_fds Maximum number of open file descriptors.\n"
      "# TYPE process_max_fds gauge\nprocess_max_fds {}\n",
      resident_bytes(), number(process_cpu_seconds()), number(start), open_fds(), number(max_fds));
  return out;
}

MetricsRegistry& metrics() {
  static MetricsRegistry registry;
  return registry;
}

}  // namespace starling
