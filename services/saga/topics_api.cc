#include "services/saga/topics_api.h"

#include <fmt/format.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <deque>
#include <exception>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "services/common/records.h"
#include "services/common/text.h"
#include "services/common/time.h"
#include "services/saga/saga_state.h"
#include "starling/v1/envelope.pb.h"

namespace starling::saga {

using nlohmann::json;
using Steady = std::chrono::steady_clock;

namespace {

class KafkaTopicSource final : public TopicSource {
 public:
  explicit KafkaTopicSource(std::unique_ptr<kafka::TopicReader> reader) : reader_(std::move(reader)) {}
  Result<int> partitions(const std::string& topic, std::chrono::milliseconds timeout) override {
    return reader_->partitions(topic, timeout);
  }
  Result<std::pair<int64_t, int64_t>> watermarks(const kafka::TopicPartition& tp,
                                                 std::chrono::milliseconds timeout) override {
    return reader_->watermarks(tp, timeout);
  }
  Result<int64_t> offset_for_time(const kafka::TopicPartition& tp, int64_t ts_ms,
                                  std::chrono::milliseconds timeout) override {
    return reader_->offset_for_time(tp, ts_ms, timeout);
  }
  Status assign(const std::map<kafka::TopicPartition, int64_t>& starts) override { return reader_->assign(starts); }
  Result<std::vector<kafka::InMessage>> poll_batch(std::size_t max, std::chrono::milliseconds timeout) override {
    return reader_->poll_batch(max, timeout);
  }

