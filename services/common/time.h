#pragma once
// Time: the clock, and Unix ms to and from RFC 3339 in UTC. Every service and
// the CLI format and parse times here, so one form means one spelling.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "services/common/error.h"

namespace starling {

inline int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// Unix ms as RFC 3339 UTC, always with milliseconds:
/// "2026-11-23T10:00:00.250Z", "2026-11-23T10:00:00.000Z" (the saga API, JSON
/// logs, the CLI's tables).
std::string rfc3339(int64_t ms);

/// The same with the fraction only when it is not zero:
/// "2026-11-23T10:00:00Z", "2026-11-23T10:00:00.250Z". This is how a Protobuf
/// Timestamp is written in JSON (TimeUtil::ToString): the simulated fleet's
/// event_time, the ingest time quoted in clean's reasons.
std::string rfc3339_trimmed(int64_t ms);

/// RFC 3339 ("2026-11-23T10:00:00Z", "2026-11-23T10:00:00.250+01:00"; digits
/// beyond milliseconds are cut) or Unix ms ("1795428000250"). A time without
/// a zone is refused: it is ambiguous.
Result<int64_t> parse_time_ms(const std::string& text);

/// A duration as pipeline files and flags write them: 250ms, 30s, 5m, 1h or
/// 1d (spaces around allowed). nullopt for anything else.
std::optional<int64_t> parse_duration_ms(std::string_view text);

}  // namespace starling
