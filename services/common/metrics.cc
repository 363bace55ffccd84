#include "services/common/metrics.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "services/common/error.h"

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

std::string number(double v) {
  if (v == static_cast<double>(static_cast<int64_t>(v))) return std::to_string(static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

// Fields 14 and 15 (utime, stime) of /proc/self/stat, in seconds.
double cpu_seconds() {
  std::ifstream in("/proc/self/stat");
  std::string stat;
  std::getline(in, stat);
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  uint64_t utime = 0;
  uint64_t stime = 0;
  // After the command: state is field 3; utime is field 14.
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
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

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (std::size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::observe(double v) {
  std::size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  double sum = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(sum, sum + v, std::memory_order_relaxed)) {
  }
}

std::vector<uint64_t> Histogram::counts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = counts_[i].load(std::memory_order_relaxed);
  return out;
}

MetricsRegistry::Family& MetricsRegistry::family(const std::string& name, const std::string& help, const char* type) {
  STARLING_ASSERT(valid_name(name), "bad metric name");
  auto [it, inserted] = families_.try_emplace(name);
  if (inserted) {
    it->second.help = help;
    it->second.type = type;
  }
  STARLING_ASSERT(it->second.type == type, "metric {} is a {}, not a {}", name, it->second.type, type);
  return it->second;
}

Counter& MetricsRegistry::counter(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& slot = family(name, help, "counter").counters[render_labels(labels)];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Gauge& MetricsRegistry::gauge(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& slot = family(name, help, "gauge").gauges[render_labels(labels)];
  if (!slot) slot = std::make_unique<Gauge>();
  return *slot;
}

Histogram& MetricsRegistry::histogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                                      const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& slot = family(name, help, "histogram").histograms[render_labels(labels)];
  if (!slot.second) slot = {labels, std::make_unique<Histogram>(std::move(bounds))};
  return *slot.second;
}

std::string MetricsRegistry::render() const {
  std::string out;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, f] : families_) {
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, escape(f.help, false), name, f.type);
      for (const auto& [labels, c] : f.counters) out += fmt::format("{}{} {}\n", name, labels, c->value());
      for (const auto& [labels, g] : f.gauges) out += fmt::format("{}{} {}\n", name, labels, number(g->value()));
      for (const auto& [rendered, h] : f.histograms) {
        const auto counts = h.second->counts();
        uint64_t cumulative = 0;
        for (std::size_t i = 0; i < counts.size(); ++i) {
          cumulative += counts[i];
          auto with_le = h.first;
          with_le.emplace_back("le", i < h.second->bounds().size() ? number(h.second->bounds()[i]) : "+Inf");
          out += fmt::format("{}_bucket{} {}\n", name, render_labels(with_le), cumulative);
        }
        out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, rendered, number(h.second->sum()), name, rendered,
                           cumulative);
      }
    }
  }
  const double start = std::chrono::duration<double>(g_start.time_since_epoch()).count();
  out += fmt::format(
      "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
      "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}\n"
      "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
      "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}\n"
      "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
      "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {}\n",
      resident_bytes(), number(cpu_seconds()), number(start));
  return out;
}

MetricsRegistry& metrics() {
  static MetricsRegistry registry;
  return registry;
}

}  // namespace starling