 private:
  std::unique_ptr<kafka::TopicReader> reader_;
};

HttpResponse bad_param(const std::string& name, const std::string& message) {
  return json_error(400, "invalid_parameter", name + ": " + message, name);
}

std::string param(const HttpRequest& req, const std::string& name) {
  auto it = req.query.find(name);
  return it == req.query.end() ? std::string{} : it->second;
}

// An integer parameter in [lo, hi], `fallback` when absent.
Result<std::size_t> size_param(const HttpRequest& req, const std::string& name, std::size_t fallback, std::size_t lo,
                               std::size_t hi) {
  const auto text = param(req, name);
  if (text.empty()) return fallback;
  std::size_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || p != text.data() + text.size() || v < lo || v > hi) {
    return fail(Errc::kInvalidArgument,
                fmt::format("expected an integer from {} to {}, got '{}'", lo, hi, excerpt(text, 32)));
  }
  return v;
}

Result<std::optional<int64_t>> time_param(const HttpRequest& req, const std::string& name, int64_t now) {
  const auto text = param(req, name);
  if (text.empty()) return std::optional<int64_t>{};
  auto t = parse_time_param(text, now);
  if (!t) {
    return fail(Errc::kInvalidArgument, fmt::format("'{}' is not an RFC 3339 time (2026-11-23T10:00:00Z), Unix ms, or "
                                                    "a duration back from now (90s, 10m, 2h, 1d)",
                                                    excerpt(text, 64)));
  }
  return t;
}

// Where a record was read.
struct At {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;
};

At at_of(const kafka::InMessage& m) { return {m.topic, m.partition, m.offset, m.timestamp_ms}; }

// Parses `bytes` as `msg`; bytes that parse as a message with none of its
// own fields set (Protobuf reads many byte strings as only unknown fields)
// are not taken for it, as `starling tail` does.
bool decodes(google::protobuf::Message& msg, const std::string& bytes) {
  if (!msg.ParseFromString(bytes)) return false;
  std::vector<const google::protobuf::FieldDescriptor*> set;
  msg.GetReflection()->ListFields(msg, &set);
  return !set.empty();
}

// Every string in `j` capped, arrays cut at 1000 items (a payload's depth is
// bounded by its Protobuf type, so the recursion is).
void cap_json(json& j, std::size_t max) {
  constexpr std::size_t kItemsMax = 1000;
  if (j.is_string()) {
    j = capped(j.get_ref<const std::string&>(), max);
  } else if (j.is_array()) {
    if (j.size() > kItemsMax) j.erase(j.begin() + kItemsMax, j.end());
    for (auto& v : j) cap_json(v, max);
  } else if (j.is_object()) {
    for (auto& [k, v] : j.items()) cap_json(v, max);
  }
}

// The payload as JSON through the pipeline's descriptor, or why not.
struct Payload {
  json value;  // null when it does not decode
  std::string error;
  std::unique_ptr<google::protobuf::Message> record;
};

Payload decode_payload(const PipelineConfig* p, const v1::Envelope& env, std::size_t max) {
  Payload out;
  if (p == nullptr || p->descriptor == nullptr) {
    out.error = "the pipeline was not given to starling-saga with --pipeline, so its payload type is unknown";
    return out;
  }
  auto rec = record_from_bytes(*p, env.payload());
  if (!rec) {
    out.error = capped(rec.error().message, max);
    return out;
  }
  auto text = json::parse(record_to_json(**rec), nullptr, false);
  if (text.is_discarded()) {
    out.error = "the payload does not convert to JSON";
    return out;
  }
  cap_json(text, max);
  out.value = std::move(text);
  out.record = std::move(*rec);
  return out;
}

json change_json(const v1::Change& c, std::size_t max) {
  json j = {{"field", capped(c.field(), max)}, {"rule", capped(c.rule(), max)}};
  switch (c.from_case()) {
    case v1::Change::kFromNumber:
      j["from"] = c.from_number();
      break;
    case v1::Change::kFromFloat:
      j["from"] = c.from_float();
      break;
    case v1::Change::kFromText:
      j["from"] = capped(c.from_text(), max);
      break;
    default:
      j["from"] = nullptr;  // the field was missing
  }
  switch (c.to_case()) {
    case v1::Change::kToNumber:
      j["to"] = c.to_number();
      break;
    case v1::Change::kToFloat:
      j["to"] = c.to_float();
      break;
    case v1::Change::kToText:
      j["to"] = capped(c.to_text(), max);
      break;
    default:
      j["to"] = nullptr;
  }
  return j;
}

json reason_json(const v1::Reason& r, std::size_t max) {
  return {{"rule", capped(r.rule(), max)},
          {"field", capped(r.field(), max)},
          {"value", capped(r.value(), max)},
          {"expected", capped(r.expected(), max)}};
}

// The row the loader writes for a clean envelope: its envelope columns
// (services/load/sqlite_sink.cc, kEnvelopeColumns) and the mapping's columns,
// each field as the sinks bind it (unset: null; numbers as numbers; enums,
// timestamps and text as field_text). The sinks bind straight into their
// statements (SqliteSink::bind_row, postgres_sink's pg_text), so there is no
// sink-free function to call; this follows them and is held to them by
// tests/services/saga/topics_api_test.cc. A bool is true/false here (SQLite
// stores 1/0).
json loaded_row(const PipelineConfig& p, const v1::Envelope& env, const google::protobuf::Message& rec,
                std::size_t max) {
  json row = {{"event_id", capped(env.event_id(), max)},
              {"saga_id", capped(env.saga_id(), max)},
              {"seq", env.seq()},
              {"event_time_ms", env.event_time_ms()},
              {"ingest_time_ms", env.ingest_time_ms()},
              {"_starling_device_id", capped(env.device_id(), max)}};
  const auto* r = rec.GetReflection();
  using FD = google::protobuf::FieldDescriptor;
  for (const auto& c : p.columns) {
    const auto* f = c.descriptor;
    if (f == nullptr || f->containing_type() != rec.GetDescriptor() || f->is_repeated()) continue;
    if (f->has_presence() && !r->HasField(rec, f)) {
      row[c.name] = nullptr;
      continue;
    }
    switch (f->cpp_type()) {
      case FD::CPPTYPE_INT32:
        row[c.name] = r->GetInt32(rec, f);
        break;
      case FD::CPPTYPE_INT64:
        row[c.name] = r->GetInt64(rec, f);
        break;
      case FD::CPPTYPE_UINT32:
        row[c.name] = r->GetUInt32(rec, f);
        break;
      case FD::CPPTYPE_UINT64:
        row[c.name] = r->GetUInt64(rec, f);
        break;
      case FD::CPPTYPE_BOOL:
        row[c.name] = r->GetBool(rec, f);
        break;
      case FD::CPPTYPE_FLOAT:
        row[c.name] = r->GetFloat(rec, f);
        break;
      case FD::CPPTYPE_DOUBLE:
        row[c.name] = r->GetDouble(rec, f);
        break;
      default:
        row[c.name] = capped(field_text(rec, f), max);
    }
  }
  return row;
}

// ---------------------------------------------------------------------------
// The bounded scan.

struct ScanPlan {
  std::vector<std::string> topics;
  std::optional<int64_t> from_ms;   // by record timestamp; none: see tail_share
  std::optional<int64_t> until_ms;  // inclusive
  // Without from_ms: read each partition's last scan_max / partitions
  // records (the newest), so a topic larger than the bound still shows its
  // present rather than its oldest records.
  bool tail_share = false;
};

struct ScanStats {
  std::size_t scanned = 0;
  bool complete = true;
};

class Scanner {
 public:
  Scanner(const TopicsApiOptions& o, TopicSource& src) : o_(o), src_(src), deadline_(Steady::now() + o.budget) {}

