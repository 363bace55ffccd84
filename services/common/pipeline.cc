#include "services/common/pipeline.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <re2/re2.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "services/common/records.h"
#include "services/common/text.h"
#include "services/common/time.h"
#include "starling/v1/envelope.pb.h"

namespace starling {
namespace {

using google::protobuf::FieldDescriptor;

// One problem found; the Reader records it and parsing goes on with the next
// part (see Reader::part), so `starling check` lists every problem at once.
struct Problem {
  std::string text;
};

// Walks the YAML tree with a path, so every error names file, line and key.
class Reader {
 public:
  explicit Reader(std::string origin) : origin_(std::move(origin)) {}

  static Mark mark(const YAML::Node& node, const std::string& path) {
    const auto m = node.Mark();
    if (m.line < 0) return Mark{0, 0, path};
    return Mark{m.line + 1, m.column + 1, path};
  }

  std::string where(const YAML::Node& node, const std::string& path, const std::string& problem) const {
    return config_problem(origin_, mark(node, path), problem);
  }

  /// Ends the current part: the problem is recorded by part().
  [[noreturn]] void error(const YAML::Node& node, const std::string& path, const std::string& problem) const {
    throw Problem{where(node, path, problem)};
  }
  /// Records a problem and goes on.
  void note(const YAML::Node& node, const std::string& path, const std::string& problem) {
    problems_.push_back(where(node, path, problem));
  }
  /// Records problems written elsewhere (a RuleCheck's).
  void add(std::vector<std::string> problems) {
    for (auto& p : problems) problems_.push_back(std::move(p));
  }

  /// Runs one independent part of the file; a problem in it is recorded and
  /// the caller goes on with the next part. Returns whether it was clean.
  template <class F>
  bool part(F&& f) {
    const auto before = problems_.size();
    try {
      f();
    } catch (const Problem& p) {
      problems_.push_back(p.text);
    }
    return problems_.size() == before;
  }

  /// Throws ConfigError with every problem recorded, if any.
  void finish() const {
    if (!problems_.empty()) throw ConfigError(problems_);
  }

  // Unknown keys are recorded, not fatal: the known ones are still checked.
  void expect_keys(const YAML::Node& map, const std::string& path, const std::set<std::string>& allowed) {
    if (!map.IsMap()) error(map, path, "expected a mapping");
    for (const auto& kv : map) {
      const auto key = kv.first.as<std::string>();
      if (!allowed.contains(key)) {
        note(kv.first, fmt::format("{}.{}", path, key),
             fmt::format("unknown key; expected one of: {}", fmt::join(allowed, ", ")));
      }
    }
  }

  std::string string(const YAML::Node& node, const std::string& path) const {
    if (!node.IsScalar()) error(node, path, "expected a string");
    return node.as<std::string>();
  }

  double number(const YAML::Node& node, const std::string& path) const {
    if (!node.IsScalar()) error(node, path, "expected a number");
    try {
      return node.as<double>();
    } catch (const YAML::Exception&) {
      error(node, path, fmt::format("expected a number, got '{}'", node.Scalar()));
    }
  }

  int64_t integer(const YAML::Node& node, const std::string& path, int64_t min) const {
    int64_t v = 0;
    try {
      v = node.as<int64_t>();
    } catch (const YAML::Exception&) {
      error(node, path, fmt::format("expected an integer, got '{}'", node.IsScalar() ? node.Scalar() : "a collection"));
    }
    if (v < min) error(node, path, fmt::format("expected an integer >= {}, got {}", min, v));
    return v;
  }

  bool boolean(const YAML::Node& node, const std::string& path) const {
    try {
      return node.as<bool>();
    } catch (const YAML::Exception&) {
      error(node, path,
            fmt::format("expected true or false, got '{}'", node.IsScalar() ? node.Scalar() : "a collection"));
    }
  }

  // Durations are written like 30s, 5m, 250ms or 1h.
  int64_t duration_ms(const YAML::Node& node, const std::string& path) const {
    const auto text = string(node, path);
    const auto ms = parse_duration_ms(text);
    if (!ms) error(node, path, fmt::format("expected a duration like 250ms, 30s, 5m, 1h or 1d, got '{}'", text));
    return *ms;
  }

