#pragma once
// A loopback TCP port that was free a moment ago, for servers that cannot
// bind port 0 and report it (PostgreSQL, mosquitto).

#include <cstdint>

#include "services/common/process.h"

namespace starling::testing {

inline uint16_t free_port() { return free_loopback_port(); }

}  // namespace starling::testing