  std::chrono::milliseconds left() const {
    const auto l = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Steady::now());
    return std::max(l, std::chrono::milliseconds(1));
  }

  // Reads the plan's ranges up to the log ends as they were at the start,
  // handing each record to `visit` until it returns false (the search is
  // over: complete stays true), scan_max records were read or the budget is
  // spent (complete false).
  Result<ScanStats> run(const ScanPlan& plan, const std::function<bool(const kafka::InMessage&)>& visit) {
    ScanStats stats;
    std::map<kafka::TopicPartition, int64_t> starts;
    std::map<kafka::TopicPartition, int64_t> ends;
    for (const auto& topic : plan.topics) {
      auto n = src_.partitions(topic, left());
      if (!n) {
        if (n.error().code == Errc::kNotFound) continue;  // not created yet: nothing to read there
        return std::unexpected(n.error());
      }
      for (int32_t p = 0; p < *n; ++p) {
        const kafka::TopicPartition tp{topic, p};
        auto w = src_.watermarks(tp, left());
        if (!w) return std::unexpected(w.error());
        int64_t start = w->first;
        int64_t end = w->second;
        if (plan.from_ms) {
          auto at = src_.offset_for_time(tp, *plan.from_ms, left());
          if (!at) return std::unexpected(at.error());
          start = std::max(start, *at);
        }
        if (plan.until_ms && *plan.until_ms < INT64_MAX) {
          auto at = src_.offset_for_time(tp, *plan.until_ms + 1, left());
          if (!at) return std::unexpected(at.error());
          end = std::min(end, *at);
        }
        if (start < end) {
          starts[tp] = start;
          ends[tp] = end;
        }
      }
    }
    if (starts.empty()) return stats;
    if (!plan.from_ms && plan.tail_share) {
      const auto share = static_cast<int64_t>(std::max<std::size_t>(1, o_.scan_max / starts.size()));
      for (auto& [tp, start] : starts) {
        if (ends[tp] - start > share) {
          start = ends[tp] - share;
          stats.complete = false;  // older records were left out
        }
      }
    }
    if (auto st = src_.assign(starts); !st) return std::unexpected(st.error());
    while (!ends.empty()) {
      if (stats.scanned >= o_.scan_max || Steady::now() >= deadline_) {
        stats.complete = false;
        break;
      }
      constexpr std::size_t kBatch = 500;
      const auto wait = std::min(left(), std::chrono::milliseconds(200));
      auto batch = src_.poll_batch(std::min(kBatch, o_.scan_max - stats.scanned), wait);
      if (!batch) return std::unexpected(batch.error());
      for (const auto& m : *batch) {
        auto end = ends.find({m.topic, m.partition});
        if (end == ends.end() || m.offset >= end->second) continue;
        if (m.offset + 1 >= end->second) ends.erase(end);
        ++stats.scanned;
        if (!visit(m)) return stats;
        if (stats.scanned >= o_.scan_max) break;
      }
    }
    return stats;
  }

 private:
  const TopicsApiOptions& o_;
  TopicSource& src_;
  Steady::time_point deadline_;
};

HttpResponse kafka_error(const Error& e) {
  auto r = json_error(503, "kafka_unavailable", "reading the topics: " + e.message);
  r.headers.emplace_back("Retry-After", "5");
  return r;
}

Result<std::unique_ptr<TopicSource>> open_source(const TopicsApiOptions& o) {
  return o.source ? o.source(o.kafka) : kafka_topic_source(o.kafka);
}

// One of max_concurrent places for a request that reads topics, held until it answers.
class Slot {
 public:
  explicit Slot(const TopicsApiOptions& o) : count_(o.in_flight) {
    if (count_ == nullptr) return;
    held_ = count_->fetch_add(1) < o.max_concurrent;
    if (!held_) count_->fetch_sub(1);
  }
  ~Slot() {
    if (held_) count_->fetch_sub(1);
  }
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  bool held() const { return held_ || count_ == nullptr; }

 private:
  std::shared_ptr<std::atomic<std::size_t>> count_;
  bool held_ = false;
};

