#include "services/replay/replay.h"

#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_set>

#include "services/common/files.h"
#include "services/common/ids.h"
#include "services/common/pipeline.h"
#include "services/common/process.h"
#include "services/common/shutdown.h"
#include "services/common/time.h"
#include "services/saga/saga_state.h"
#include "starling/v1/envelope.pb.h"
#include "starling/v1/saga.pb.h"

namespace starling::replay {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kPositionHelp =
    "a time (RFC 3339 like 2026-11-23T10:00:00Z, or Unix ms), an offset in every partition (@N), offsets per "
    "partition (P@N,P@N), 'beginning' or 'end'";
// The original sagas a replay record lists by id; beyond this only the count
// (each replayed event still carries its own origin_saga_id).
constexpr std::size_t kOriginsListed = 1000;

std::string state_path(const std::string& dir, const std::string& id) { return dir + "/" + id + ".json"; }
std::string control_path(const std::string& dir, const std::string& id) { return dir + "/" + id + ".control"; }

// One end of the range: a time, a single offset, offsets per partition, or an end.
struct Position {
  enum Kind { kTime, kOffset, kPerPartition, kBeginning, kEnd } kind = kEnd;
  int64_t value = 0;
  std::map<int32_t, int64_t> offsets;
};

Result<Position> parse_position(const std::string& flag, const std::string& text) {
  auto bad = [&](const std::string& why = {}) {
    return fail(Errc::kInvalidArgument, fmt::format("{}: expected {}; got '{}'{}", flag, kPositionHelp, text,
                                                    why.empty() ? "" : " (" + why + ")"));
  };
  auto number = [](std::string_view s, int64_t& out) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && p == s.data() + s.size() && out >= 0;
  };
  Position pos;
  if (text == "beginning" || text == "earliest") {
    pos.kind = Position::kBeginning;
  } else if (text == "end" || text == "latest") {
    pos.kind = Position::kEnd;
  } else if (text.starts_with("@")) {
    pos.kind = Position::kOffset;
    if (!number(std::string_view(text).substr(1), pos.value)) return bad("an offset is a whole number >= 0");
  } else if (text.find('@') != std::string::npos) {
    pos.kind = Position::kPerPartition;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
      const auto at = item.find('@');
      int64_t p = 0;
      int64_t off = 0;
      if (at == std::string::npos || !number(std::string_view(item).substr(0, at), p) ||
          !number(std::string_view(item).substr(at + 1), off)) {
        return bad("'" + item + "' is not PARTITION@OFFSET");
      }
      pos.offsets[static_cast<int32_t>(p)] = off;
    }
  } else {
    auto t = parse_time_ms(text);
    if (!t) return bad();
    pos.kind = Position::kTime;
    pos.value = *t;
  }
  return pos;
}

std::string topic_for(const ReplayOptions& o, bool replay) {
  const std::string base = o.pipeline + (o.stage == "load" ? ".clean" : ".raw");
  return replay ? base + ".replay" : base;
}

// The action asked for in the control file (removed once read).
std::string take_control(const std::string& dir, const std::string& id) {
  return take_control_file(control_path(dir, id));
}

// The replay saga's INGESTED fact: the total, the children (one per input
// partition, a range of seqs each) and the link to the original sagas.
kafka::OutMessage ingested_fact(const ReplayStatus& s, const std::set<std::string>& origins, bool cancelled) {
  v1::ProgressFact f;
  f.set_saga_id(s.id);
  f.set_pipeline(s.pipeline);
  f.set_step(v1::STEP_INGESTED);
  f.set_kind(v1::SAGA_KIND_REPLAY);
  f.set_total(static_cast<uint32_t>(s.published()));
  f.set_source(fmt::format("starling-replay-{}", ::getpid()));
  f.set_time_ms(now_ms());
  auto* info = f.mutable_replay();
  info->set_stage(s.stage);
  info->set_source_topic(s.source_topic);
  info->set_replay_topic(s.replay_topic);
  info->set_range(s.range + (s.saga.empty() ? "" : " saga " + s.saga));
  for (const auto& p : s.partitions) {
    if (p.published == 0) continue;
    auto* c = info->add_children();
    c->set_name(fmt::format("{}/{}", s.source_topic, p.partition));
    c->set_first(p.first_seq);
    c->set_last(p.first_seq + p.published - 1);
    c->set_from_offset(p.from);
    c->set_to_offset(p.next);
  }
  for (const auto& o : origins) {
    if (static_cast<std::size_t>(info->origin_sagas_size()) >= kOriginsListed) break;
    info->add_origin_sagas(o);
  }
  info->set_origin_saga_count(static_cast<uint32_t>(origins.size()));
  info->set_duplicates_skipped(static_cast<uint32_t>(s.duplicates()));
  info->set_cancelled(cancelled);
  return {kSagaTopic, s.id, f.SerializeAsString(), {}};
}

