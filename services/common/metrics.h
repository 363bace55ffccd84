#pragma once
// Process-wide metrics in the Prometheus text format (version 0.0.4), served
// by every service at GET /metrics. Debian has no C++ Prometheus client, so
// this is the small part we need: counters and gauges with fixed label sets,
// plus the standard process_* metrics read from /proc.
//
// Lookup takes a lock, so code on a hot path keeps the reference it got once:
//   static auto& rows = metrics().counter("starling_load_rows_total", "Rows committed", {{"pipeline", p}});
//   rows.add(n);

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace starling {

using Labels = std::vector<std::pair<std::string, std::string>>;

/// Only goes up (restarts reset it; Prometheus' rate() copes).
class Counter {
 public:
  void add(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

/// A value that goes up and down (a queue depth, a 0/1 "up").
class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

/// Observations counted into fixed buckets (cumulative when rendered, with
/// _sum and _count), for latencies. observe() takes no lock.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  /// Per-bucket counts (not cumulative), one more than bounds (the +Inf bucket).
  std::vector<uint64_t> counts() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
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

  /// Every metric, sorted by name, then the process_* metrics.
  std::string render() const;

 private:
  struct Family {
    std::string help;
    std::string type;                                          // counter | gauge | histogram
    std::map<std::string, std::unique_ptr<Counter>> counters;  // by rendered label set
    std::map<std::string, std::unique_ptr<Gauge>> gauges;
    std::map<std::string, std::pair<Labels, std::unique_ptr<Histogram>>> histograms;
  };
  Family& family(const std::string& name, const std::string& help, const char* type);

  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
};

/// The registry of this process.
MetricsRegistry& metrics();

/// `{a="x",b="y"}` with values escaped as the text format requires; empty for no labels.
std::string render_labels(const Labels& labels);

/// Resident set size of this process, in bytes (0 when /proc is unreadable).
uint64_t resident_bytes();

}  // namespace starling
