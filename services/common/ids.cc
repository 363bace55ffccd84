#include "services/common/ids.h"

#include <fmt/format.h>

#include <random>

namespace starling {

namespace {

bool lower_hex(std::string_view s) { return s.find_first_not_of("0123456789abcdef") == std::string_view::npos; }

bool all_zero(std::string_view s) { return s.find_first_not_of('0') == std::string_view::npos; }

}  // namespace

std::optional<std::string> traceparent_trace_id(std::string_view h) {
  constexpr std::size_t kLength = 55;  // 2 + 1 + 32 + 1 + 16 + 1 + 2
  if (h.size() < kLength || h[2] != '-' || h[35] != '-' || h[52] != '-') return std::nullopt;
  const auto version = h.substr(0, 2), trace = h.substr(3, 32), parent = h.substr(36, 16), flags = h.substr(53, 2);
  if (!lower_hex(version) || version == "ff" || !lower_hex(trace) || all_zero(trace) || !lower_hex(parent) ||
      all_zero(parent) || !lower_hex(flags)) {
    return std::nullopt;
  }
  if (h.size() > kLength && (version == "00" || h[kLength] != '-')) return std::nullopt;
  return std::string(trace);
}

std::string random_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:016x}{:016x}", rng(), rng());
}

}  // namespace starling
