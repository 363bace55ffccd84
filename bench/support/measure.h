#pragma once
// What every bench measures of one run: wall seconds and this process's CPU
// seconds (user + system), taken around a callable.

#include <sys/resource.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>

namespace starling::bench {

/// User + system CPU seconds this process has used so far.
inline double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

struct Measure {
  double seconds = 0;
  double cpu = 0;
};

/// Runs `f` once: its wall time and the CPU time this process spent meanwhile.
template <class F>
Measure measure(F&& f) {
  const double c0 = cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return {std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), cpu_seconds() - c0};
}

/// VmRSS and VmHWM (the peak) of a process, "self" by default, in MiB; 0
/// for what cannot be read (a process gone).
inline std::pair<double, double> rss_mib(const std::string& pid = "self") {
  std::ifstream in("/proc/" + pid + "/status");
  double rss = 0;
  double hwm = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("VmRSS:")) rss = std::strtod(line.c_str() + 6, nullptr) / 1024;
    if (line.starts_with("VmHWM:")) hwm = std::strtod(line.c_str() + 6, nullptr) / 1024;
  }
  return {rss, hwm};
}

}  // namespace starling::bench
