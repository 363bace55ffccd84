// Per-device rate limiting at fleet scale (issue 17 item 11): the ingest
// RateLimiter deciding one-event requests of N distinct devices (default
// 1,000,000), round robin for several passes, against a baseline in the same
// run that does the least any per-device limit must do: find or insert the
// device in an unordered_map under a mutex and add to a number. Both build
// the same "<pipeline>/<device>" key per request.
//
//   build/release/bin/rate_bench [--devices 1000000] [--passes 3]

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <fstream>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "bench/support/measure.h"
#include "services/ingest/limits.h"

namespace {

int run(int argc, char** argv) {
  using namespace starling;
  CLI::App app{"rate_bench: the ingest per-device rate limiter with N devices vs a bare map of counters"};
  std::size_t devices = 1'000'000;
  int passes = 3;
  app.add_option("--devices", devices, "Distinct device ids")->capture_default_str();
  app.add_option("--passes", passes, "Requests per device (round robin)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::vector<std::string> ids;
  ids.reserve(devices);
  for (std::size_t i = 0; i < devices; ++i) ids.push_back(fmt::format("bike-{:07}", i));
  const double requests = static_cast<double>(devices) * passes;

  // Ours: 5 events/s, burst 5; one event per request keeps every device in
  // debt-free but not full buckets within a pass, the realistic steady state.
  struct Row {
    std::string name;
    bench::Measure m;
    std::size_t tracked;
    double rss;
    double hwm;
  };
  std::vector<Row> rows;
  {
    ingest::RateLimiter limiter({.per_s = 5, .burst = 5}, devices);
    std::size_t refused = 0;
    const auto m = bench::measure([&] {
      std::string who;
      for (int p = 0; p < passes; ++p) {
        for (const auto& id : ids) refused += limiter.admit(nullptr, "ecowheels", {{id, 1.0}}, who) > 0;
      }
    });
    const auto [rss, hwm] = starling::bench::rss_mib();
    if (refused > 0) std::fprintf(stderr, "note: %zu requests refused (a device over 5/s)\n", refused);
    rows.push_back({"RateLimiter::admit", m, limiter.tracked_devices(), rss, hwm});
  }
  {
    std::mutex mu;
    std::unordered_map<std::string, double> counters;
    const auto m = bench::measure([&] {
      for (int p = 0; p < passes; ++p) {
        for (const auto& id : ids) {
          const std::map<std::string, double> by_device{{id, 1.0}};  // what ingest hands the limiter
          std::lock_guard lock(mu);
          for (const auto& [d, n] : by_device) counters["ecowheels/" + d] += n;
        }
      }
    });
    const auto [rss, hwm] = starling::bench::rss_mib();
    rows.push_back({"baseline map", m, counters.size(), rss, hwm});
  }
  std::printf("rate_bench: %zu devices, %d passes, %.0f requests of one event\n\n", devices, passes, requests);
  std::printf("| %-20s | %12s | %10s | %8s | %12s | %10s | %12s | %12s |\n", "", "requests/s", "ns/request", "ratio",
              "CPU-us/event", "tracked", "RSS MiB", "peak RSS MiB");
  std::printf("|%s|%s|%s|%s|%s|%s|%s|%s|\n", std::string(22, '-').c_str(), std::string(14, '-').c_str(),
              std::string(12, '-').c_str(), std::string(10, '-').c_str(), std::string(14, '-').c_str(),
              std::string(12, '-').c_str(), std::string(14, '-').c_str(), std::string(14, '-').c_str());
  const double base = requests / rows[1].m.seconds;
  for (const auto& r : rows) {
    const double rate = requests / r.m.seconds;
    std::printf("| %-20s | %12.0f | %10.0f | %8.2f | %12.3f | %10zu | %12.0f | %12.0f |\n", r.name.c_str(), rate,
                1e9 / rate, rate / base, r.m.cpu * 1e6 / requests, r.tracked, r.rss, r.hwm);
  }
  std::printf("\nRSS is the process's after each row (the ids vector is shared); ratio = ours / baseline.\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rate_bench: %s\n", e.what());
    return 1;
  }
}
