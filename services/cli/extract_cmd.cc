#include "services/cli/extract_cmd.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "services/cli/groups.h"
#include "services/common/progress.h"
#include "services/common/shutdown.h"
#include "services/common/text.h"
#include "services/common/time.h"

namespace starling::cli {

namespace {

constexpr int64_t kHourMs = 3'600'000;

std::string line(const extract::BackfillStatus& s) {
  return fmt::format("{:.0f}% of {} .. {}: {} windows, {} pages, {} records, {} rejected at extract",
                     100 * s.fraction(), rfc3339(s.from_ms), rfc3339(s.to_ms), s.windows, s.pages, s.records,
                     s.rejected);
}

nlohmann::json status_json(const extract::BackfillStatus& s, bool alive) {
  auto j = extract::backfill_json(s);
  j["next_window"] = rfc3339(s.since_ms);
  j["process_alive"] = alive;
  return j;
}

int control(const ExtractArgs& a) {
  if (a.command != "status") {
    if (auto st = extract::control_backfill(a.opts.state_dir, a.id, a.command); !st) {
      fmt::print(stderr, "error: {}\n", st.error().message);
      return 1;
    }
    fmt::print("backfill {}: {} requested (taken between windows)\n", a.id, a.command);
    return 0;
  }
  auto s = extract::read_backfill_status(a.opts.state_dir, a.id);
  if (!s) {
    fmt::print(stderr, "error: {}\n", s.error().message);
    return 1;
  }
  const bool alive = extract::backfill_process_alive(*s);
  if (a.as_json) {
    fmt::print("{}\n", status_json(*s, alive).dump(2));
    return 0;
  }
  const bool gone = (s->state == "running" || s->state == "paused") && !alive;
  fmt::print("backfill {}  (pipeline {}, saga {})\n", s->id, s->pipeline, s->id);
  fmt::print("state: {}{}  pid {}  started {}  updated {}\n", s->state,
             gone ? " (its process is gone: run the same command with --id " + s->id + " to go on)" : "", s->pid,
             rfc3339(s->started_ms), rfc3339(s->updated_ms));
  fmt::print("{}\n", line(*s));
  fmt::print("next window from {}; {} failed polls\n", rfc3339(s->since_ms), s->failed_polls);
  if (!s->error.empty()) fmt::print("last error: {}\n", s->error);
  fmt::print("the saga: `starling sagas show {}`\n", s->id);
  return 0;
}

}  // namespace

void add_extract_command(CLI::App& app, ExtractArgs& a) {
  a.extract = app.add_subcommand("extract", "Pull sources beside starling-extract: backfill a past range");
  a.extract->require_subcommand(1, 1);
  a.backfill = a.extract->add_subcommand(
      "backfill",
      "Pull a past range of a pipeline's source (its source: http_poll: block) as one saga of kind REPLAY, window "
      "by window, beside live polling (which keeps its own cursor). Rows end exactly once: pulled records keep the "
      "event ids live polling gives them.\n"
      "  starling extract backfill --pipeline pipelines/weather.yaml --from 2026-11-01T00:00:00Z --to "
      "2026-11-08T00:00:00Z\n"
      "  starling extract backfill status ID | pause ID | resume ID | cancel ID\n"
      "Killed or stopped with Ctrl-C, the same command with --id ID goes on from its last window.");
  a.opts.kafka = "127.0.0.1:9092";
  auto common = [&](CLI::App* cmd) {
    cmd->add_option("--state-dir", a.opts.state_dir, "Where each backfill keeps <id>.json, <id>.control and its cursor")
        ->capture_default_str()
        ->envname("STARLING_BACKFILL_STATE_DIR");
    cmd->add_flag("--json", a.as_json, "Print JSON instead of text");
  };
  common(a.backfill);
  a.backfill->add_option("--pipeline", a.opts.pipeline_file, "The pipeline's YAML file (with a source block)");
  a.backfill->add_option("--from", a.from, "Start of the range (RFC 3339)");
  a.backfill->add_option("--to", a.to, "End of the range, exclusive (RFC 3339; not in the future)");
  a.backfill->add_option("--id", a.opts.id,
                         "The backfill's id and saga id (default: backfill-<random>); the same id "
                         "goes on with a run that was stopped");
  a.backfill->add_option("--kafka", a.opts.kafka, "Bootstrap servers")
      ->capture_default_str()
      ->envname("STARLING_KAFKA_BOOTSTRAP");
  a.backfill->add_option("--api-ca-file", a.opts.tls.ca_file, "PEM CAs for https:// APIs (default: the system's)")
      ->envname("STARLING_EXTRACT_CA_FILE")
      ->check(CLI::ExistingFile);
  add_kafka_property_flags(*a.backfill, a.kafka_property_flags, a.kafka_properties_file);
  for (const auto& [name, help] :
       {std::pair{"status", "Progress of a backfill: range done, windows, records, the last error"},
        std::pair{"pause", "Pause a running backfill after its current window"},
        std::pair{"resume", "Resume a paused backfill"},
        std::pair{"cancel", "Stop a backfill after its current window; its saga closes over what was pulled"}}) {
    auto* sub = a.backfill->add_subcommand(name, help);
    sub->add_option("id", a.id, "The backfill id")->required();
    sub->fallthrough();
    common(sub);
    a.controls.push_back(sub);
  }
  a.backfill->require_subcommand(0, 1);
}

int cmd_extract(ExtractArgs& a) {
  for (auto* sub : a.controls) {
    if (*sub) a.command = sub->get_name();
  }
  if (!a.command.empty()) return control(a);
  auto bad = [](const std::string& message) {
    fmt::print(stderr, "error: {}\n", message);
    return 2;
  };
  if (a.from.empty() || a.to.empty()) return bad("--from and --to are required: the range to pull");
  auto from = parse_time_ms(a.from);
  if (!from)
    return bad(fmt::format("--from '{}': expected an RFC 3339 time like 2026-11-01T00:00:00Z", excerpt(a.from)));
  auto to = parse_time_ms(a.to);
  if (!to) return bad(fmt::format("--to '{}': expected an RFC 3339 time like 2026-11-08T00:00:00Z", excerpt(a.to)));
  a.opts.from_ms = *from;
  a.opts.to_ms = *to;
  a.opts.kafka_properties = cli_kafka_properties(a.kafka_properties_file, a.kafka_property_flags);
  if (auto st = extract::check_backfill_options(a.opts); !st) return bad(st.error().message);
  const auto hours = static_cast<uint64_t>((*to - *from + kHourMs - 1) / kHourMs);
  Progress bar("backfilling (hours of the range)");
  bool announced = false;
  auto res = extract::run_backfill(
      a.opts,
      [&](const extract::BackfillStatus& s) {
        if (!announced && !a.as_json) {
          announced = true;
          fmt::print(stderr,
                     "backfill {}: pipeline {}, {} .. {}; `starling extract backfill status {}` from another "
                     "terminal\n",
                     s.id, s.pipeline, rfc3339(s.from_ms), rfc3339(s.to_ms), s.id);
        }
        const auto done = static_cast<uint64_t>(s.fraction() * static_cast<double>(hours));
        std::string note = fmt::format("{} records", s.records);
        if (s.state == "paused") note += ", paused";
        if (!s.error.empty()) note += ", retrying: " + excerpt(s.error, 80);
        bar(done, hours, note);
      },
      [] { return shutdown_requested(); });
  if (!res) {
    fmt::print(stderr, "error: {}\n", res.error().message);
    return res.error().code == Errc::kInvalidArgument ? 2 : 1;
  }
  if (a.as_json) {
    fmt::print("{}\n", status_json(*res, false).dump(2));
  } else {
    fmt::print("backfill {} {}: {}\n", res->id, res->state, line(*res));
    if (res->state == "interrupted") {
      fmt::print("run it again with --id {} to go on from {}\n", res->id, rfc3339(res->since_ms));
    } else {
      fmt::print("follow its saga with `starling sagas show {}`\n", res->id);
    }
  }
  return res->state == "done" || res->state == "cancelled" ? 0 : 1;
}

}  // namespace starling::cli