  const FieldDescriptor* field(const google::protobuf::Descriptor* d, const YAML::Node& node,
                               const std::string& path) const {
    const auto name = string(node, path);
    const auto* f = d->FindFieldByName(name);
    if (f == nullptr) {
      std::string list;
      for (int i = 0; i < d->field_count(); ++i) list += (i ? ", " : "") + d->field(i)->name();
      error(node, path, fmt::format("unknown field '{}' of {}; it has: {}", name, d->full_name(), list));
    }
    if (f->is_repeated())
      error(node, path, fmt::format("field '{}' is repeated; only singular fields are supported", name));
    return f;
  }

 private:
  std::string origin_;
  std::vector<std::string> problems_;
};

bool is_identifier(const std::string& s) {
  static const re2::RE2 re("[A-Za-z_][A-Za-z0-9_]{0,62}");
  return re2::RE2::FullMatch(s, re);
}

// The rule's parts as written: keys, value types and field names. What they
// mean (the field types a part takes, units, regex syntax, bounds) is the
// RuleCheck's (the clean stage's), called once the rule has parsed.
void parse_rule(Reader& r, PipelineConfig& p, const YAML::Node& node, const std::string& path, const RuleCheck& check) {
  static const std::set<std::string> keys = {"field",   "required", "range",   "allowed",         "regex",
                                             "convert", "round",    "default", "fill_last_known", "timestamp"};
  r.expect_keys(node, path, keys);
  if (!node["field"]) r.error(node, path + ".field", "missing; name the field the rule checks");
  FieldRule rule;
  rule.line = node.Mark().line + 1;
  rule.field = r.string(node["field"], path + ".field");
  rule.descriptor = r.field(p.descriptor, node["field"], path + ".field");
  bool any = false;
  // Each part of a rule is read on its own, so one bad part does not hide another.
  r.part([&] {
    if (!node["required"]) return;
    any = true;
    rule.at.required = Reader::mark(node["required"], path + ".required");
    rule.required = r.boolean(node["required"], path + ".required");
  });
  r.part([&] {
    const auto range = node["range"];
    if (!range) return;
    any = true;
    r.expect_keys(range, path + ".range", {"min", "max", "min_inclusive", "max_inclusive"});
    RangeRule rr;
    if (range["min"]) rr.min = r.number(range["min"], path + ".range.min");
    if (range["max"]) rr.max = r.number(range["max"], path + ".range.max");
    if (range["min_inclusive"]) rr.min_inclusive = r.boolean(range["min_inclusive"], path + ".range.min_inclusive");
    if (range["max_inclusive"]) rr.max_inclusive = r.boolean(range["max_inclusive"], path + ".range.max_inclusive");
    if (!rr.min && !rr.max) r.error(range, path + ".range", "expected min, max or both");
    rule.at.range = Reader::mark(range, path + ".range");
    rule.range = rr;
  });
  r.part([&] {
    const auto allowed = node["allowed"];
    if (!allowed) return;
    any = true;
    if (!allowed.IsSequence() || allowed.size() == 0)
      r.error(allowed, path + ".allowed", "expected a non-empty list of values");
    rule.at.allowed = Reader::mark(allowed, path + ".allowed");
    for (std::size_t i = 0; i < allowed.size(); ++i) {
      const auto item_path = fmt::format("{}.allowed[{}]", path, i);
      rule.allowed.push_back(r.string(allowed[i], item_path));
      rule.at.allowed_items.push_back(Reader::mark(allowed[i], item_path));
    }
  });
  r.part([&] {
    const auto regex = node["regex"];
    if (!regex) return;
    any = true;
    rule.at.regex = Reader::mark(regex, path + ".regex");
    rule.regex = r.string(regex, path + ".regex");
  });
  r.part([&] {
    const auto convert = node["convert"];
    if (!convert) return;
    any = true;
    r.expect_keys(convert, path + ".convert", {"from", "to"});
    if (!convert["from"] || !convert["to"])
      r.error(convert, path + ".convert", "expected from and to, e.g. {from: mph, to: km/h}");
    ConvertRule c;
    c.from = r.string(convert["from"], path + ".convert.from");
    c.to = r.string(convert["to"], path + ".convert.to");
    rule.at.convert = Reader::mark(convert, path + ".convert");
    rule.at.convert_from = Reader::mark(convert["from"], path + ".convert.from");
    rule.at.convert_to = Reader::mark(convert["to"], path + ".convert.to");
    rule.convert = std::move(c);
  });
  r.part([&] {
    const auto round = node["round"];
    if (!round) return;
    any = true;
    rule.at.round = Reader::mark(round, path + ".round");
    rule.round = r.integer(round, path + ".round", 0);
  });
  r.part([&] {
    const auto def = node["default"];
    if (!def) return;
    any = true;
    rule.at.default_text = Reader::mark(def, path + ".default");
    rule.default_text = r.string(def, path + ".default");
  });
  r.part([&] {
    const auto fill = node["fill_last_known"];
    if (!fill) return;
    any = true;
    r.expect_keys(fill, path + ".fill_last_known", {"max_age"});
    if (!fill["max_age"]) r.error(fill, path + ".fill_last_known", "expected max_age, e.g. {max_age: 10m}");
    rule.at.fill_last_known = Reader::mark(fill, path + ".fill_last_known");
    rule.fill_max_age_ms = r.duration_ms(fill["max_age"], path + ".fill_last_known.max_age");
  });
  r.part([&] {
    const auto ts = node["timestamp"];
    if (!ts) return;
    any = true;
    r.expect_keys(ts, path + ".timestamp", {"max_future", "max_late"});
    TimestampRule tr;
    if (ts["max_future"]) tr.max_future_ms = r.duration_ms(ts["max_future"], path + ".timestamp.max_future");
    if (ts["max_late"]) tr.max_late_ms = r.duration_ms(ts["max_late"], path + ".timestamp.max_late");
    if (!tr.max_future_ms && !tr.max_late_ms) r.error(ts, path + ".timestamp", "expected max_future, max_late or both");
    rule.at.timestamp = Reader::mark(ts, path + ".timestamp");
    rule.timestamp = tr;
  });
  if (!any) {
    r.error(node, path,
            "a rule needs at least one of required, range, allowed, regex, convert, round, default, "
            "fill_last_known, timestamp");
  }
  if (check) {
    std::vector<std::string> problems;
    check(p, rule, problems);
    r.add(std::move(problems));
  }
  p.rules.push_back(std::move(rule));
}

// A JSON pointer as RFC 6901 writes it: "" (the whole document) or /a/0/b.
std::string json_pointer(Reader& r, const YAML::Node& node, const std::string& path) {
  auto text = r.string(node, path);
  try {
    (void)nlohmann::json::json_pointer(text);
  } catch (const nlohmann::json::exception&) {
    r.error(node, path, fmt::format("expected a JSON pointer like /features or /hourly/time, got '{}'", text));
  }
  return text;
}

// "60/min", "1/s", "500/h": requests a minute.
double quota_per_min(Reader& r, const YAML::Node& node, const std::string& path) {
  const auto text = r.string(node, path);
  static const re2::RE2 re(R"(\s*([0-9]+(?:\.[0-9]+)?)\s*/\s*(s|min|h)\s*)");
  std::string n;
  std::string unit;
  if (!re2::RE2::FullMatch(text, re, &n, &unit) || std::stod(n) <= 0) {
    r.error(node, path, fmt::format("expected requests per unit of time like 60/min, 2/s or 500/h, got '{}'", text));
  }
  const double v = std::stod(n);
  return unit == "s" ? v * 60 : unit == "h" ? v / 60 : v;
}

// source: {http_poll: {...}}: the API starling-extract polls (services/extract/README.md).
void parse_source(Reader& r, PipelineConfig& p, const YAML::Node& source) {
  r.expect_keys(source, "source", {"http_poll"});
  const auto poll = source["http_poll"];
  if (!poll) r.error(source, "source", "expected http_poll, e.g. {http_poll: {url: http://..., every: 1h}}");
  const std::string at = "source.http_poll";
  r.expect_keys(poll, at,
                {"url", "every", "cron", "each", "headers", "auth", "records", "columns", "map", "paginate", "cursor",
                 "lookback", "window", "start", "quota"});
  HttpPollSource s;
  s.line = poll.Mark().line + 1;
  r.part([&] {
    if (!poll["url"]) r.error(poll, at + ".url", "missing; the API's http:// URL, with ${since} and ${until}");
    s.url = r.string(poll["url"], at + ".url");
    if (!s.url.starts_with("http://") && !s.url.starts_with("https://"))
      r.error(poll["url"], at + ".url",
              fmt::format("expected an http:// or https:// URL, got '{}'", excerpt(s.url, 80)));
  });
  r.part([&] {
    if (poll["every"] && poll["cron"])
      r.error(poll["cron"], at + ".cron", "give every (a duration) or cron (a schedule), not both");
    if (poll["cron"]) {
      auto c = parse_cron(r.string(poll["cron"], at + ".cron"));
      if (!c) r.error(poll["cron"], at + ".cron", c.error().message);
      s.cron = std::move(*c);
      return;
    }
    if (!poll["every"]) r.error(poll, at + ".every", "missing; how often to poll, e.g. 1h, or a cron: schedule");
    s.every_ms = r.duration_ms(poll["every"], at + ".every");
    if (s.every_ms <= 0) r.error(poll["every"], at + ".every", "expected a positive duration");
  });
  r.part([&] {
    const auto each = poll["each"];
    if (!each) return;
    if (!each.IsMap() || each.size() == 0)
      r.error(each, at + ".each", "expected a mapping of name: [values], e.g. {station: [KSEA, KBFI]}");
    std::size_t combinations = 1;
    for (const auto& kv : each) {
      r.part([&] {
        const auto name = kv.first.as<std::string>();
        const auto path = fmt::format("{}.each.{}", at, name);
        static const re2::RE2 ident("[A-Za-z_][A-Za-z0-9_]*");
        if (!re2::RE2::FullMatch(name, ident) || name == "since" || name == "until")
          r.error(kv.first, path, "expected a name of letters, digits and _ (not since or until)");
        if (!kv.second.IsSequence() || kv.second.size() == 0)
          r.error(kv.second, path, "expected a non-empty list of values");
        std::vector<std::string> values;
        values.reserve(kv.second.size());
        for (std::size_t i = 0; i < kv.second.size(); ++i) {
          values.push_back(r.string(kv.second[i], fmt::format("{}[{}]", path, i)));
        }
        if (s.url.find("${" + name + "}") == std::string::npos)
          r.error(kv.first, path, fmt::format("the url has no ${{{}}} to fill in", name));
        combinations *= values.size();
        if (combinations > kMaxEachCombinations)
          r.error(kv.second, path,
                  fmt::format("more than {} combinations of each's values in one window", kMaxEachCombinations));
        s.each.emplace_back(name, std::move(values));
      });
    }
  });
  r.part([&] {
    const auto auth = poll["auth"];
    if (!auth) return;
    r.expect_keys(auth, at + ".auth", {"query", "oauth2"});
    if (const auto q = auth["query"]) {
      if (!q.IsMap() || q.size() == 0)
        r.error(q, at + ".auth.query", "expected a mapping of parameter: value, e.g. {api_key: \"${KEY}\"}");
      for (const auto& kv : q) {
        s.auth_query.emplace_back(kv.first.as<std::string>(),
                                  r.string(kv.second, at + ".auth.query." + kv.first.as<std::string>()));
      }
    }
    if (const auto o = auth["oauth2"]) {
      const auto op = at + ".auth.oauth2";
      r.expect_keys(o, op, {"token_url", "client_id", "client_secret", "scope"});
      HttpPollSource::OAuth2 oauth;
      for (const char* key : {"token_url", "client_id", "client_secret"}) {
        if (!o[key])
          r.error(o, op + "." + key, "missing; OAuth2 client credentials need token_url, client_id and client_secret");
      }
      oauth.token_url = r.string(o["token_url"], op + ".token_url");
      if (!oauth.token_url.starts_with("http://") && !oauth.token_url.starts_with("https://"))
        r.error(o["token_url"], op + ".token_url", "expected an http:// or https:// URL");
      oauth.client_id = r.string(o["client_id"], op + ".client_id");
      oauth.client_secret = r.string(o["client_secret"], op + ".client_secret");
      if (o["scope"]) oauth.scope = r.string(o["scope"], op + ".scope");
      s.oauth2 = std::move(oauth);
    }
  });
  r.part([&] {
    const auto headers = poll["headers"];
    if (!headers) return;
    if (!headers.IsMap()) r.error(headers, at + ".headers", "expected a mapping of header: value");
    for (const auto& kv : headers) {
      const auto name = kv.first.as<std::string>();
      const auto path = fmt::format("{}.headers.{}", at, name);
      static const re2::RE2 token("[!#$%&'*+.^_`|~0-9A-Za-z-]+");
      if (!re2::RE2::FullMatch(name, token)) r.error(kv.first, path, "not an HTTP header name");
      auto value = r.string(kv.second, path);
      if (value.find_first_of("\r\n") != std::string::npos)
        r.error(kv.second, path, "a header value cannot hold a line break");
      s.headers.emplace_back(name, std::move(value));
    }
  });
  r.part([&] {
    if (poll["records"] && poll["columns"])
      r.error(poll["columns"], at + ".columns",
              "give records (an array of objects) or columns (parallel arrays), not both");
    if (!poll["records"] && !poll["columns"])
      r.error(poll, at, "expected records (a JSON pointer to an array of objects) or columns (to an object of arrays)");
    if (poll["records"]) s.records = json_pointer(r, poll["records"], at + ".records");
    if (poll["columns"]) s.columns = json_pointer(r, poll["columns"], at + ".columns");
  });
  r.part([&] {
    const auto map = poll["map"];
    if (!map) return;
    if (!map.IsMap() || map.size() == 0) r.error(map, at + ".map", "expected a mapping of field: JSON pointer");
    std::set<std::string> seen;
    for (const auto& kv : map) {
      r.part([&] {
        const auto path = at + ".map." + kv.first.as<std::string>();
        const auto* f = r.field(p.descriptor, kv.first, path);
        if (!seen.insert(f->name()).second) r.error(kv.first, path, "duplicate field");
        s.map.emplace_back(f->name(), json_pointer(r, kv.second, path));
      });
    }
  });
  r.part([&] {
    const auto paginate = poll["paginate"];
    if (!paginate) return;
    const auto pp = at + ".paginate";
    r.expect_keys(paginate, pp, {"next", "page", "offset", "size", "size_param", "first"});
    const int kinds = (paginate["next"] ? 1 : 0) + (paginate["page"] ? 1 : 0) + (paginate["offset"] ? 1 : 0);
    if (kinds != 1)
      r.error(paginate, pp,
              "expected one of next (a JSON pointer to the next page's URL), page (a page-number parameter) or offset "
              "(a record-offset parameter), e.g. {next: /pagination/next} or {page: page, size: 100}");
    if (paginate["next"]) {
      for (const char* key : {"size", "size_param", "first"}) {
        if (paginate[key]) r.error(paginate[key], pp + "." + key, "only with page or offset");
      }
      s.paging = HttpPollSource::Paging::kNext;
      s.paginate_next = json_pointer(r, paginate["next"], pp + ".next");
      return;
    }
    s.paging = paginate["page"] ? HttpPollSource::Paging::kPage : HttpPollSource::Paging::kOffset;
    const auto param = paginate["page"] ? paginate["page"] : paginate["offset"];
    s.page_param = r.string(param, pp + (paginate["page"] ? ".page" : ".offset"));
    static const re2::RE2 query_name("[A-Za-z0-9_.~-]+");
    if (!re2::RE2::FullMatch(s.page_param, query_name)) r.error(param, pp, "expected a query parameter name");
    if (!paginate["size"])
      r.error(paginate, pp + ".size", "missing; records in a full page (a shorter page is the last)");
    s.page_size = r.integer(paginate["size"], pp + ".size", 1);
    if (s.page_size > 1'000'000) r.error(paginate["size"], pp + ".size", "expected 1 to 1000000 records a page");
    if (paginate["size_param"]) {
      s.size_param = r.string(paginate["size_param"], pp + ".size_param");
      if (!re2::RE2::FullMatch(s.size_param, query_name))
        r.error(paginate["size_param"], pp + ".size_param", "expected a query parameter name");
    }
    if (paginate["first"]) {
      if (!paginate["page"]) r.error(paginate["first"], pp + ".first", "only with page");
      s.page_first = r.integer(paginate["first"], pp + ".first", 0);
    }
  });
  r.part([&] {
    if (!poll["cursor"]) return;
    s.cursor_field = r.field(p.descriptor, poll["cursor"], at + ".cursor");
    s.cursor = s.cursor_field->name();
    if (!is_timestamp(s.cursor_field))
      r.error(poll["cursor"], at + ".cursor", "expected a google.protobuf.Timestamp field");
  });
  r.part([&] {
    if (poll["lookback"]) s.lookback_ms = r.duration_ms(poll["lookback"], at + ".lookback");
  });
  r.part([&] {
    if (!poll["window"]) return;
    s.window_ms = r.duration_ms(poll["window"], at + ".window");
    if (s.window_ms <= s.lookback_ms)
      r.error(poll["window"], at + ".window", "expected a window longer than lookback, or catching up never moves on");
  });
  r.part([&] {
    const auto start = poll["start"];
    if (!start) return;
    const auto text = r.string(start, at + ".start");
    if (auto ago = parse_duration_ms(text)) {
      s.start_ago_ms = ago;
    } else if (auto t = parse_time_ms(text); t && text.find('-') != std::string::npos) {
      s.start_ms = *t;
    } else {
      r.error(start, at + ".start",
              fmt::format("expected an RFC 3339 time (2026-01-01T00:00:00Z) or a duration back from now (7d), got '{}'",
                          text));
    }
  });
  r.part([&] {
    if (poll["quota"]) s.quota_per_min = quota_per_min(r, poll["quota"], at + ".quota");
  });
  if (!s.cursor_field && p.event_time_field && !poll["cursor"]) {
    s.cursor_field = p.event_time_field;
    s.cursor = p.event_time_field->name();
  }
  p.source = std::move(s);
}

}  // namespace

ConfigError::ConfigError(std::vector<std::string> problems)
    : std::runtime_error([&] {
        std::string all;
        for (const auto& p : problems) all += (all.empty() ? "" : "\n") + p;
        return all;
      }()),
      problems_(std::move(problems)) {}

std::string config_problem(const std::string& file, const Mark& at, const std::string& problem) {
  if (at.line > 0) return fmt::format("{}:{}:{}: {}: {}", file, at.line, at.column, at.path, problem);
  return fmt::format("{}: {}: {}", file, at.path, problem);
}

namespace {

// ${NAME} and ${NAME:-default} in every scalar value (not in keys), from the
// environment; "$$" is a literal "$". Done on the parsed tree, so a value
// holding ':' or '#' cannot change the file's structure. A variable that is
// not set and has no default is a problem at its line.
void interpolate(YAML::Node node, const std::string& path, Reader& r, const EnvLookup& env,
                 const std::vector<std::string>& url_placeholders) {
  if (node.IsMap()) {
    for (auto kv : node) interpolate(kv.second, path + "." + kv.first.Scalar(), r, env, url_placeholders);
    return;
  }
  if (node.IsSequence()) {
    for (std::size_t i = 0; i < node.size(); ++i) {
      interpolate(node[i], fmt::format("{}[{}]", path, i), r, env, url_placeholders);
    }
    return;
  }
  if (!node.IsScalar() || node.Scalar().find('$') == std::string::npos) return;
  std::string text = node.Scalar();
  if (path == ".source.http_poll.url") {
    // ${since}, ${until} and each's names are extract's, filled in at each
    // poll: escaped here, so they come out of interpolate_env as written.
    for (const auto& name : url_placeholders) {
      const auto placeholder = fmt::format("${{{}}}", name);
      for (auto pos = text.find(placeholder); pos != std::string::npos; pos = text.find(placeholder, pos + 2)) {
        if (pos > 0 && text[pos - 1] == '$') continue;
        text.insert(pos, "$");
      }
    }
  }
  auto value = interpolate_env(text, env);
  if (!value) {
    r.note(node, path.empty() ? "(top)" : path.substr(1), value.error().message);
    return;
  }
  node = *value;
}

}  // namespace

Result<std::string> interpolate_env(std::string_view text, const EnvLookup& env) {
  static const RE2 name_pattern("[A-Za-z_][A-Za-z0-9_]*");
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '$' || i + 1 == text.size() || (text[i + 1] != '$' && text[i + 1] != '{')) {
      out += text[i];
      continue;
    }
    if (text[i + 1] == '$') {  // $$: a literal $
      out += '$';
      ++i;
      continue;
    }
    const auto close = text.find('}', i + 2);
    if (close == std::string_view::npos) {
      return fail(Errc::kInvalidArgument, fmt::format("'{}' opens ${{ without a closing }}; write $${{ for a literal",
                                                      excerpt(text.substr(i), 40)));
    }
    const auto inner = text.substr(i + 2, close - i - 2);
    const auto dash = inner.find(":-");
    const auto name = inner.substr(0, dash);
    if (!RE2::FullMatch(re2::StringPiece(name.data(), name.size()), name_pattern)) {
      return fail(Errc::kInvalidArgument,
                  fmt::format("${{{}}}: expected ${{NAME}} or ${{NAME:-default}}, NAME of letters, digits and _",
                              excerpt(inner, 40)));
    }
    auto value = env(std::string(name));
    if (!value || (value->empty() && dash != std::string_view::npos)) {
      if (dash == std::string_view::npos) {
        return fail(Errc::kInvalidArgument,
                    fmt::format("${{{}}}: the environment variable {} is not set (set it, or give a default: "
                                "${{{}:-value}})",
                                name, name, name));
      }
      value = std::string(inner.substr(dash + 2));
    }
    out += *value;
    i = close;
  }
  return out;
}

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

