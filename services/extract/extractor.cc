#include "services/extract/extractor.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>
#include <map>
#include <stdexcept>
#include <thread>

#include "services/common/envelope.h"
#include "services/common/facts.h"
#include "services/common/ids.h"
#include "services/common/metrics.h"
#include "services/common/records.h"
#include "services/common/shutdown.h"
#include "services/common/text.h"
#include "services/common/time.h"

namespace starling::extract {

namespace {

Counter& counter(const std::string& name, const std::string& help, const Labels& labels) {
  return metrics().counter(name, help, labels);
}

Counter& polls(const std::string& p, const std::string& result) {
  return counter("starling_extract_polls_total", "Polls of a source, by result (ok, or why the poll failed)",
                 {{"pipeline", p}, {"result", result}});
}

// The source of a pipeline that has one (the constructor's precondition).
const HttpPollSource& source_of(const PipelineConfig& p) {
  if (!p.source) throw std::invalid_argument("pipeline " + p.name + " declares no source");
  return *p.source;
}

}  // namespace

const char* failure_label(PollFailure f) {
  switch (f) {
    case PollFailure::kHttp:
      return "http";
    case PollFailure::kMalformed:
      return "malformed";
    case PollFailure::kKafka:
      return "kafka";
    case PollFailure::kStore:
      return "store";
    case PollFailure::kStopped:
      return "stopped";
  }
  return "unknown";
}

Extractor::Extractor(const PipelineConfig& pipeline, kafka::Producer& producer, CursorStore& store,
                     std::string instance, ExtractOptions options, HttpGet get, const std::function<bool()>& stop,
                     HttpPost post)
    : p_(pipeline),
      s_(source_of(pipeline)),
      producer_(producer),
      store_(store),
      instance_(std::move(instance)),
      options_([&] {
        auto o = options;
        if (pipeline.source->quota_per_min > 0) o.client.quota_per_min = pipeline.source->quota_per_min;
        return o;
      }()),
      stop_(stop),
      key_(options_.backfill ? "backfill/" + options_.backfill->id : pipeline.name),
      client_(options_.client, std::move(get), stop, [p = pipeline.name](const ClientEvent& e) {
        switch (e.kind) {
          case ClientEvent::kResponse:
            metrics()
                .counter("starling_extract_http_responses_total", "Answers of the source's API, by HTTP status",
                         {{"pipeline", p}, {"status", std::to_string(e.status)}})
                .add();
            break;
          case ClientEvent::kTransportError:
            metrics()
                .counter("starling_extract_http_responses_total", "Answers of the source's API, by HTTP status",
                         {{"pipeline", p}, {"status", "error"}})
                .add();
            spdlog::warn("extract {}: {}", p, e.detail);
            break;
          case ClientEvent::kRetryAfter:
            metrics()
                .counter("starling_extract_backoffs_total", "Waits before a retry: retry_after (429) or backoff",
                         {{"pipeline", p}, {"reason", "retry_after"}})
                .add();
            spdlog::info("extract {}: 429, waiting {} ms as Retry-After '{}' asks", p, e.wait.count(), e.detail);
            break;
          case ClientEvent::kBackoff:
            metrics()
                .counter("starling_extract_backoffs_total", "Waits before a retry: retry_after (429) or backoff",
                         {{"pipeline", p}, {"reason", "backoff"}})
                .add();
            spdlog::warn("extract {}: {}; retrying in {} ms", p, e.detail, e.wait.count());
            break;
        }
        // The backoff state: how long the client waits now (0: not waiting).
        metrics()
            .gauge("starling_extract_backoff_seconds",
                   "How long the source's client waits before its next try now (429 or back-off; 0: not waiting)",
                   {{"pipeline", p}})
            .set(e.kind == ClientEvent::kRetryAfter || e.kind == ClientEvent::kBackoff
                     ? static_cast<double>(e.wait.count()) / 1000
                     : 0);
      }) {
  const auto& oauth = s_.oauth2;
  if (oauth.has_value()) {
    tokens_.emplace(*oauth, post ? std::move(post) : http_post(), options_.client.timeout_ms, stop);
  }
}

std::expected<uint32_t, PollError> Extractor::produce_page(const std::string& saga_id, uint32_t first_seq,
                                                           const std::vector<nlohmann::json>& records,
                                                           int64_t& max_cursor_ms, PollResult& result) {
  const auto trace_id = random_id();
  const auto ingest_ms = now_ms();
  std::vector<kafka::OutMessage> out;
  out.reserve(records.size() + 2);
  FactBuilder rejected(v1::STEP_REJECTED, instance_);
  std::vector<kafka::OutMessage> rejects;
  uint32_t seq = first_seq;
  for (std::size_t i = 0; i < records.size(); ++i, ++seq) {
    auto rec = record_from_json(p_, records[i], i);
    // Ingest's door refuses these too: text no warehouse keeps whole, and a
    // record so large that what the stages derive from it would not fit Kafka.
    std::optional<FieldError> refused;
    std::string rule = "conversion";
    if (!rec) {
      refused = rec.error();
    } else if (auto e = nul_in_text(**rec, i)) {
      refused = std::move(e);
    } else if (auto big = over_limits(**rec, options_.limits, i)) {
      refused = std::move(big);
      rule = "limits";
    }
    if (refused) {
      v1::RejectedRecord r;
      auto* env = r.mutable_envelope();
      env->set_event_id(fmt::format("{}-{}", saga_id, seq));
      env->set_saga_id(saga_id);
      env->set_seq(seq);
      env->set_pipeline(p_.name);
      env->set_event_time_ms(ingest_ms);
      env->set_ingest_time_ms(ingest_ms);
      env->set_schema_name(p_.message_type);
      env->set_schema_version(p_.schema_version);
      env->set_trace_id(trace_id);
      auto* reason = r.add_reasons();
      reason->set_rule(rule);
      reason->set_field(refused->field);
      reason->set_value(excerpt(json_text(records[i]), 1024));
      reason->set_expected(refused->reason);
      r.set_stage("extract");
      r.set_rejected_time_ms(ingest_ms);
      rejected.add_rejection(saga_id, p_.name, seq, r.reasons());
      rejects.push_back(
          {p_.rejected_topic(), env->event_id(), r.SerializeAsString(), {{kafka::kTraceHeader, trace_id}}});
      continue;
    }
    const auto& msg = **rec;
    const auto env = make_envelope(p_, msg, saga_id, seq, content_event_id(p_, msg), trace_id, ingest_ms);
    if (s_.cursor_field) max_cursor_ms = std::max(max_cursor_ms, timestamp_ms(msg, s_.cursor_field));
    out.push_back({p_.raw_topic(), envelope_key(env), env.SerializeAsString(), {{kafka::kTraceHeader, trace_id}}});
  }
  const auto produced = out.size();
  for (auto& m : rejects) out.push_back(std::move(m));
  if (!options_.backfill) {
    // A page is a saga of its own; a backfill's total is known at its end.
    const auto fact = ingested_fact(p_, saga_id, seq, instance_, ingest_ms);
    out.push_back({kSagaTopic, saga_id, fact.SerializeAsString(), {{kafka::kTraceHeader, trace_id}}});
  }
  for (const auto& f : rejected.build(ingest_ms)) {
    out.push_back({kSagaTopic, saga_id, f.SerializeAsString(), {{kafka::kTraceHeader, trace_id}}});
  }
  if (auto st = kafka::produce_all(producer_, out, options_.produce_timeout); !st) {
    return std::unexpected(PollError{PollFailure::kKafka, "producing saga " + saga_id + ": " + st.error().message});
  }
  result.records += produced;
  result.rejected += rejects.size();
  return seq - first_seq;
}

namespace {

constexpr int64_t kDayMs = 86'400'000;

std::string binding_text(const Binding& b) {
  std::string out;
  for (const auto& [name, value] : b) {
    if (!out.empty()) out += ',';
    out += name;
    out += '=';
    out += value;
  }
  return out;
}

}  // namespace

std::expected<void, PollError> Extractor::pull(const Binding& binding, std::map<std::string, std::string>& headers,
                                               int64_t& max_cursor, uint32_t& next_seq, PollResult& result) {
  using Paging = HttpPollSource::Paging;
  const auto first = with_query(window_url(s_, result.since_ms, result.until_ms, binding), s_.auth_query);
  int64_t position = s_.paging == Paging::kPage ? s_.page_first : 0;
  std::string url = s_.paging == Paging::kPage || s_.paging == Paging::kOffset ? paged_url(s_, first, position) : first;
  const auto who = binding.empty() ? std::string{} : " (" + binding_text(binding) + ")";
  ApiClient::Request request;
  if (tokens_) {
    request.reauth = [this](std::map<std::string, std::string>& h) -> Status {
      tokens_->invalidate();
      auto t = tokens_->token(now_ms());
      if (!t) return std::unexpected(t.error());
      h["Authorization"] = "Bearer " + *t;
      return {};
    };
  }
  for (int page_no = 0; !url.empty(); ++page_no) {
    if (page_no >= options_.max_pages) {
      return std::unexpected(
          PollError{PollFailure::kMalformed,
                    fmt::format("more than {} pages in one window{}; the API's paging may loop", page_no, who)});
    }
    request.url = url;
    request.shown = redact(s_, url);
    request.headers = headers;
    auto body = client_.get(request);
    headers = request.headers;  // a token refreshed after a 401 is kept
    if (!body) {
      if (body.error().code == Errc::kTimeout)
        return std::unexpected(PollError{PollFailure::kStopped, body.error().message});
      const bool too_large = body.error().message.find("over the limit") != std::string::npos;
      return std::unexpected(PollError{too_large ? PollFailure::kMalformed : PollFailure::kHttp, body.error().message});
    }
    auto page = parse_page(s_, *body);
    if (!page) {
      return std::unexpected(
          PollError{PollFailure::kMalformed, fmt::format("GET {}: {}", request.shown, page.error().message)});
    }
    if (page->records.size() > options_.max_records) {
      return std::unexpected(
          PollError{PollFailure::kMalformed, fmt::format("GET {}: {} records in one page, over the limit of {}",
                                                         request.shown, page->records.size(), options_.max_records)});
    }
    ++result.pages;
    if (!page->records.empty()) {
      // Live: the same window, binding, page and body give the same saga, so
      // a retried poll re-produces what the crashed one did and every stage
      // folds it. A backfill is one saga; its seqs go on from the stored ones.
      std::vector<std::string> parts{p_.name, std::to_string(result.since_ms), std::to_string(result.until_ms)};
      if (!binding.empty()) parts.push_back(binding_text(binding));
      parts.push_back(std::to_string(page_no));
      parts.push_back(*body);
      const auto saga_id = options_.backfill ? options_.backfill->id : stable_id(parts);
      const auto first_seq = options_.backfill ? next_seq : 0;
      auto n = produce_page(saga_id, first_seq, page->records, max_cursor, result);
      if (!n) return std::unexpected(n.error());
      next_seq += options_.backfill ? *n : 0;
      if (!options_.backfill) ++result.sagas;
    }
    switch (s_.paging) {
      case Paging::kNext:
        if (const auto& next = page->next; next.has_value()) {
          url = with_query(*next, s_.auth_query);
        } else {
          url.clear();
        }
        break;
      case Paging::kPage:
      case Paging::kOffset:
        // A short page is the last; a full one may have more behind it.
        if (static_cast<int64_t>(page->records.size()) < s_.page_size) {
          url.clear();
        } else {
          position += s_.paging == Paging::kPage ? 1 : s_.page_size;
          url = paged_url(s_, first, position);
        }
        break;
      case Paging::kNone:
        url.clear();
        break;
    }
  }
  return {};
}

std::expected<PollResult, PollError> Extractor::poll(int64_t now) {
  auto fail_poll = [&](PollFailure kind, std::string message) {
    polls(p_.name, failure_label(kind)).add();
    return std::unexpected(PollError{kind, std::move(message)});
  };
  const auto& backfill = options_.backfill;
  auto stored = store_.since(key_);
  if (!stored) return fail_poll(PollFailure::kStore, stored.error().message);
  nlohmann::json state = nlohmann::json::object();
  PollResult result;
  if (backfill) {
    auto stored_state = backfill_state();
    if (!stored_state) return fail_poll(stored_state.error().kind, stored_state.error().message);
    state = std::move(*stored_state);
    result.seqs = state.value("next_seq", 0U);
  }
  result.since_ms = stored->value_or(backfill          ? backfill->from_ms
                                     : s_.start_ms     ? *s_.start_ms
                                     : s_.start_ago_ms ? now - *s_.start_ago_ms
                                                       : now - interval_ms(now));
  if (backfill && result.since_ms >= backfill->to_ms) return finish_backfill(*backfill, result, state);
  // The live edge is now; a backfill's is its end.
  const int64_t edge = backfill ? backfill->to_ms : now;
  auto pending = store_.until(key_);
  if (!pending) return fail_poll(PollFailure::kStore, pending.error().message);
  if (const auto until = pending->value_or(std::numeric_limits<int64_t>::min()); until > result.since_ms) {
    result.until_ms = until;  // the window a crash interrupted, redone as it was
  } else {
    const int64_t window = s_.window_ms > 0 ? s_.window_ms : backfill ? kDayMs : 0;
    result.until_ms = window > 0 ? std::min(edge, result.since_ms + window) : edge;
    if (result.until_ms <= result.since_ms) return result;
    if (auto st = store_.set_until(key_, result.until_ms); !st) {
      return fail_poll(PollFailure::kStore, st.error().message);
    }
  }
  result.caught_up = result.until_ms >= edge;
  result.next_since_ms = result.since_ms;
  metrics()
      .gauge("starling_extract_window_start_seconds", "The window being pulled, or the last one: its start (Unix s)",
             {{"pipeline", p_.name}})
      .set(static_cast<double>(result.since_ms) / 1000);
  metrics()
      .gauge("starling_extract_window_end_seconds", "The window being pulled, or the last one: its end (Unix s)",
             {{"pipeline", p_.name}})
      .set(static_cast<double>(result.until_ms) / 1000);

  std::map<std::string, std::string> headers(s_.headers.begin(), s_.headers.end());
  if (tokens_) {
    auto token = tokens_->token(now_ms());
    if (!token) {
      if (token.error().code == Errc::kTimeout) return fail_poll(PollFailure::kStopped, token.error().message);
      return fail_poll(PollFailure::kHttp, token.error().message);
    }
    headers["Authorization"] = "Bearer " + *token;
  }
  int64_t max_cursor = 0;
  uint32_t next_seq = result.seqs;
  for (const auto& binding : each_bindings(s_)) {
    if (auto st = pull(binding, headers, max_cursor, next_seq, result); !st) {
      return fail_poll(st.error().kind, st.error().message);
    }
  }
  if (backfill) {
    // A past range is complete: no lookback, the next window starts where this one ended.
    result.next_since_ms = result.until_ms;
    if (next_seq > result.seqs) {
      state["children"].push_back({{"name", fmt::format("{}..{}", rfc3339(result.since_ms), rfc3339(result.until_ms))},
                                   {"first", result.seqs},
                                   {"last", next_seq - 1}});
    }
    state["next_seq"] = next_seq;
    const auto text = state.dump();
    if (auto st = store_.set_since(key_, result.next_since_ms, &text); !st) {
      return fail_poll(PollFailure::kStore, st.error().message);
    }
    result.seqs = next_seq;
  } else {
    // Catching up, the window's end moves since on; at the live edge, the
    // newest record does (the API may not have published up to now yet).
    const bool cursor_moves = result.caught_up && s_.cursor_field && max_cursor > 0;
    const int64_t base = cursor_moves ? std::min(result.until_ms, max_cursor + 1) : result.until_ms;
    result.next_since_ms = std::max(result.since_ms, base - s_.lookback_ms);
    if (auto st = store_.set_since(key_, result.next_since_ms); !st) {
      return fail_poll(PollFailure::kStore, st.error().message);
    }
  }
  polls(p_.name, "ok").add();
  counter("starling_extract_records_total", "Records pulled and produced to <p>.raw", {{"pipeline", p_.name}})
      .add(result.records);
  counter("starling_extract_rejected_total", "Pulled records that did not convert, sent to <p>.rejected",
          {{"pipeline", p_.name}})
      .add(result.rejected);
  counter("starling_extract_pages_total", "Pages fetched", {{"pipeline", p_.name}}).add(result.pages);
  if (!backfill) {
    metrics()
        .gauge("starling_extract_cursor_timestamp_seconds", "Where the next window starts (Unix seconds)",
               {{"pipeline", p_.name}})
        .set(static_cast<double>(result.next_since_ms) / 1000);
    metrics()
        .gauge("starling_extract_last_success_timestamp_seconds", "When a poll last succeeded (Unix seconds)",
               {{"pipeline", p_.name}})
        .set(static_cast<double>(now_ms()) / 1000);
  }
  if (backfill && result.next_since_ms >= backfill->to_ms) return finish_backfill(*backfill, result, state);
  return result;
}

std::expected<nlohmann::json, PollError> Extractor::backfill_state() const {
  auto text = store_.state(key_);
  if (!text) return std::unexpected(PollError{PollFailure::kStore, text.error().message});
  const auto& stored = *text;
  auto state = stored.has_value() ? nlohmann::json::parse(stored.value(), nullptr, /*allow_exceptions=*/false)
                                  : nlohmann::json::object();
  if (!state.is_object())
    return std::unexpected(PollError{PollFailure::kStore, "the backfill's stored state is corrupt"});
  return state;
}

std::expected<PollResult, PollError> Extractor::close_backfill(bool cancelled) {
  const auto& backfill = options_.backfill;
  if (!backfill.has_value()) return std::unexpected(PollError{PollFailure::kStore, "not a backfill"});
  const BackfillRange range = *backfill;
  auto state = backfill_state();
  if (!state) return std::unexpected(state.error());
  return finish_backfill(range, PollResult{}, *state, cancelled);
}

std::expected<PollResult, PollError> Extractor::finish_backfill(const BackfillRange& range, PollResult result,
                                                                const nlohmann::json& state, bool cancelled) {
  result.done = true;
  result.caught_up = true;
  result.seqs = state.value("next_seq", 0U);
  if (state.value("ingested", false) || result.seqs == 0) return result;
  // Every window is PERSISTED: the saga's total is known. Sent again after a
  // crash between this and the store's write; the coordinator folds it once.
  auto fact = ingested_fact(p_, range.id, result.seqs, instance_, now_ms());
  fact.set_kind(v1::SAGA_KIND_REPLAY);
  auto* info = fact.mutable_replay();
  info->set_stage("extract");
  info->set_source_topic(redact(s_, s_.url));
  info->set_replay_topic(p_.raw_topic());
  info->set_range(fmt::format("{}..{}", rfc3339(range.from_ms), rfc3339(range.to_ms)));
  info->set_cancelled(cancelled);
  for (const auto& c : state.value("children", nlohmann::json::array())) {
    auto* child = info->add_children();
    child->set_name(c.value("name", ""));
    child->set_first(c.value("first", 0U));
    child->set_last(c.value("last", 0U));
  }
  std::vector<kafka::OutMessage> out{{kSagaTopic, range.id, fact.SerializeAsString(), {}}};
  if (auto st = kafka::produce_all(producer_, out, options_.produce_timeout); !st) {
    polls(p_.name, failure_label(PollFailure::kKafka)).add();
    return std::unexpected(PollError{PollFailure::kKafka, "the backfill's INGESTED fact: " + st.error().message});
  }
  auto done = state;
  done["ingested"] = true;
  const auto text = done.dump();
  if (auto st = store_.set_since(key_, range.to_ms, &text); !st) {
    return std::unexpected(PollError{PollFailure::kStore, st.error().message});
  }
  return result;
}

int64_t Extractor::interval_ms(int64_t now) const {
  const auto next = next_poll_ms(now);
  return next_poll_ms(next) - next;
}

int64_t Extractor::next_poll_ms(int64_t now) const {
  if (s_.cron) {
    if (auto next = s_.cron->next_after(now)) return *next;
    return now + kDayMs;  // a schedule that never fires again (30 2 *): look once a day
  }
  return now + s_.every_ms;
}

void Extractor::run() {
  while (!stop_()) {
    const auto r = poll(now_ms());
    bool again = false;
    if (r) {
      spdlog::info("extract {}: window {} .. {}: {} page(s), {} record(s), {} rejected; next since {}", p_.name,
                   rfc3339(r->since_ms), rfc3339(r->until_ms), r->pages, r->records, r->rejected,
                   rfc3339(r->next_since_ms));
      again = !r->caught_up;
    } else if (r.error().kind != PollFailure::kStopped) {
      spdlog::error("extract {}: poll failed ({}), cursor unchanged: {}", p_.name, failure_label(r.error().kind),
                    r.error().message);
    }
    if (again) continue;
    const auto now = now_ms();
    const auto next = next_poll_ms(now);
    metrics()
        .gauge("starling_extract_next_poll_timestamp_seconds", "When the source is polled next (Unix seconds)",
               {{"pipeline", p_.name}})
        .set(static_cast<double>(next) / 1000);
    sleep_unless(std::chrono::milliseconds(next - now), stop_);
  }
}

}  // namespace starling::extract
