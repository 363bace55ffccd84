#include "services/common/ids.h"

#include <fmt/format.h>

#include <random>

namespace starling {

std::string random_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:016x}{:016x}", rng(), rng());
}

}  // namespace starling