Status save(const std::string& dir, ReplayStatus& s) {
  s.updated_ms = now_ms();
  return write_file_atomically(state_path(dir, s.id), to_json(s).dump(2) + "\n");
}

// Where a partition's warm-up starts: the first offset whose timestamp is at
// most `warm_up_ms` before the range's first message (`from`), within what the
// partition holds. `from` itself when there is nothing before it.
Result<int64_t> warm_up_start(kafka::TopicReader& reader, const kafka::TopicPartition& tp, int64_t from,
                              int64_t warm_up_ms) {
  auto marks = reader.watermarks(tp);
  if (!marks) return std::unexpected(marks.error());
  const auto [low, high] = *marks;
  if (warm_up_ms <= 0 || from <= low || from >= high) return from;
  if (auto st = reader.assign({{tp, from}}); !st) return std::unexpected(st.error());
  std::optional<int64_t> first_time;
  for (int attempt = 0; attempt < 20 && !first_time; ++attempt) {
    auto msgs = reader.poll_batch(1, std::chrono::milliseconds(500));
    if (!msgs) return std::unexpected(msgs.error());
    for (const auto& m : *msgs) {
      if (m.partition == tp.partition && m.offset >= from) first_time = m.timestamp_ms;
    }
  }
  if (!first_time) {
    return fail(Errc::kUnavailable,
                fmt::format("{}/{}: offset {} could not be read to place the warm-up", tp.topic, tp.partition, from));
  }
  auto off = reader.offset_for_time(tp, *first_time - warm_up_ms);
  if (!off) return std::unexpected(off.error());
  return std::clamp(*off, low, from);
}

}  // namespace

uint64_t ReplayStatus::offsets_total() const {
  uint64_t n = 0;
  for (const auto& p : partitions) n += static_cast<uint64_t>(p.to - p.from);
  return n;
}
uint64_t ReplayStatus::offsets_read() const {
  uint64_t n = 0;
  for (const auto& p : partitions) n += static_cast<uint64_t>(p.next - p.from);
  return n;
}
uint64_t ReplayStatus::published() const {
  uint64_t n = 0;
  for (const auto& p : partitions) n += p.published;
  return n;
}
uint64_t ReplayStatus::duplicates() const {
  uint64_t n = 0;
  for (const auto& p : partitions) n += p.duplicates;
  return n;
}

json to_json(const ReplayStatus& s) {
  json parts = json::array();
  for (const auto& p : s.partitions) {
    parts.push_back({{"partition", p.partition},
                     {"from", p.from},
                     {"to", p.to},
                     {"next", p.next},
                     {"warm_from", p.warm_from},
                     {"warmed", p.warmed},
                     {"first_seq", p.first_seq},
                     {"published", p.published},
                     {"duplicates", p.duplicates},
                     {"filtered", p.filtered},
                     {"unreadable", p.unreadable},
                     {"min_time_ms", p.min_time_ms},
                     {"max_time_ms", p.max_time_ms}});
  }
  json j = {{"id", s.id},
            {"pipeline", s.pipeline},
            {"stage", s.stage},
            {"source_topic", s.source_topic},
            {"replay_topic", s.replay_topic},
            {"range", s.range},
            {"saga", s.saga},
            {"kafka", s.kafka},
            {"state", s.state},
            {"error", s.error},
            {"pid", s.pid},
            {"rate", s.rate},
            {"dry_run", s.dry_run},
            {"started_ms", s.started_ms},
            {"updated_ms", s.updated_ms},
            {"partitions", parts},
            {"offsets_total", s.offsets_total()},
            {"offsets_read", s.offsets_read()},
            {"published", s.published()},
            {"duplicates", s.duplicates()}};
  return j;
}