PipelineConfig parse_pipeline(const std::string& yaml, const std::string& origin, const RuleCheck& check) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(fmt::format("{}:{}:{}: {}", origin, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  Reader r(origin);
  // The url's own placeholders: the window, and each's names.
  std::vector<std::string> url_placeholders{"since", "until"};
  if (root.IsMap() && root["source"].IsMap() && root["source"]["http_poll"].IsMap() &&
      root["source"]["http_poll"]["each"].IsMap()) {
    for (const auto& kv : root["source"]["http_poll"]["each"]) {
      if (kv.first.IsScalar()) url_placeholders.push_back(kv.first.Scalar());
    }
  }
  interpolate(root, "", r, process_env(), url_placeholders);
  PipelineConfig p;
  p.file = origin;
  // Without the message type nothing else can be checked: those problems end the check.
  const bool typed = r.part([&] {
    if (!root.IsMap()) r.error(root, "(top)", "expected a mapping with pipeline, schema, clean, load");
    r.expect_keys(root, "(top)",
                  {"pipeline", "description", "schema", "keys", "topics", "clean", "load", "saga", "source"});
    r.part([&] {
      if (!root["pipeline"]) r.error(root, "pipeline", "missing; name the pipeline");
      p.name = r.string(root["pipeline"], "pipeline");
      if (!is_identifier(p.name)) r.error(root["pipeline"], "pipeline", "expected letters, digits and _ only");
    });
    const auto schema = root["schema"];
    if (!schema) r.error(root, "schema", "missing; name the Protobuf message, e.g. message: starling.v1.RideTelemetry");
    r.expect_keys(schema, "schema", {"message", "version"});
    if (!schema["message"]) r.error(schema, "schema.message", "missing; name the Protobuf message");
    p.message_type = r.string(schema["message"], "schema.message");
    // Every compiled-in message lives in starling::schemas, one shared
    // library. A binary that names none of its types itself lost it to the
    // linker's --as-needed (hostile_process_test in the release build), and
    // this lookup by name then found nothing: naming one here keeps it.
    (void)v1::Envelope::descriptor();
    p.descriptor = google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(p.message_type);
    if (p.descriptor == nullptr) {
      r.error(schema["message"], "schema.message",
              fmt::format("no Protobuf message '{}' is compiled in; add its .proto under schemas/", p.message_type));
    }
    if (schema["version"]) p.schema_version = static_cast<uint32_t>(r.integer(schema["version"], "schema.version", 1));
  });
  if (!typed) r.finish();

  if (const auto keys = root["keys"]) {
    r.part([&] { r.expect_keys(keys, "keys", {"event_id", "device_id", "event_time"}); });
    r.part([&] {
      if (!keys["event_id"]) return;
      p.event_id_field = r.field(p.descriptor, keys["event_id"], "keys.event_id");
      if (p.event_id_field->cpp_type() != FieldDescriptor::CPPTYPE_STRING)
        r.error(keys["event_id"], "keys.event_id", "expected a string field");
    });
    r.part([&] {
      if (!keys["device_id"]) return;
      p.device_id_field = r.field(p.descriptor, keys["device_id"], "keys.device_id");
      if (p.device_id_field->cpp_type() != FieldDescriptor::CPPTYPE_STRING)
        r.error(keys["device_id"], "keys.device_id", "expected a string field");
    });
    r.part([&] {
      if (!keys["event_time"]) return;
      p.event_time_field = r.field(p.descriptor, keys["event_time"], "keys.event_time");
      if (!is_timestamp(p.event_time_field))
        r.error(keys["event_time"], "keys.event_time", "expected a google.protobuf.Timestamp field");
    });
  }

  if (const auto topics = root["topics"]) {
    r.part([&] {
      r.expect_keys(topics, "topics", {"partitions"});
      if (topics["partitions"])
        p.partitions = static_cast<int>(r.integer(topics["partitions"], "topics.partitions", 1));
    });
  }

  if (const auto clean = root["clean"]) {
    r.part([&] {
      r.expect_keys(clean, "clean", {"rules", "dedupe"});
      if (const auto dedupe = clean["dedupe"]) {
        r.part([&] {
          r.expect_keys(dedupe, "clean.dedupe", {"window"});
          if (!dedupe["window"]) r.error(dedupe, "clean.dedupe", "expected window, e.g. {window: 10m}");
          p.dedupe_window_ms = r.duration_ms(dedupe["window"], "clean.dedupe.window");
          if (p.dedupe_window_ms <= 0) r.error(dedupe["window"], "clean.dedupe.window", "expected a positive duration");
        });
      }
      const auto rules = clean["rules"];
      if (rules && !rules.IsSequence()) r.error(rules, "clean.rules", "expected a list of rules");
      for (std::size_t i = 0; rules && i < rules.size(); ++i) {
        r.part([&] { parse_rule(r, p, rules[i], fmt::format("clean.rules[{}]", i), check); });
      }
    });
  }

  r.part([&] {
    const auto load = root["load"];
    if (!load) r.error(root, "load", "missing; give the sink table and its columns");
    r.expect_keys(load, "load", {"sink", "table", "columns"});
    r.part([&] {
      if (!load["sink"]) return;
      p.sink = r.string(load["sink"], "load.sink");
      if (p.sink != "sqlite" && p.sink != "postgres")
        r.error(load["sink"], "load.sink", fmt::format("expected sqlite or postgres, got '{}'", p.sink));
    });
    r.part([&] {
      if (!load["table"]) r.error(load, "load.table", "missing");
      p.table = r.string(load["table"], "load.table");
      if (!is_identifier(p.table)) r.error(load["table"], "load.table", "expected an identifier: letters, digits, _");
    });
    const auto columns = load["columns"];
    if (!columns || !columns.IsMap() || columns.size() == 0)
      r.error(columns ? columns : load, "load.columns", "expected a mapping of column: field");
    std::set<std::string> seen;
    for (const auto& kv : columns) {
      r.part([&] {
        Column c;
        c.name = kv.first.as<std::string>();
        const auto path = "load.columns." + c.name;
        if (!is_identifier(c.name)) r.error(kv.first, path, "expected an identifier: letters, digits, _");
        if (c.name.starts_with("_starling") || c.name == "event_id" || c.name == "saga_id" || c.name == "seq" ||
            c.name == "event_time_ms" || c.name == "ingest_time_ms")
          r.error(kv.first, path, "this column name is reserved for the envelope columns");
        if (!seen.insert(c.name).second) r.error(kv.first, path, "duplicate column");
        c.field = r.string(kv.second, path);
        c.descriptor = r.field(p.descriptor, kv.second, path);
        if (c.descriptor->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && !is_timestamp(c.descriptor))
          r.error(kv.second, path, "only scalar, enum and google.protobuf.Timestamp fields map to columns");
        p.columns.push_back(std::move(c));
      });
    }
  });

  if (const auto saga = root["saga"]) {
    r.part([&] {
      if (saga["fail_after"]) {
        // Renamed, not aliased: a deadline no longer fails a saga, and a file
        // written for the old meaning should say so to its author.
        r.error(saga["fail_after"], "saga.fail_after",
                "renamed overdue_after: a late saga is now OVERDUE (an alert) and COMPLETES when its events arrive; "
                "set atomic: true to fail a saga whose event the sink refused");
      }
      r.expect_keys(saga, "saga", {"stall_after", "overdue_after", "atomic", "fail_after"});
      if (saga["stall_after"]) p.stall_after_ms = r.duration_ms(saga["stall_after"], "saga.stall_after");
      if (saga["overdue_after"]) p.overdue_after_ms = r.duration_ms(saga["overdue_after"], "saga.overdue_after");
      if (saga["atomic"]) p.saga_atomic = r.boolean(saga["atomic"], "saga.atomic");
      if (p.overdue_after_ms <= p.stall_after_ms)
        r.error(saga, "saga", "overdue_after must be longer than stall_after");
    });
  }
  if (const auto source = root["source"]) {
    // After keys: the cursor defaults to keys.event_time.
    r.part([&] { parse_source(r, p, source); });
  }
  r.finish();
  return p;
}

PipelineConfig load_pipeline(const std::string& path, const RuleCheck& check) {
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("{}: cannot open pipeline file", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_pipeline(ss.str(), path, check);
}

}  // namespace starling