const PipelineConfig* find_pipeline(const TopicsApiOptions& o, const std::string& name) {
  for (const auto& p : o.pipelines) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

HttpResponse unknown_pipeline(const std::string& name) {
  return json_error(404, "unknown_pipeline",
                    fmt::format("no pipeline '{}' was given to starling-saga (--pipeline)", excerpt(name, 64)),
                    "pipeline");
}

// Saga records looked up once per request.
class Sagas {
 public:
  explicit Sagas(SagaStore& store) : store_(store) {}
  const v1::SagaRecord* get(const std::string& id) {
    auto it = cache_.find(id);
    if (it == cache_.end()) {
      auto r = store_.get(id);
      std::optional<v1::SagaRecord> found;
      if (r) found = std::move(*r);  // a store error reads as not known: the topics still answer
      it = cache_.emplace(id, std::move(found)).first;
    }
    const std::optional<v1::SagaRecord>& known = it->second;
    if (!known) return nullptr;
    return &*known;
  }

 private:
  SagaStore& store_;
  std::map<std::string, std::optional<v1::SagaRecord>> cache_;
};

// ---------------------------------------------------------------------------
// GET /v1/sagas/{id}/events

const char* seq_status(const v1::SagaRecord& r, uint32_t seq) {
  if (test_bit(r.loaded(), seq)) return "loaded";
  if (test_bit(r.rejected_at_load(), seq)) return "rejected_at_load";
  if (test_bit(r.rejected(), seq)) return "rejected";
  if (test_bit(r.cleaned(), seq)) return "cleaned";
  return "in_flight";
}

HttpResponse saga_events(const TopicsApiOptions& o, SagaStore& store, const HttpRequest& req, const std::string& id) {
  auto limit = size_param(req, "limit", kEventsLimitDefault, 1, kEventsLimitMax);
  if (!limit) return bad_param("limit", limit.error().message);
  auto got = store.get(id);
  if (!got) return json_error(500, "store_error", got.error().message);
  const std::optional<v1::SagaRecord>& found = *got;
  if (!found) return json_error(404, "unknown_saga", "no saga with id '" + excerpt(id, 64) + "'", "saga_id");
  const v1::SagaRecord& saga = *found;
  PipelineConfig named;
  named.name = saga.pipeline();
  ScanPlan plan;
  int64_t from = saga.created_ms();
  if (saga.kind() == v1::SAGA_KIND_REPLAY) {
    // A replay's INGESTED fact (its creation) comes after its events, from
    // the command once it published them all: look back further.
    if (!saga.timeline().empty()) from = std::min(from, saga.timeline(0).time_ms());
    from -= std::max(o.clock_slack_ms, kHourMs);
    plan.topics = {saga.replay().replay_topic().empty() ? named.raw_replay_topic() : saga.replay().replay_topic()};
  } else {
    from -= o.clock_slack_ms;
    plan.topics = {named.raw_topic()};
  }
  plan.from_ms = std::max<int64_t>(0, from);

  auto src = open_source(o);
  if (!src) return kafka_error(src.error());
  struct Found {
    std::string event_id, device_id;
    At at;
  };
  std::map<uint32_t, Found> events;  // the lowest `limit` seqs
  // Every seq seen, to stop once all `total` are (a total past this is not
  // believed enough to allocate for: the scan then runs to its end).
  constexpr uint32_t kSeenMax = 1u << 24;
  std::vector<bool> seen(saga.total() <= kSeenMax ? saga.total() : 0);
  std::size_t seen_count = 0;
  std::size_t undecodable = 0;
  v1::Envelope env;
  Scanner scanner(o, **src);
  auto stats = scanner.run(plan, [&](const kafka::InMessage& m) {
    if (!decodes(env, m.value)) {
      ++undecodable;
      return true;
    }
    if (env.saga_id() != id) return true;
    const uint32_t seq = env.seq();
    if (seq < seen.size() && !seen[seq]) {
      seen[seq] = true;
      ++seen_count;
    }
    if (!events.contains(seq)) {
      if (events.size() < *limit || seq < events.rbegin()->first) {
        events.emplace(seq, Found{capped(env.event_id(), o.value_max), capped(env.device_id(), o.value_max), at_of(m)});
        if (events.size() > *limit) events.erase(std::prev(events.end()));
      }
    }
    return seen.empty() || seen_count < seen.size();
  });
  if (!stats) return kafka_error(stats.error());
  json list = json::array();
  for (const auto& [seq, f] : events) {
    list.push_back({{"seq", seq},
                    {"event_id", f.event_id},
                    {"device_id", f.device_id},
                    {"topic", f.at.topic},
                    {"partition", f.at.partition},
                    {"offset", f.at.offset},
                    {"status", seq_status(saga, seq)}});
  }
  json body = {{"saga_id", capped(saga.saga_id(), o.value_max)},
               {"pipeline", capped(saga.pipeline(), o.value_max)},
               {"events", list},
               {"scanned", stats->scanned},
               {"complete", stats->complete},
               {"undecodable", undecodable}};
  return {200, json_text(body)};
}

// ---------------------------------------------------------------------------
// GET /v1/journey

struct SeenEnvelope {
  At at;
  v1::Envelope env;
};
struct SeenRejected {
  At at;
  v1::RejectedRecord rec;
};
struct Journey {
  std::optional<SeenEnvelope> raw;
  std::optional<SeenEnvelope> clean;
  std::optional<SeenRejected> rejected;
  int64_t ingest_ms = 0;
  std::size_t bytes = 0;
};

HttpResponse journey(const TopicsApiOptions& o, SagaStore& store, const HttpRequest& req, int64_t now) {
  const auto pipeline = param(req, "pipeline");
  if (pipeline.empty()) return bad_param("pipeline", "required");
  const auto event_id = param(req, "event_id");
  const auto device_id = param(req, "device_id");
  if (event_id.empty() == device_id.empty()) {
    return bad_param(event_id.empty() ? "event_id" : "device_id", "give exactly one of event_id and device_id");
  }
  auto limit = size_param(req, "limit", kJourneyLimitDefault, 1, kJourneyLimitMax);
  if (!limit) return bad_param("limit", limit.error().message);
  auto since = time_param(req, "since", now);
  if (!since) return bad_param("since", since.error().message);
  const PipelineConfig* p = find_pipeline(o, pipeline);
  if (p == nullptr) return unknown_pipeline(pipeline);

  ScanPlan plan;
  plan.topics = {p->raw_topic(),          p->raw_replay_topic(), p->clean_topic(),
                 p->clean_replay_topic(), p->rejected_topic(),   p->dlq_topic()};
  plan.from_ms = since->value_or(now - kJourneySinceDefaultMs);
  const std::set<std::string> raw_topics = {p->raw_topic(), p->raw_replay_topic()};
  const std::set<std::string> clean_topics = {p->clean_topic(), p->clean_replay_topic()};

  auto src = open_source(o);
  if (!src) return kafka_error(src.error());

  // What was found, by (saga, seq): a retried request re-produces the same
  // envelopes, which are one event. Bounded in bytes: past the budget the
  // oldest events (by ingest time) go, never below `limit` of them.
  constexpr std::size_t kKeepBytes = 32u << 20;
  std::map<std::pair<std::string, uint32_t>, Journey> found;
  std::set<std::tuple<int64_t, std::string, uint32_t>> by_time;
  std::size_t kept_bytes = 0;
  std::size_t undecodable = 0;
  auto keep = [&](const v1::Envelope& env, std::size_t bytes) -> Journey& {
    auto key = std::make_pair(env.saga_id(), env.seq());
    auto [it, added] = found.try_emplace(key);
    if (added) {
      it->second.ingest_ms = env.ingest_time_ms();
      by_time.emplace(env.ingest_time_ms(), env.saga_id(), env.seq());
    }
    it->second.bytes += bytes;
    kept_bytes += bytes;
    return it->second;
  };
  auto trim = [&] {
    while (kept_bytes > kKeepBytes && found.size() > *limit && !by_time.empty()) {
      const auto [t, saga, seq] = *by_time.begin();
      by_time.erase(by_time.begin());
      auto it = found.find({saga, seq});
      kept_bytes -= it->second.bytes;
      found.erase(it);
    }
  };
  auto matches = [&](const v1::Envelope& env) {
    return event_id.empty() ? env.device_id() == device_id : env.event_id() == event_id;
  };
  v1::Envelope env;
  v1::RejectedRecord rej;
  Scanner scanner(o, **src);
  auto stats = scanner.run(plan, [&](const kafka::InMessage& m) {
    // A device's records are keyed by its id (envelope_key): the others are
    // passed over without decoding.
    if (!device_id.empty() && m.key != device_id) return true;
    const bool is_raw = raw_topics.contains(m.topic);
    if (is_raw || clean_topics.contains(m.topic)) {
      if (!decodes(env, m.value)) {
        ++undecodable;
        return true;
      }
      if (!matches(env)) return true;
      auto& j = keep(env, m.value.size());
      auto& slot = is_raw ? j.raw : j.clean;
      if (!slot) slot = SeenEnvelope{at_of(m), env};
    } else {
      if (!decodes(rej, m.value)) {
        ++undecodable;
        return true;
      }
      if (!matches(rej.envelope())) return true;
      auto& j = keep(rej.envelope(), m.value.size());
      // A load refusal is the later verdict: it wins over clean's.
      if (!j.rejected || rej.stage() == "load") j.rejected = SeenRejected{at_of(m), rej};
    }
    trim();
    return true;
  });
  if (!stats) return kafka_error(stats.error());

  // Newest first.
  std::vector<const std::pair<const std::pair<std::string, uint32_t>, Journey>*> order;
  order.reserve(found.size());
  for (const auto& e : found) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return std::tie(a->second.ingest_ms, a->first) > std::tie(b->second.ingest_ms, b->first);
  });
  if (order.size() > *limit) order.resize(*limit);

  const auto max = o.value_max;
  Sagas sagas(store);
  json events = json::array();
  for (const auto* e : order) {
    const auto& [key, j] = *e;
    const v1::Envelope& any = j.raw ? j.raw->env : j.clean ? j.clean->env : j.rejected->rec.envelope();
    const v1::SagaRecord* saga = sagas.get(key.first);
    json ev = {{"event_id", capped(any.event_id(), max)},
               {"device_id", capped(any.device_id(), max)},
               {"saga_id", capped(key.first, max)},
               {"seq", key.second},
               {"saga_known", saga != nullptr}};
    if (!any.origin_saga_id().empty()) {
      ev["origin_saga_id"] = capped(any.origin_saga_id(), max);
      ev["origin_seq"] = any.origin_seq();
    }
    ev["ingested"] = nullptr;
    if (j.raw) {
      const auto& r = *j.raw;
      json in = {{"time", rfc3339(r.env.ingest_time_ms())},
                 {"time_ms", r.env.ingest_time_ms()},
                 {"topic", r.at.topic},
                 {"partition", r.at.partition},
                 {"offset", r.at.offset}};
      auto payload = decode_payload(p, r.env, max);
      in["payload"] = std::move(payload.value);
      if (!payload.error.empty()) in["payload_error"] = payload.error;
      ev["ingested"] = std::move(in);
    }
    ev["cleaned"] = nullptr;
    Payload clean_payload;
    if (j.clean) {
      const auto& c = *j.clean;
      json changes = json::array();
      for (const auto& ch : c.env.changes()) changes.push_back(change_json(ch, max));
      clean_payload = decode_payload(p, c.env, max);
      json cl = {{"topic", c.at.topic},
                 {"partition", c.at.partition},
                 {"offset", c.at.offset},
                 {"payload", clean_payload.value},
                 {"changes", changes}};
      if (!clean_payload.error.empty()) cl["payload_error"] = clean_payload.error;
      ev["cleaned"] = std::move(cl);
    }
    ev["rejected"] = nullptr;
    std::string rejected_stage;
    std::string first_reason;
    if (j.rejected) {
      const auto& r = *j.rejected;
      rejected_stage = r.rec.stage().empty() ? "clean" : capped(r.rec.stage(), max);
      json reasons = json::array();
      for (const auto& reason : r.rec.reasons()) reasons.push_back(reason_json(reason, max));
      if (!r.rec.reasons().empty()) {
        const auto& f = r.rec.reasons(0);
        first_reason = f.field().empty() ? fmt::format(" (rule {})", capped(f.rule(), 64))
                                         : fmt::format(" (rule {} on {})", capped(f.rule(), 64), capped(f.field(), 64));
      }
      ev["rejected"] = {{"stage", rejected_stage},
                        {"topic", r.at.topic},
                        {"partition", r.at.partition},
                        {"offset", r.at.offset},
                        {"time", rfc3339(r.rec.rejected_time_ms())},
                        {"reasons", reasons}};
    }
    // The saga's bitmaps are the truth; without the saga (not folded yet,
    // or removed by retention) what the topics hold is all there is.
    // A verdict in the topics that the coordinator has not folded yet
    // counts too.
    std::string status = saga != nullptr ? seq_status(*saga, key.second) : "in_flight";
    if (status == "in_flight" || status == "cleaned") {
      if (j.rejected) {
        status = rejected_stage == "load" ? "rejected_at_load" : "rejected";
      } else if (j.clean) {
        status = "cleaned";
      }
    }
    std::string where;
    if (status == "loaded") {
      where = "loaded into " + p->table;
    } else if (status == "rejected" || status == "rejected_at_load") {
      const std::string stage = status == "rejected_at_load" ? "load"
                                : rejected_stage.empty()     ? "clean"
                                                             : rejected_stage;
      where = fmt::format("rejected by {}{}", stage, first_reason);
    } else if (status == "cleaned") {
      where = saga != nullptr ? "waiting for load"
                              : "cleaned; whether it loaded is not known (its saga is not in the store)";
      status = "in_flight";
    } else {
      where = "waiting for clean";
    }
    ev["status"] = status;
    ev["where"] = where;
    ev["loaded"] = nullptr;
    if (status == "loaded") {
      json row = nullptr;
      // The clean record is what load wrote; without it in the scanned
      // range the row is not known here.
      if (j.clean && clean_payload.record) row = loaded_row(*p, j.clean->env, *clean_payload.record, max);
      ev["loaded"] = {{"table", p->table}, {"row", row}};
    }
    events.push_back(std::move(ev));
  }
  json body = {{"pipeline", p->name},
               {"scanned", stats->scanned},
               {"complete", stats->complete},
               {"undecodable", undecodable},
               {"events", events}};
  return {200, json_text(body)};
}