ReplayStatus status_from_json(const json& j) {
  ReplayStatus s;
  s.id = j.value("id", "");
  s.pipeline = j.value("pipeline", "");
  s.stage = j.value("stage", "");
  s.source_topic = j.value("source_topic", "");
  s.replay_topic = j.value("replay_topic", "");
  s.range = j.value("range", "");
  s.saga = j.value("saga", "");
  s.kafka = j.value("kafka", "");
  s.state = j.value("state", "");
  s.error = j.value("error", "");
  s.pid = j.value("pid", 0);
  s.rate = j.value("rate", 0.0);
  s.dry_run = j.value("dry_run", false);
  s.started_ms = j.value("started_ms", int64_t{0});
  s.updated_ms = j.value("updated_ms", int64_t{0});
  for (const auto& p : j.value("partitions", json::array())) {
    PartitionProgress pp;
    pp.partition = p.value("partition", 0);
    pp.from = p.value("from", int64_t{0});
    pp.to = p.value("to", int64_t{0});
    pp.next = p.value("next", int64_t{0});
    pp.warm_from = p.value("warm_from", pp.from);
    pp.warmed = p.value("warmed", 0u);
    pp.first_seq = p.value("first_seq", 0u);
    pp.published = p.value("published", 0u);
    pp.duplicates = p.value("duplicates", 0u);
    pp.filtered = p.value("filtered", 0u);
    pp.unreadable = p.value("unreadable", 0u);
    pp.min_time_ms = p.value("min_time_ms", int64_t{0});
    pp.max_time_ms = p.value("max_time_ms", int64_t{0});
    s.partitions.push_back(pp);
  }
  return s;
}

Status check_replay_options(const ReplayOptions& o) {
  if (o.pipeline.empty()) return fail(Errc::kInvalidArgument, "--pipeline: expected a pipeline name or YAML file");
  if (o.stage != "clean" && o.stage != "load") {
    return fail(Errc::kInvalidArgument, fmt::format("--stage: expected 'clean' or 'load'; got '{}'", o.stage));
  }
  if (o.rate < 0) return fail(Errc::kInvalidArgument, "--rate: expected events per second >= 0 (0: no limit)");
  if (o.from.empty() && o.saga.empty()) {
    return fail(Errc::kInvalidArgument, fmt::format("--from: required (unless --saga is given): {}", kPositionHelp));
  }
  for (const auto& [flag, text] : {std::pair{"--from", o.from}, std::pair{"--to", o.to}}) {
    if (text.empty()) continue;
    if (auto p = parse_position(flag, text); !p) return std::unexpected(p.error());
  }
  if (o.state_dir.empty()) return fail(Errc::kInvalidArgument, "--state-dir: expected a folder for the replay's state");
  return {};
}

