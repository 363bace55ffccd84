#include "services/extract/backfill.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/files.h"
#include "services/common/ids.h"
#include "services/common/pipeline.h"
#include "services/common/process.h"
#include "services/common/shutdown.h"
#include "services/common/text.h"
#include "services/common/time.h"
#include "services/extract/api_client.h"
#include "services/extract/cursor_store.h"
#include "services/extract/oauth2.h"

namespace starling::extract {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string state_path(const std::string& dir, const std::string& id) {
  return (fs::path(dir) / (id + ".json")).string();
}
std::string control_path(const std::string& dir, const std::string& id) {
  return (fs::path(dir) / (id + ".control")).string();
}

}  // namespace

nlohmann::json backfill_json(const BackfillStatus& s) {
  return {{"id", s.id},
          {"pipeline", s.pipeline},
          {"from", rfc3339(s.from_ms)},
          {"to", rfc3339(s.to_ms)},
          {"from_ms", s.from_ms},
          {"to_ms", s.to_ms},
          {"since_ms", s.since_ms},
          {"state", s.state},
          {"error", s.error},
          {"pid", s.pid},
          {"started_ms", s.started_ms},
          {"updated_ms", s.updated_ms},
          {"pages", s.pages},
          {"records", s.records},
          {"rejected", s.rejected},
          {"windows", s.windows},
          {"failed_polls", s.failed_polls},
          {"fraction", s.fraction()}};
}

namespace {

BackfillStatus from_json(const json& j) {
  BackfillStatus s;
  s.id = j.value("id", "");
  s.pipeline = j.value("pipeline", "");
  s.from_ms = j.value("from_ms", int64_t{0});
  s.to_ms = j.value("to_ms", int64_t{0});
  s.since_ms = j.value("since_ms", int64_t{0});
  s.state = j.value("state", "");
  s.error = j.value("error", "");
  s.pid = j.value("pid", int64_t{0});
  s.started_ms = j.value("started_ms", int64_t{0});
  s.updated_ms = j.value("updated_ms", int64_t{0});
  s.pages = j.value("pages", int64_t{0});
  s.records = j.value("records", int64_t{0});
  s.rejected = j.value("rejected", int64_t{0});
  s.windows = j.value("windows", int64_t{0});
  s.failed_polls = j.value("failed_polls", int64_t{0});
  return s;
}

Status save(const std::string& dir, BackfillStatus& s) {
  s.updated_ms = now_ms();
  return write_file_atomically(state_path(dir, s.id), backfill_json(s).dump(2) + "\n");
}

// The action asked for in the control file (removed once read).
std::string take_control(const std::string& dir, const std::string& id) {
  return take_control_file(control_path(dir, id));
}

bool valid_id(const std::string& id) {
  return !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  }) && id.front() != '.';
}

}  // namespace

double BackfillStatus::fraction() const {
  if (to_ms <= from_ms) return 1;
  return std::clamp(static_cast<double>(since_ms - from_ms) / static_cast<double>(to_ms - from_ms), 0.0, 1.0);
}

Status check_backfill_options(const BackfillOptions& o) {
  if (o.pipeline_file.empty()) return fail(Errc::kInvalidArgument, "--pipeline: expected the pipeline's YAML file");
  if (!fs::exists(o.pipeline_file)) {
    return fail(Errc::kInvalidArgument, fmt::format("--pipeline {}: no such file", o.pipeline_file));
  }
  if (!o.id.empty() && !valid_id(o.id)) {
    return fail(Errc::kInvalidArgument,
                fmt::format("--id '{}': expected 1 to 128 letters, digits, '-', '_' or '.'", excerpt(o.id, 40)));
  }
  if (o.from_ms <= 0 || o.to_ms <= 0) {
    return fail(Errc::kInvalidArgument, "--from and --to: expected RFC 3339 times, e.g. 2026-11-01T00:00:00Z");
  }
  if (o.from_ms >= o.to_ms) {
    return fail(Errc::kInvalidArgument, fmt::format("--from {} is not before --to {}: the range is empty",
                                                    rfc3339(o.from_ms), rfc3339(o.to_ms)));
  }
  if (o.to_ms > now_ms()) {
    return fail(Errc::kInvalidArgument,
                fmt::format("--to {} is in the future: a backfill pulls the past; live polling covers what comes",
                            rfc3339(o.to_ms)));
  }
  return {};
}