// ---------------------------------------------------------------------------
// GET /v1/rejects

HttpResponse rejects(const TopicsApiOptions& o, const HttpRequest& req, int64_t now) {
  const auto pipeline = param(req, "pipeline");
  if (pipeline.empty()) return bad_param("pipeline", "required");
  const auto rule = param(req, "rule");
  const auto field = param(req, "field");
  const auto device_id = param(req, "device_id");
  auto since = time_param(req, "since", now);
  if (!since) return bad_param("since", since.error().message);
  auto until = time_param(req, "until", now);
  if (!until) return bad_param("until", until.error().message);
  const std::optional<int64_t> from = *since;
  const std::optional<int64_t> to = *until;
  if (from && to && *to < *from) return bad_param("until", "must not be before since");
  auto examples = size_param(req, "examples", kExamplesDefault, 0, kExamplesMax);
  if (!examples) return bad_param("examples", examples.error().message);
  const PipelineConfig* p = find_pipeline(o, pipeline);
  if (p == nullptr) return unknown_pipeline(pipeline);

  ScanPlan plan;
  plan.topics = {p->rejected_topic(), p->dlq_topic()};
  plan.from_ms = from;
  plan.until_ms = to;
  plan.tail_share = true;
  auto src = open_source(o);
  if (!src) return kafka_error(src.error());

  const auto max = o.value_max;
  struct Group {
    uint64_t count = 0;
    json examples = json::array();
  };
  std::map<std::tuple<std::string, std::string, std::string>, Group> groups;
  uint64_t not_listed = 0;
  std::size_t undecodable = 0;
  uint64_t records = 0;
  v1::RejectedRecord rec;
  Scanner scanner(o, **src);
  auto stats = scanner.run(plan, [&](const kafka::InMessage& m) {
    if (!device_id.empty() && m.key != device_id) return true;  // keyed by device (envelope_key)
    if (!decodes(rec, m.value)) {
      ++undecodable;
      return true;
    }
    const auto& env = rec.envelope();
    if (!device_id.empty() && env.device_id() != device_id) return true;
    const int64_t t = rec.rejected_time_ms() != 0 ? rec.rejected_time_ms() : m.timestamp_ms;
    bool counted = false;
    for (const auto& r : rec.reasons()) {
      if ((!rule.empty() && r.rule() != rule) || (!field.empty() && r.field() != field)) continue;
      counted = true;
      auto key = std::make_tuple(rec.stage(), r.rule(), r.field());
      auto it = groups.find(key);
      if (it == groups.end()) {
        if (groups.size() >= kGroupsMax) {
          ++not_listed;
          continue;
        }
        it = groups.emplace(std::move(key), Group{}).first;
      }
      auto& g = it->second;
      ++g.count;
      if (g.examples.size() < *examples) {
        g.examples.push_back({{"event_id", capped(env.event_id(), max)},
                              {"device_id", capped(env.device_id(), max)},
                              {"saga_id", capped(env.saga_id(), max)},
                              {"value", capped(r.value(), max)},
                              {"expected", capped(r.expected(), max)},
                              {"time", rfc3339(t)},
                              {"topic", m.topic},
                              {"partition", m.partition},
                              {"offset", m.offset}});
      }
    }
    records += counted ? 1 : 0;
    return true;
  });
  if (!stats) return kafka_error(stats.error());
  std::vector<const std::pair<const std::tuple<std::string, std::string, std::string>, Group>*> order;
  order.reserve(groups.size());
  for (const auto& g : groups) order.push_back(&g);
  std::stable_sort(order.begin(), order.end(),
                   [](const auto* a, const auto* b) { return a->second.count > b->second.count; });
  json list = json::array();
  for (const auto* g : order) {
    const auto& [stage, r, f] = g->first;
    list.push_back({{"stage", capped(stage, max)},
                    {"rule", capped(r, max)},
                    {"field", capped(f, max)},
                    {"count", g->second.count},
                    {"examples", g->second.examples}});
  }
  json body = {{"pipeline", p->name}, {"scanned", stats->scanned},  {"complete", stats->complete},
               {"records", records},  {"undecodable", undecodable}, {"groups", list}};
  if (not_listed > 0) body["groups_not_listed"] = not_listed;
  return {200, json_text(body)};
}