Result<std::vector<PartitionRange>> plan_replay(kafka::TopicReader& reader, const std::string& topic,
                                                const std::string& from_text, const std::string& to_text) {
  auto from = parse_position("--from", from_text.empty() ? "beginning" : from_text);
  if (!from) return std::unexpected(from.error());
  auto to = parse_position("--to", to_text.empty() ? "end" : to_text);
  if (!to) return std::unexpected(to.error());
  if (from->kind == Position::kTime && to->kind == Position::kTime && to->value < from->value) {
    return fail(Errc::kInvalidArgument,
                fmt::format("--to: expected a time after --from ({} is before {})", to_text, from_text));
  }
  auto n = reader.partitions(topic);
  if (!n) return std::unexpected(n.error());
  std::vector<PartitionRange> out;
  for (int32_t p = 0; p < *n; ++p) {
    const kafka::TopicPartition tp{topic, p};
    auto marks = reader.watermarks(tp);
    if (!marks) return std::unexpected(marks.error());
    const auto [low, high] = *marks;
    // Offsets outside what the partition still holds are clamped to it.
    auto resolve = [&](const Position& pos, bool is_from) -> Result<std::optional<int64_t>> {
      switch (pos.kind) {
        case Position::kBeginning:
          return std::optional<int64_t>(low);
        case Position::kEnd:
          return std::optional<int64_t>(high);
        case Position::kOffset:
          return std::optional<int64_t>(std::clamp(pos.value, low, high));
        case Position::kPerPartition: {
          auto it = pos.offsets.find(p);
          if (it == pos.offsets.end())
            return std::optional<int64_t>(is_from ? std::nullopt : std::optional<int64_t>(high));
          return std::optional<int64_t>(std::clamp(it->second, low, high));
        }
        case Position::kTime: {
          auto off = reader.offset_for_time(tp, pos.value);
          if (!off) return std::unexpected(off.error());
          return std::optional<int64_t>(std::clamp(*off, low, high));
        }
      }
      return std::optional<int64_t>();
    };
    auto f = resolve(*from, true);
    if (!f) return std::unexpected(f.error());
    const std::optional<int64_t> begin = *f;
    if (!begin) continue;  // per-partition --from that leaves this partition out
    auto t = resolve(*to, false);
    if (!t) return std::unexpected(t.error());
    const int64_t end = t->value_or(high);
    out.push_back({p, *begin, std::max(*begin, end)});
  }
  for (const auto& [p, off] : from->offsets) {
    if (p < 0 || p >= *n) {
      return fail(Errc::kInvalidArgument, fmt::format("--from: partition {} does not exist ({} has {})", p, topic, *n));
    }
  }
  return out;
}

bool replay_process_alive(const ReplayStatus& s) { return process_alive(s.pid); }

Result<ReplayStatus> read_replay_status(const std::string& state_dir, const std::string& id) {
  std::ifstream in(state_path(state_dir, id));
  if (!in) {
    return fail(Errc::kNotFound, fmt::format("replay {}: no state file {} (is --state-dir the one the replay used?)",
                                             id, state_path(state_dir, id)));
  }
  try {
    return status_from_json(json::parse(in));
  } catch (const std::exception& e) {
    return fail(Errc::kIo, fmt::format("{}: {}", state_path(state_dir, id), e.what()));
  }
}

Status control_replay(const std::string& state_dir, const std::string& id, const std::string& action) {
  if (action != "pause" && action != "resume" && action != "cancel") {
    return fail(Errc::kInvalidArgument, fmt::format("expected pause, resume or cancel; got '{}'", action));
  }
  auto s = read_replay_status(state_dir, id);
  if (!s) return std::unexpected(s.error());
  if (s->state == "published" || s->state == "cancelled" || s->state == "failed" || s->state == "dry-run") {
    return fail(Errc::kInvalidArgument, fmt::format("replay {} is {} already", id, s->state));
  }
  if (replay_process_alive(*s)) return write_file_atomically(control_path(state_dir, id), action + "\n");
  if (action != "cancel") {
    return fail(
        Errc::kUnavailable,
        fmt::format("replay {}: its process {} is gone; `starling replay cancel {}` closes its saga over what it "
                    "published, then run the replay again (replayed events are idempotent)",
                    id, s->pid, id));
  }
  // The process died mid-replay: close the saga over what the state file
  // says was published, so the coordinator can complete it. Events published
  // after the last state write carry seqs beyond that total; they are loaded
  // (idempotently) but not counted.
  auto producer = kafka::KafkaProducer::create({s->kafka, "starling-replay", {}});
  if (!producer) return std::unexpected(producer.error());
  std::set<std::string> origins;  // not known any more: the events carry them
  if (auto st = kafka::produce_all(**producer, {ingested_fact(*s, origins, true)}, std::chrono::seconds(30)); !st) {
    return st;
  }
  s->state = "cancelled";
  s->error = fmt::format("process {} was gone; cancelled by pid {}", s->pid, ::getpid());
  return save(state_dir, *s);
}

