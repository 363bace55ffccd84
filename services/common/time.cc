#include "services/common/time.h"

#include <fmt/format.h>
#include <re2/re2.h>

#include <cctype>
#include <charconv>
#include <cstdio>
#include <ctime>

namespace starling {
namespace {

std::string format_utc(int64_t ms, bool always_fraction) {
  // Floor division: a time before 1970 is the second before, plus a fraction.
  int64_t secs = ms / 1000;
  int64_t frac = ms % 1000;
  if (frac < 0) {
    frac += 1000;
    --secs;
  }
  const auto t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  auto out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                         tm.tm_hour, tm.tm_min, tm.tm_sec);
  if (always_fraction || frac != 0) out += fmt::format(".{:03}", frac);
  out += 'Z';
  return out;
}

}  // namespace

std::string rfc3339(int64_t ms) { return format_utc(ms, true); }

std::string rfc3339_trimmed(int64_t ms) { return format_utc(ms, false); }

Result<int64_t> parse_time_ms(const std::string& text) {
  auto bad = [&] {
    return fail(Errc::kInvalidArgument, "'" + text + "' is neither RFC 3339 (2026-11-23T10:00:00Z) nor Unix ms");
  };
  if (text.empty()) return bad();
  if (text.find_first_not_of("0123456789") == std::string::npos) {
    int64_t ms = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
    if (ec != std::errc{}) return bad();
    return ms;
  }
  int y, mo, d, h, mi, s, used = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &used) != 6 || used != 19)
    return bad();
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return bad();
  std::size_t pos = 19;
  int64_t frac_ms = 0;
  if (pos < text.size() && text[pos] == '.') {
    std::size_t digits = 0;
    for (++pos; pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos])); ++pos, ++digits) {
      if (digits < 3) frac_ms = frac_ms * 10 + (text[pos] - '0');
    }
    if (digits == 0) return bad();
    for (; digits < 3; ++digits) frac_ms *= 10;
  }
  int64_t offset_min = 0;
  const auto zone = text.substr(pos);
  if (zone == "Z" || zone == "z") {
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    int zh = 0, zm = 0;
    if (std::sscanf(zone.c_str() + 1, "%2d:%2d", &zh, &zm) != 2 || zh > 23 || zm > 59) return bad();
    offset_min = (zone[0] == '+' ? 1 : -1) * (int64_t{zh} * 60 + zm);
  } else {
    return bad();
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return (static_cast<int64_t>(timegm(&tm)) - offset_min * 60) * 1000 + frac_ms;
}

std::optional<int64_t> parse_duration_ms(std::string_view text) {
  static const re2::RE2 re(R"(\s*(\d{1,15})\s*(ms|s|m|h|d)\s*)");
  int64_t n = 0;
  std::string unit;
  if (!re2::RE2::FullMatch(re2::StringPiece(text.data(), text.size()), re, &n, &unit)) return std::nullopt;
  return unit == "ms"  ? n
         : unit == "s" ? n * 1000
         : unit == "m" ? n * 60'000
         : unit == "h" ? n * 3'600'000
                       : n * 86'400'000;
}

}  // namespace starling
