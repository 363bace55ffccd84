#pragma once
// `promtool check metrics` (Debian's prometheus package) over a /metrics page:
// the text format parses, and Prometheus' lint rules hold (counters end in
// _total, units in base units, no _count on a counter...). promtool exits 3
// on a lint finding and 1 on a page it cannot parse.

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>

#include "tests/support/temp_dir.h"

namespace starling::testing {

struct PromtoolResult {
  int exit_code = -1;
  std::string output;  // what promtool printed (its findings)
};

inline PromtoolResult promtool_check_metrics(const std::string& page) {
  TempDir dir;
  const auto file = dir / "metrics.txt";
  std::ofstream(file, std::ios::binary) << page;
  PromtoolResult r;
  FILE* p = ::popen(("promtool check metrics < " + file + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace starling::testing