std::optional<HttpResponse> route(const TopicsApiOptions& o, SagaStore& store, const HttpRequest& req,
                                  const Clock& clock) {
  constexpr std::string_view kSagas = "/v1/sagas/";
  constexpr std::string_view kEvents = "/events";
  std::string saga_id;
  const bool events =
      req.path.starts_with(kSagas) && req.path.ends_with(kEvents) && req.path.size() > kSagas.size() + kEvents.size();
  if (events) {
    saga_id = req.path.substr(kSagas.size(), req.path.size() - kSagas.size() - kEvents.size());
    if (saga_id.find('/') != std::string::npos) return std::nullopt;
  }
  if (!events && req.path != "/v1/journey" && req.path != "/v1/rejects") return std::nullopt;
  if (req.method != "GET") return json_error(405, "method_not_allowed", "the saga API is read-only");
  const Slot slot(o);
  if (!slot.held()) {
    auto r =
        json_error(503, "busy", fmt::format("{} requests are reading topics already; try again", o.max_concurrent));
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }
  if (events) return saga_events(o, store, req, saga_id);
  if (req.path == "/v1/journey") return journey(o, store, req, clock());
  return rejects(o, req, clock());
}

}  // namespace

const PipelineConfig* topics_pipeline(const TopicsApiOptions& options, const std::string& name) {
  return find_pipeline(options, name);
}

