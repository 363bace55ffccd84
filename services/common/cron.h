#pragma once
// Cron schedules: five fields (minute hour day-of-month month day-of-week),
// read as in Vixie cron and evaluated in UTC. Each field is `*`, a number or
// name (JAN..DEC, SUN..SAT; 7 is Sunday too), a range `a-b`, a step `*/n` or
// `a-b/n` or `a/n`, or a comma list of those; @hourly, @daily, @weekly,
// @monthly and @yearly stand for their five fields. When both day fields are
// restricted, a day matching either runs (Vixie's rule).

#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "services/common/error.h"

namespace starling {

struct CronSchedule {
  std::bitset<60> minutes;
  std::bitset<24> hours;
  std::bitset<32> days;     // 1..31
  std::bitset<13> months;   // 1..12
  std::bitset<7> weekdays;  // 0 = Sunday
  bool any_day = true;      // day-of-month was "*"
  bool any_weekday = true;  // day-of-week was "*"
  std::string text;         // as written

  /// The first matching minute strictly after `after_ms` (Unix ms, UTC);
  /// nullopt when none comes within five years (say, 30 2 *).
  std::optional<int64_t> next_after(int64_t after_ms) const;
};

/// Parses a schedule; the error names the field, what was there and what
/// was expected.
Result<CronSchedule> parse_cron(std::string_view text);

}  // namespace starling