Result<BackfillStatus> read_backfill_status(const std::string& state_dir, const std::string& id) {
  if (!valid_id(id)) return fail(Errc::kInvalidArgument, fmt::format("'{}' is not a backfill id", excerpt(id, 40)));
  std::ifstream in(state_path(state_dir, id));
  if (!in) {
    return fail(Errc::kNotFound, fmt::format("no backfill {} in {} (--state-dir)", id, state_dir));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const auto j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return fail(Errc::kInternal, fmt::format("{} is corrupt", state_path(state_dir, id)));
  return from_json(j);
}

bool backfill_process_alive(const BackfillStatus& s) { return process_alive(s.pid); }

Status control_backfill(const std::string& state_dir, const std::string& id, const std::string& command) {
  if (command != "pause" && command != "resume" && command != "cancel") {
    return fail(Errc::kInvalidArgument, fmt::format("expected pause, resume or cancel; got '{}'", command));
  }
  auto s = read_backfill_status(state_dir, id);
  if (!s) return std::unexpected(s.error());
  if (s->state == "done" || s->state == "cancelled") {
    return fail(Errc::kInvalidArgument, fmt::format("backfill {} is {} already", id, s->state));
  }
  if (!backfill_process_alive(*s)) {
    return fail(Errc::kUnavailable,
                fmt::format("backfill {}: its process {} is not running; run the same `starling extract backfill "
                            "--id {} ...` again to go on from its last window",
                            id, s->pid, id));
  }
  return write_file_atomically(control_path(state_dir, id), command + "\n");
}

Result<BackfillStatus> run_backfill(const BackfillOptions& o,
                                    const std::function<void(const BackfillStatus&)>& progress,
                                    const std::function<bool()>& stop) {
  if (auto st = check_backfill_options(o); !st) return std::unexpected(st.error());
  PipelineConfig pipeline;
  try {
    pipeline = load_pipeline(o.pipeline_file);
  } catch (const std::exception& e) {
    return fail(Errc::kInvalidArgument, e.what());
  }
  if (!pipeline.source) {
    return fail(
        Errc::kInvalidArgument,
        fmt::format("--pipeline {}: declares no source: http_poll: block; nothing to backfill", o.pipeline_file));
  }
  std::error_code ec;
  fs::create_directories(o.state_dir, ec);
  if (ec) return fail(Errc::kIo, fmt::format("--state-dir {}: {}", o.state_dir, ec.message()));

  BackfillStatus s;
  s.id = o.id.empty() ? "backfill-" + random_id() : o.id;
  if (auto old = read_backfill_status(o.state_dir, s.id)) {
    // The same --id again: go on, if it is the same range and nobody runs it.
    if (old->state == "done" || old->state == "cancelled") {
      return fail(Errc::kInvalidArgument, fmt::format("backfill {} is {} already", s.id, old->state));
    }
    if (old->pid != ::getpid() && backfill_process_alive(*old)) {
      return fail(Errc::kUnavailable, fmt::format("backfill {} is running in process {}", s.id, old->pid));
    }
    if (old->pipeline != pipeline.name || old->from_ms != o.from_ms || old->to_ms != o.to_ms) {
      return fail(Errc::kInvalidArgument,
                  fmt::format("backfill {} is pipeline {} from {} to {}; give the same to go on with it, or a new --id",
                              s.id, old->pipeline, rfc3339(old->from_ms), rfc3339(old->to_ms)));
    }
    s = *old;
    s.error.clear();
  } else {
    s.started_ms = now_ms();
    s.since_ms = o.from_ms;
  }
  s.pipeline = pipeline.name;
  s.from_ms = o.from_ms;
  s.to_ms = o.to_ms;
  s.pid = ::getpid();
  s.state = "running";
  ::unlink(control_path(o.state_dir, s.id).c_str());  // an order for a process that is gone
  if (auto st = save(o.state_dir, s); !st) return std::unexpected(st.error());

  auto store = CursorStore::open((fs::path(o.state_dir) / s.id / "cursor").string());
  if (!store) return std::unexpected(store.error());
  const kafka::KafkaOptions kopts{o.kafka, "starling-backfill", o.kafka_properties.values, o.kafka_properties.origins};
  auto producer =
      kafka::KafkaProducer::create(kopts, {.queue_full_wait = std::chrono::seconds(60),
                                           .topics = {pipeline.raw_topic(), pipeline.rejected_topic(), kSagaTopic}});
  if (!producer) return std::unexpected(producer.error());
  auto options = o.extract;
  options.backfill = BackfillRange{s.id, o.from_ms, o.to_ms};
  Extractor extractor(pipeline, **producer, **store, fmt::format("starling-backfill-{}", ::getpid()), options,
                      http_get(o.tls), stop, http_post(o.tls));

  // Waits up to `d`, taking orders; false when stopped or cancelled.
  std::string order;
  auto wait = [&](std::chrono::milliseconds d) {
    return sleep_unless(d, [&] {
      if (auto a = take_control(o.state_dir, s.id); !a.empty()) order = a;
      return stop() || order == "cancel";
    });
  };
  auto finish = [&](const std::string& state) -> Result<BackfillStatus> {
    s.state = state;
    if (auto st = save(o.state_dir, s); !st) return std::unexpected(st.error());
    progress(s);
    (void)(*producer)->flush(std::chrono::seconds(5));
    return s;
  };
  auto backoff = options.client.backoff_base;
  while (true) {
    if (auto a = take_control(o.state_dir, s.id); !a.empty()) order = a;
    if (order == "pause") {
      s.state = "paused";
      (void)save(o.state_dir, s);
      progress(s);
      while (order == "pause" && wait(std::chrono::milliseconds(200))) progress(s);
      if (order == "resume") order.clear();
      s.state = "running";
      (void)save(o.state_dir, s);
    }
    if (order == "cancel") {
      // Close the saga over what was pulled, so the coordinator can complete it.
      if (auto r = extractor.close_backfill(/*cancelled=*/true); !r) {
        s.error = r.error().message;
        return finish("failed");
      }
      return finish("cancelled");
    }
    if (stop()) return finish("interrupted");
    auto r = extractor.poll(now_ms());
    if (r) {
      backoff = options.client.backoff_base;
      s.error.clear();
      s.pages += r->pages;
      s.records += static_cast<int64_t>(r->records);
      s.rejected += static_cast<int64_t>(r->rejected);
      if (r->pages > 0) ++s.windows;
      s.since_ms = r->done ? s.to_ms : r->next_since_ms;
      if (r->done) return finish("done");
      (void)save(o.state_dir, s);
      progress(s);
      continue;
    }
    if (r.error().kind == PollFailure::kStopped) continue;  // stop() ends it above
    // The API down, Kafka away: the window is redone after a back-off, as long
    // as it takes (the operator sees why in status, and may cancel).
    ++s.failed_polls;
    s.error = r.error().message;
    (void)save(o.state_dir, s);
    progress(s);
    if (!wait(backoff)) continue;
    backoff = std::min(backoff * 2, options.client.backoff_max);
  }
}

}  // namespace starling::extract