Result<SelectedRejects> select_rejects(const TopicsApiOptions& o, const PipelineConfig& p, const RejectSelection& sel,
                                       std::size_t max) {
  ScanPlan plan;
  plan.topics = {p.rejected_topic()};  // clean's rejects; the dlq's are the sink's refusals, not clean's
  plan.from_ms = sel.since_ms;
  plan.until_ms = sel.until_ms;
  plan.tail_share = true;
  auto src = open_source(o);
  if (!src) return std::unexpected(src.error());
  SelectedRejects out;
  v1::RejectedRecord rec;
  Scanner scanner(o, **src);
  auto stats = scanner.run(plan, [&](const kafka::InMessage& m) {
    if (!sel.device_id.empty() && m.key != sel.device_id) return true;
    if (!decodes(rec, m.value) || rec.stage() != "clean") return true;
    const auto& env = rec.envelope();
    if (!sel.device_id.empty() && env.device_id() != sel.device_id) return true;
    const bool match = std::any_of(rec.reasons().begin(), rec.reasons().end(), [&](const v1::Reason& r) {
      return (sel.rule.empty() || r.rule() == sel.rule) && (sel.field.empty() || r.field() == sel.field);
    });
    if (!match || env.event_id().empty()) return true;
    ++out.matched;
    if (out.event_ids.size() >= max) return true;
    out.event_ids.insert(env.event_id());
    const int64_t t = env.ingest_time_ms() != 0 ? env.ingest_time_ms() : m.timestamp_ms;
    if (out.first_ingest_ms == 0 || t < out.first_ingest_ms) out.first_ingest_ms = t;
    out.last_ingest_ms = std::max(out.last_ingest_ms, t);
    return true;
  });
  if (!stats) return std::unexpected(stats.error());
  out.complete = stats->complete;
  return out;
}

