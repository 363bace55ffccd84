#pragma once
// The value of one series on a Prometheus text page ("name{labels}" exactly
// as rendered: prometheus-cpp writes labels in name order), or nullopt when
// the page does not have it.

#include <optional>
#include <sstream>
#include <string>

namespace starling::testing {

inline std::optional<double> prometheus_sample(const std::string& page, const std::string& series) {
  std::istringstream in(page);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with(series + " ")) return std::stod(line.substr(series.size() + 1));
  }
  return std::nullopt;
}

}  // namespace starling::testing
