#pragma once
// Process-wide metrics in the Prometheus text format (version 0.0.4), served
// by every service at GET /metrics. The series live in a prometheus-cpp
// registry (Debian's prometheus-cpp-dev, core library only: each service
// serves the page through its own HTTP server, with its limits); this file
// keeps the small interface the services use, checks that a name stays one
// kind, and adds the standard process_* metrics read from /proc, which
// prometheus-cpp does not collect.
//
// Lookup takes a lock, so code on a hot path keeps the reference it got once:
//   static auto& rows = metrics().counter("starling_load_rows_total", "Rows committed", {{"pipeline", p}});
//   rows.add(n);

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace starling {

using Labels = std::vector<std::pair<std::string, std::string>>;

/// Only goes up (restarts reset it; Prometheus' rate() copes).
class Counter {
 public:
  explicit Counter(prometheus::Counter& c) : c_(&c) {}
  void add(uint64_t n = 1);
  uint64_t value() const;

 private:
  prometheus::Counter* c_;
};

/// A value that goes up and down (a queue depth, a 0/1 "up").
class Gauge {
 public:
  explicit Gauge(prometheus::Gauge& g) : g_(&g) {}
  void set(double v);
  double value() const;
  prometheus::Gauge& series() const { return *g_; }

 private:
  prometheus::Gauge* g_;
};

/// Observations counted into fixed buckets (cumulative when rendered, with
/// _sum and _count), for latencies.
class Histogram {
 public:
  explicit Histogram(prometheus::Histogram& h) : h_(&h) {}
  void observe(double v);

 private:
  prometheus::Histogram* h_;
};

class MetricsRegistry {
 public:
  /// The same name and labels always give the same object. A name is one
  /// kind (counter or gauge) with one help text; names must match
  /// [a-zA-Z_:][a-zA-Z0-9_:]* (checked: a bad name is a programming error).
  Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, const Labels& labels = {});
  /// `bounds` ascending; the first call for a name fixes them.
  Histogram& histogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                       const Labels& labels = {});

  /// Drops the series of gauge `name` whose label set is not in `keep` (as
  /// render_labels() spells them): for gauges refreshed from state at each
  /// scrape, so a deleted topic's series goes. A reference to a dropped
  /// series must not be kept.
  void retain_gauges(const std::string& name, const std::set<std::string>& keep);

  /// Drops one series of gauge `name` (nothing when it has none): a
  /// partition this process gave away. A reference to it must not be kept.
  void remove_gauge(const std::string& name, const Labels& labels);

  /// Every metric, sorted by name, then the process_* metrics.
  std::string render() const;

  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

 private:
  struct Family {
    std::string type;                                          // counter | gauge | histogram
    void* family = nullptr;                                    // prometheus::Family<T>* of that type
    std::map<std::string, std::unique_ptr<Counter>> counters;  // by rendered label set
    std::map<std::string, std::unique_ptr<Gauge>> gauges;
    std::map<std::string, std::unique_ptr<Histogram>> histograms;
    std::vector<double> bounds;  // of every histogram of the name: the first call's
  };
  Family& family(const std::string& name, const std::string& help, const char* type, std::vector<double> bounds = {});

  mutable std::mutex mu_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::map<std::string, Family> families_;
};

/// The registry of this process.
MetricsRegistry& metrics();

/// `{a="x",b="y"}` with values escaped as the text format requires; empty for no labels.
std::string render_labels(const Labels& labels);

/// Resident set size of this process, in bytes (0 when /proc is unreadable).
uint64_t resident_bytes();

/// Descriptors this process has open (entries of /proc/self/fd; 0 when unreadable).
uint64_t open_fds();

}  // namespace starling
