#pragma once

// Reading a starling-broker's /metrics page in tests: the address the broker
// wrote to --metrics-port-file, one scrape, one sample.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "services/common/http.h"
#include "tests/services/broker/broker_process.h"

namespace starling::broker::testing {

/// HOST:PORT from the file --metrics-port-file names, once the broker wrote it (at most 10 s).
inline std::string metrics_address(const fs::path& file) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!fs::exists(file) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto a = read_file(file);
  while (!a.empty() && a.back() == '\n') a.pop_back();
  return a;
}

inline std::string scrape(const std::string& address) {
  auto r = http_call("GET", "http://" + address + "/metrics");
  if (!r) return "scrape failed: " + r.error().message;
  EXPECT_EQ(r->status, 200);
  return r->body;
}

/// The value of the one sample `series` (name and labels as rendered), or -1.
inline double sample(const std::string& page, const std::string& series) {
  const auto at = page.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(page.substr(at + series.size() + 2));
}

}  // namespace starling::broker::testing
