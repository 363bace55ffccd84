#include "services/common/cron.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <chrono>
#include <vector>

#include "services/common/text.h"

namespace starling {

namespace {

struct Field {
  const char* name;
  int lo;
  int hi;
  std::array<const char*, 12> names;  // value lo + i (months from 1, weekdays from 0)
};

constexpr Field kMinute{"minute", 0, 59, {}};
constexpr Field kHour{"hour", 0, 23, {}};
constexpr Field kDay{"day of month", 1, 31, {}};
constexpr Field kMonth{
    "month", 1, 12, {"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}};
// 7 is Sunday too: read as 0 after parsing.
constexpr Field kWeekday{"day of week", 0, 7, {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}};

std::vector<std::string_view> split(std::string_view text, char by) {
  std::vector<std::string_view> out;
  std::size_t from = 0;
  while (true) {
    const auto at = text.find(by, from);
    out.push_back(text.substr(from, at == std::string_view::npos ? std::string_view::npos : at - from));
    if (at == std::string_view::npos) return out;
    from = at + 1;
  }
}

std::optional<int> value(std::string_view v, const Field& f) {
  int n = 0;
  const std::string text(v);
  const char* end = text.c_str() + text.size();
  if (auto [p, ec] = std::from_chars(text.c_str(), end, n); ec == std::errc() && p == end && !text.empty()) {
    if (n < f.lo || n > f.hi) return std::nullopt;
    return n;
  }
  std::string upper(text);
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (std::size_t i = 0; i < f.names.size() && f.names.at(i) != nullptr; ++i) {
    if (upper == f.names.at(i)) return f.lo + static_cast<int>(i);
  }
  return std::nullopt;
}

// One field's values as a bit per value (bit n = value n).
Result<std::bitset<64>> parse_field(std::string_view text, const Field& f, bool& star) {
  std::bitset<64> bits;
  star = text == "*";
  auto bad = [&](std::string_view item, const std::string& why) {
    return fail(Errc::kInvalidArgument, fmt::format("cron {} '{}': {}", f.name, excerpt(item, 20), why));
  };
  const auto expected =
      fmt::format("expected *, {}-{}{}, a range a-b, a step */n or a-b/n, or a list of those", f.lo, f.hi,
                  f.names.at(0) != nullptr ? " or a name like " + std::string(f.names.at(0)) : "");
  for (const auto item : split(text, ',')) {
    if (item.empty()) return bad(text, "an empty item in the list; " + expected);
    const auto slash = item.find('/');
    const auto range = item.substr(0, slash);
    int step = 1;
    if (slash != std::string_view::npos) {
      const std::string s(item.substr(slash + 1));
      const char* end = s.c_str() + s.size();
      if (auto [p, ec] = std::from_chars(s.c_str(), end, step);
          ec != std::errc() || p != end || step < 1 || step > f.hi) {
        return bad(item, fmt::format("the step must be a number from 1 to {}", f.hi));
      }
    }
    int lo = f.lo;
    int hi = f.hi;
    if (range != "*") {
      const auto dash = range.find('-');
      const auto a = value(range.substr(0, dash), f);
      if (!a) return bad(item, expected);
      lo = *a;
      hi = slash != std::string_view::npos && dash == std::string_view::npos ? f.hi : *a;  // a/n: a to the end
      if (dash != std::string_view::npos) {
        const auto b = value(range.substr(dash + 1), f);
        if (!b) return bad(item, expected);
        if (*b < *a) return bad(item, "a range must go up (a-b with a <= b)");
        hi = *b;
      }
    }
    for (int v = lo; v <= hi; v += step) bits.set(static_cast<std::size_t>(v));
  }
  return bits;
}

template <std::size_t N>
std::bitset<N> narrow(const std::bitset<64>& b) {
  std::bitset<N> out;
  for (std::size_t i = 0; i < N; ++i) out[i] = b[i];
  return out;
}

}  // namespace

Result<CronSchedule> parse_cron(std::string_view text) {
  std::string_view t = text;
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.front()))) t.remove_prefix(1);
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.remove_suffix(1);
  static const std::array<std::pair<std::string_view, std::string_view>, 6> macros = {{{"@hourly", "0 * * * *"},
                                                                                       {"@daily", "0 0 * * *"},
                                                                                       {"@midnight", "0 0 * * *"},
                                                                                       {"@weekly", "0 0 * * 0"},
                                                                                       {"@monthly", "0 0 1 * *"},
                                                                                       {"@yearly", "0 0 1 1 *"}}};
  for (const auto& [macro, fields] : macros) {
    if (t == macro) t = fields;
  }
  std::vector<std::string_view> parts;
  for (std::size_t i = 0; i < t.size();) {
    while (i < t.size() && std::isspace(static_cast<unsigned char>(t[i]))) ++i;
    const auto from = i;
    while (i < t.size() && !std::isspace(static_cast<unsigned char>(t[i]))) ++i;
    if (i > from) parts.push_back(t.substr(from, i - from));
  }
  if (parts.size() != 5) {
    return fail(Errc::kInvalidArgument,
                fmt::format("cron '{}': expected five fields (minute hour day-of-month month day-of-week, e.g. "
                            "\"5 * * * *\") or @hourly/@daily/@weekly/@monthly/@yearly, got {}",
                            excerpt(text, 60), parts.size()));
  }
  CronSchedule c;
  c.text = std::string(text);
  bool star = false;
  auto minutes = parse_field(parts[0], kMinute, star);
  if (!minutes) return std::unexpected(minutes.error());
  auto hours = parse_field(parts[1], kHour, star);
  if (!hours) return std::unexpected(hours.error());
  auto days = parse_field(parts[2], kDay, c.any_day);
  if (!days) return std::unexpected(days.error());
  auto months = parse_field(parts[3], kMonth, star);
  if (!months) return std::unexpected(months.error());
  auto weekdays = parse_field(parts[4], kWeekday, c.any_weekday);
  if (!weekdays) return std::unexpected(weekdays.error());
  if ((*weekdays)[7]) weekdays->set(0);
  c.minutes = narrow<60>(*minutes);
  c.hours = narrow<24>(*hours);
  c.days = narrow<32>(*days);
  c.months = narrow<13>(*months);
  c.weekdays = narrow<7>(*weekdays);
  return c;
}