Result<std::unique_ptr<TopicSource>> kafka_topic_source(const kafka::KafkaOptions& options) {
  kafka::KafkaOptions o = options;
  o.client_id = "starling-saga-topics";
  auto reader = kafka::TopicReader::create(o);
  if (!reader) return std::unexpected(reader.error());
  return std::make_unique<KafkaTopicSource>(std::move(*reader));
}

std::string capped(std::string_view s, std::size_t max) {
  if (s.size() <= max) return utf8_safe(s);
  std::size_t n = max;
  // Back up to the start of the character the cut would split.
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return utf8_safe(s.substr(0, n)) + fmt::format("…[cut: {} of {} bytes]", n, s.size());
}

std::optional<int64_t> parse_time_param(const std::string& text, int64_t now_ms) {
  if (auto d = parse_duration_ms(text)) return now_ms - *d;
  auto t = parse_time_ms(text);
  if (!t) return std::nullopt;
  return *t;
}

std::optional<HttpResponse> handle_topics_api(const TopicsApiOptions& options, SagaStore& store, const HttpRequest& req,
                                              const Clock& clock) {
  try {
    return route(options, store, req, clock);
  } catch (const std::exception& e) {
    spdlog::error("{} {}: {}", req.method, excerpt(req.path, 128), e.what());
    return json_error(500, "internal_error", "the request failed inside starling-saga; see its log");
  } catch (...) {
    spdlog::error("{} {}: unknown exception", req.method, excerpt(req.path, 128));
    return json_error(500, "internal_error", "the request failed inside starling-saga; see its log");
  }
}

}  // namespace starling::saga
