#pragma once
// A pipeline definition (pipelines/<name>.yaml): its Protobuf type, topics,
// cleaning rules, sink mapping and saga deadlines. Fields are named, and found
// through Protobuf reflection, so a new pipeline needs no C++.
//
// This is the typed config every stage reads. The rules are parsed here (keys,
// value types, field names) but not judged: what a rule means (which field
// types it takes, units, regex syntax, bounds) is the clean stage's, checked by
// services/clean/rule_config.h, which `starling check` and starling-clean pass
// in as the RuleCheck.

#include <google/protobuf/descriptor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "services/common/cron.h"
#include "services/common/error.h"

namespace starling {

/// Thrown by load_pipeline. Each problem is "file:line:column: path: problem";
/// what() lists every problem found, one per line.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(const std::string& problem) : ConfigError(std::vector<std::string>{problem}) {}
  explicit ConfigError(std::vector<std::string> problems);
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  std::vector<std::string> problems_;
};

/// Where a value stands in the pipeline file, for messages.
struct Mark {
  int line = 0;  // 1-based; 0 when not known
  int column = 0;
  std::string path;  // "clean.rules[2].range.min"
};

/// A problem as every problem of a pipeline file is written:
/// "file:line:column: path: problem" ("file: path: problem" without a line).
std::string config_problem(const std::string& file, const Mark& at, const std::string& problem);

struct RangeRule {
  std::optional<double> min;
  std::optional<double> max;
  bool min_inclusive = true;
  bool max_inclusive = true;
};

/// A unit conversion as written ({from: mph, to: km/h}); the clean stage knows the units.
struct ConvertRule {
  std::string from;
  std::string to;
};

/// Timestamp sanity, relative to the envelope's ingest time.
struct TimestampRule {
  std::optional<int64_t> max_future_ms;  // clock skew a device may have
  std::optional<int64_t> max_late_ms;    // how old an event may arrive
};

/// Everything the YAML says about one field, as written. The clean stage
/// checks what it means (services/clean/rule_config.h) and applies the parts
/// in a fixed order (see services/clean/README.md): fill (last known, then
/// default), convert, round, then the checks required, range, allowed, regex,
/// timestamp.
struct FieldRule {
  std::string field;
  const google::protobuf::FieldDescriptor* descriptor = nullptr;
  bool required = false;
  std::optional<RangeRule> range;
  std::vector<std::string> allowed;  // enum value names, strings or integers, as text
  std::optional<std::string> regex;  // RE2 syntax; must match the whole value
  std::optional<ConvertRule> convert;
  std::optional<int64_t> round;             // decimals
  std::optional<std::string> default_text;  // the default value, as text
  std::optional<int64_t> fill_max_age_ms;   // fill from the device's last known value this young
  std::optional<TimestampRule> timestamp;
  int line = 0;  // where the rule stands in the YAML, for messages

  /// Where each part stands, for the clean stage's messages.
  struct Marks {
    Mark required, range, allowed, regex, convert, convert_from, convert_to, round, default_text, fill_last_known,
        timestamp;
    std::vector<Mark> allowed_items;  // one per entry of `allowed`
  } at;
};

struct Column {
  std::string name;
  std::string field;
  const google::protobuf::FieldDescriptor* descriptor = nullptr;
};

/// `source: http_poll:` (services/extract/README.md): an external API that
/// starling-extract polls on a schedule. ${ENV} in the url and headers is
/// resolved at load like any value; ${since} and ${until} (the window, RFC
/// 3339) are kept for extract to fill in at each poll.
/// The most combinations of a source's each: values in one window.
inline constexpr std::size_t kMaxEachCombinations = 1000;

struct HttpPollSource {
  std::string url;
  int64_t every_ms = 0;              // between polls at the live edge; 0 with a cron schedule
  std::optional<CronSchedule> cron;  // or polls at these minutes (UTC)
  std::vector<std::pair<std::string, std::string>> headers;
  // Exactly one: a JSON pointer to an array of record objects, or to an
  // object of parallel arrays zipped into records (Open-Meteo's shape).
  std::string records;
  std::string columns;
  // field -> JSON pointer into one record (the array's element; in the
  // columns shape, an object of one value per array). Unmapped: the
  // record's own keys, as a device sends them.
  std::vector<std::pair<std::string, std::string>> map;
  // Pages of one window: by a link in the body (next), by a page number
  // (page) or a record offset (offset) in the query; a page with fewer
  // records than page_size is the last (page and offset).
  enum class Paging { kNone, kNext, kPage, kOffset };
  Paging paging = Paging::kNone;
  std::string paginate_next;  // kNext: JSON pointer to the next page's URL; "" or null there ends the window
  std::string page_param;     // kPage, kOffset: the query parameter
  int64_t page_first = 1;     // kPage: the first page's number
  int64_t page_size = 0;      // kPage, kOffset: records per full page
  std::string size_param;     // sent with page_size when set (limit=100)
  // ${name} in the url takes each value in turn: one chain of pages per
  // combination (the product of the lists), all in the same window.
  std::vector<std::pair<std::string, std::vector<std::string>>> each;
  // Auth besides headers: parameters added to every request's query (an API
  // key; logs show them as ***), or OAuth2 client credentials.
  std::vector<std::pair<std::string, std::string>> auth_query;
  struct OAuth2 {
    std::string token_url;
    std::string client_id;
    std::string client_secret;
    std::string scope;
  };
  std::optional<OAuth2> oauth2;
  std::string cursor;  // the Timestamp field whose newest value advances `since` at the live edge
  const google::protobuf::FieldDescriptor* cursor_field = nullptr;
  int64_t lookback_ms = 0;              // each window starts this much before the last one ended
  int64_t window_ms = 0;                // the longest window; catching up goes window by window (0: up to now)
  std::optional<int64_t> start_ms;      // the first window's start (RFC 3339); default: now - every
  std::optional<int64_t> start_ago_ms;  // or a duration back from the first poll
  double quota_per_min = 0;             // requests a minute at most (0: no limit)
  int line = 0;
};