std::optional<int64_t> CronSchedule::next_after(int64_t after_ms) const {
  namespace ch = std::chrono;
  using Minute = ch::time_point<ch::system_clock, ch::minutes>;
  Minute t = ch::floor<ch::minutes>(ch::sys_time<ch::milliseconds>(ch::milliseconds(after_ms))) + ch::minutes(1);
  const Minute limit = t + ch::hours(24 * 366 * 5);
  while (t < limit) {
    const auto day = ch::floor<ch::days>(t);
    const ch::year_month_day ymd(day);
    if (!months[static_cast<unsigned>(ymd.month())]) {
      const ch::year_month_day first(ymd.year() / ymd.month() / 1);
      t = Minute(ch::sys_days(first + ch::months(1)));
      continue;
    }
    const bool dom = days[static_cast<unsigned>(ymd.day())];
    const bool dow = weekdays[ch::weekday(day).c_encoding()];
    bool day_ok = dom || dow;  // both restricted: either (Vixie)
    if (any_day) day_ok = dow;
    if (any_weekday) day_ok = any_day || dom;
    if (!day_ok) {
      t = Minute(day + ch::days(1));
      continue;
    }
    const auto h = ch::floor<ch::hours>(t - day);
    if (!hours[static_cast<std::size_t>(h.count())]) {
      t = Minute(day + h + ch::hours(1));
      continue;
    }
    const auto m = ch::floor<ch::minutes>(t - day - h);
    if (!minutes[static_cast<std::size_t>(m.count())]) {
      t += ch::minutes(1);
      continue;
    }
    return ch::duration_cast<ch::milliseconds>(t.time_since_epoch()).count();
  }
  return std::nullopt;
}

}  // namespace starling