Result<ReplayStatus> run_replay(const ReplayOptions& o, const std::function<void(const ReplayStatus&)>& progress) {
  if (auto st = check_replay_options(o); !st) return std::unexpected(st.error());
  std::error_code ec;
  fs::create_directories(o.state_dir, ec);
  if (ec) return fail(Errc::kIo, fmt::format("--state-dir {}: {}", o.state_dir, ec.message()));

  const kafka::KafkaOptions kopts{o.kafka, "starling-replay", o.kafka_properties.values, o.kafka_properties.origins};
  auto reader = kafka::TopicReader::create(kopts);
  if (!reader) return std::unexpected(reader.error());
  ReplayStatus s;
  s.id = !o.id.empty() ? o.id : std::string(saga::kReplaySagaPrefix) + random_id();
  s.pipeline = o.pipeline;
  s.stage = o.stage;
  s.source_topic = topic_for(o, false);
  s.replay_topic = topic_for(o, true);
  s.range = fmt::format("{}..{}", o.from.empty() ? "beginning" : o.from, o.to.empty() ? "end" : o.to);
  s.saga = o.saga;
  s.kafka = o.kafka;
  s.pid = ::getpid();
  s.rate = o.rate;
  s.dry_run = o.dry_run;
  s.started_ms = now_ms();
  s.state = "running";
  auto plan = plan_replay(**reader, s.source_topic, o.from, o.to);
  if (!plan) return std::unexpected(plan.error());
  for (const auto& r : *plan) {
    PartitionProgress part{.partition = r.partition, .from = r.from, .to = r.to, .next = r.from, .warm_from = r.from};
    if (o.stage == "clean" && o.warm_up_ms > 0 && r.from < r.to) {
      auto warm = warm_up_start(**reader, {s.source_topic, r.partition}, r.from, o.warm_up_ms);
      if (!warm) return std::unexpected(warm.error());
      part.warm_from = *warm;
    }
    s.partitions.push_back(part);
  }

  std::unique_ptr<kafka::KafkaProducer> producer;
  if (!o.dry_run) {
    auto p = kafka::KafkaProducer::create(kopts, {.queue_full_wait = std::chrono::seconds(60)});
    if (!p) return std::unexpected(p.error());
    producer = std::move(*p);
    // `starling up` creates it; on another deployment it may be missing.
    // Same partition count: an event's key puts it on the same partition.
    auto n = (*reader)->partitions(s.source_topic);
    if (!n) return std::unexpected(n.error());
    if (auto st = kafka::create_topics(kopts, {{s.replay_topic, *n}}); !st) return std::unexpected(st.error());
  }
  if (auto st = save(o.state_dir, s); !st) return std::unexpected(st.error());
  if (progress) progress(s);

  // Under --rate, small batches keep the pace even; otherwise large ones.
  const std::size_t batch =
      o.rate > 0 ? std::clamp<std::size_t>(static_cast<std::size_t>(o.rate / 10), 1, o.batch) : o.batch;
  std::unordered_set<std::string> seen;  // event ids replayed so far: a repeated id is replayed once
  std::set<std::string> origins;
  uint32_t next_seq = 0;
  auto t0 = std::chrono::steady_clock::now();
  bool cancelled = false;
  auto fail_with = [&](const Error& e) -> Result<ReplayStatus> {
    s.state = "failed";
    s.error = e.message;
    (void)save(o.state_dir, s);
    return std::unexpected(e);
  };

  // Partition by partition, so that each child is one contiguous range of seqs.
  for (auto& part : s.partitions) {
    part.first_seq = next_seq;
    if (part.next >= part.to) continue;
    // The warm-up first (offsets before `from`), then the range.
    int64_t cursor = std::min(part.warm_from, part.next);
    if (auto st = (*reader)->assign({{{s.source_topic, part.partition}, cursor}}); !st) return fail_with(st.error());
    while (part.next < part.to && !cancelled) {
      // Control requests between batches: pause holds here, cancel (or
      // Ctrl-C) ends, and the saga closes over what was published.
      if (shutdown_requested()) {
        cancelled = true;
        break;
      }
      if (auto action = take_control(o.state_dir, s.id); action == "pause") {
        s.state = "paused";
        (void)save(o.state_dir, s);
        if (progress) progress(s);
        const auto paused_at = std::chrono::steady_clock::now();
        for (;;) {
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
          const auto next = take_control(o.state_dir, s.id);
          if (next == "resume") break;
          if (next == "cancel" || shutdown_requested()) {
            cancelled = true;
            break;
          }
        }
        t0 += std::chrono::steady_clock::now() - paused_at;  // the pause does not count against --rate
        if (cancelled) break;
        s.state = "running";
        (void)save(o.state_dir, s);
        if (progress) progress(s);
      } else if (action == "cancel") {
        cancelled = true;
        break;
      }
      auto msgs = (*reader)->poll_batch(batch, std::chrono::milliseconds(500));
      if (!msgs) return fail_with(msgs.error());
      std::vector<kafka::OutMessage> out;
      for (const auto& m : *msgs) {
        if (m.partition != part.partition || m.offset < cursor || m.offset >= part.to) continue;
        cursor = m.offset + 1;
        if (m.offset < part.from) {
          // Warm-up: every readable event (whatever --saga says: the devices'
          // state is built from all of them), in the replay saga's state
          // namespace, outside its seqs.
          v1::Envelope env;
          if (!env.ParseFromString(m.value)) continue;
          env.set_origin_saga_id(env.saga_id());
          env.set_origin_seq(env.seq());
          env.set_saga_id(s.id);
          env.set_seq(0);
          env.set_warm_up(true);
          ++part.warmed;
          out.push_back({s.replay_topic, m.key, env.SerializeAsString(), m.headers});
          continue;
        }
        part.next = m.offset + 1;
        if (part.min_time_ms == 0 || m.timestamp_ms < part.min_time_ms) part.min_time_ms = m.timestamp_ms;
        part.max_time_ms = std::max(part.max_time_ms, m.timestamp_ms);
        v1::Envelope env;
        if (!env.ParseFromString(m.value)) {
          ++part.unreadable;
          continue;
        }
        if ((!o.saga.empty() && env.saga_id() != o.saga) ||
            (!o.event_ids.empty() && !o.event_ids.contains(env.event_id()))) {
          ++part.filtered;
          continue;
        }
        if (!seen.insert(env.event_id()).second) {
          ++part.duplicates;
          continue;
        }
        if (origins.size() < 100'000) origins.insert(env.saga_id());
        // Same event id, payload, times and key; the REPLAY saga's id and
        // seq; the original's kept as the link.
        env.set_origin_saga_id(env.saga_id());
        env.set_origin_seq(env.seq());
        env.set_saga_id(s.id);
        env.set_seq(next_seq++);
        ++part.published;
        out.push_back({s.replay_topic, m.key, env.SerializeAsString(), m.headers});
      }
      if (!out.empty() && producer) {
        if (auto st = kafka::produce_all(*producer, out, std::chrono::seconds(120)); !st) {
          return fail_with(st.error());
        }
      }
      if (auto st = save(o.state_dir, s); !st) return fail_with(st.error());
      if (progress) progress(s);
      if (o.rate > 0 && !o.dry_run) {
        const auto due =
            t0 + std::chrono::microseconds(static_cast<int64_t>(1e6 * static_cast<double>(next_seq) / o.rate));
        std::this_thread::sleep_until(due);
      }
    }
    if (cancelled) break;
  }
  if (o.dry_run) {
    s.state = "dry-run";
  } else {
    // The total is known now: the INGESTED fact lets the saga complete.
    if (auto st = kafka::produce_all(*producer, {ingested_fact(s, origins, cancelled)}, std::chrono::seconds(60));
        !st) {
      return fail_with(st.error());
    }
    s.state = cancelled ? "cancelled" : "published";
  }
  if (auto st = save(o.state_dir, s); !st) return std::unexpected(st.error());
  if (progress) progress(s);
  return s;
}

}  // namespace starling::replay