struct PipelineConfig {
  std::string name;
  std::string file;
  std::string message_type;
  uint32_t schema_version = 1;
  const google::protobuf::Descriptor* descriptor = nullptr;

  // Fields of the message with a special meaning; empty when not used.
  const google::protobuf::FieldDescriptor* event_id_field = nullptr;
  const google::protobuf::FieldDescriptor* device_id_field = nullptr;
  const google::protobuf::FieldDescriptor* event_time_field = nullptr;

  int partitions = 3;
  std::vector<FieldRule> rules;
  /// Drop an event whose event id was seen this recently (by ingest time) on
  /// the same device's partition; 0: no dedupe.
  int64_t dedupe_window_ms = 0;

  std::string sink = "sqlite";
  std::string table;
  std::vector<Column> columns;

  // saga: deadlines are alerts (STALLED, OVERDUE); atomic makes a seq the
  // sink refused fail the whole saga, whose rows the loader then removes.
  int64_t stall_after_ms = 60'000;
  int64_t overdue_after_ms = 300'000;
  bool saga_atomic = false;

  /// Where starling-extract pulls this pipeline's records from; none: only pushed.
  std::optional<HttpPollSource> source;

  std::string raw_topic() const { return name + ".raw"; }
  std::string clean_topic() const { return name + ".clean"; }
  std::string rejected_topic() const { return name + ".rejected"; }
  std::string dlq_topic() const { return name + ".dlq"; }  // rows the sink refused
  // What `starling replay` re-publishes, consumed beside the live topic:
  // a replay of the clean stage's input, and one of the load stage's.
  std::string raw_replay_topic() const { return name + ".raw.replay"; }
  std::string clean_replay_topic() const { return name + ".clean.replay"; }
  // The consumer groups of the pipeline's stages, and what each reads.
  std::string clean_group() const { return "starling-clean." + name; }
  std::string load_group() const { return "starling-load." + name; }
  std::vector<std::string> clean_inputs() const { return {raw_topic(), raw_replay_topic()}; }
  std::vector<std::string> load_inputs() const;
};

/// Topics every deployment has, whatever its pipelines.
inline constexpr const char* kSagaTopic = "starling.saga";
inline constexpr const char* kOutcomeTopic = "starling.saga.outcomes";
/// starling-saga's consumer group (one for every pipeline: it reads kSagaTopic).
inline constexpr const char* kSagaGroup = "starling-saga";

inline std::vector<std::string> PipelineConfig::load_inputs() const {
  return {clean_topic(), clean_replay_topic(), kOutcomeTopic};
}

/// A stage's own check of what one parsed rule means (the clean stage's is
/// clean::check_rule). It appends its problems, each written with
/// config_problem; they are listed right after that rule's parse problems, so
/// every problem of a file comes in file order.
using RuleCheck =
    std::function<void(const PipelineConfig& p, const FieldRule& rule, std::vector<std::string>& problems)>;

/// Reads and parses a pipeline file, then `check` each rule. Throws
/// ConfigError naming every problem's line.
PipelineConfig load_pipeline(const std::string& path, const RuleCheck& check = nullptr);

/// An environment variable's value, or nullopt when it is not set.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
/// This process's environment.
EnvLookup process_env();
/// `text` with ${NAME} replaced by the variable's value and ${NAME:-default}
/// by its value, or the default when it is unset or empty; "$$" is a literal
/// "$". Pipeline files go through it, value by value (secrets such as API
/// keys come from the environment, never from YAML). An error names the
/// variable and says what to do.
Result<std::string> interpolate_env(std::string_view text, const EnvLookup& env);

/// Parses YAML text; `origin` names it in error messages.
PipelineConfig parse_pipeline(const std::string& yaml, const std::string& origin, const RuleCheck& check = nullptr);

}  // namespace starling
