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
                     std::string instance, ExtractOptions options, HttpGet get, const std::function<bool()>& stop)
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
      }) {}

std::expected<int, PollError> Extractor::produce_page(const std::string& saga_id,
                                                      const std::vector<nlohmann::json>& records,
                                                      int64_t& max_cursor_ms, PollResult& result) {
  const auto trace_id = random_id();
  const auto ingest_ms = now_ms();
  std::vector<kafka::OutMessage> out;
  out.reserve(records.size() + 2);
  FactBuilder rejected(v1::STEP_REJECTED, instance_);
  std::vector<kafka::OutMessage> rejects;
  uint32_t seq = 0;
  for (std::size_t i = 0; i < records.size(); ++i, ++seq) {
    auto rec = record_from_json(p_, records[i], i);
    if (!rec) {
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
      reason->set_rule("conversion");
      reason->set_field(rec.error().field);
      reason->set_value(excerpt(json_text(records[i]), 1024));
      reason->set_expected(rec.error().reason);
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
  const auto fact = ingested_fact(p_, saga_id, seq, instance_, ingest_ms);
  out.push_back({kSagaTopic, saga_id, fact.SerializeAsString(), {{kafka::kTraceHeader, trace_id}}});
  for (const auto& f : rejected.build(ingest_ms)) {
    out.push_back({kSagaTopic, saga_id, f.SerializeAsString(), {{kafka::kTraceHeader, trace_id}}});
  }
  if (auto st = kafka::produce_all(producer_, out, options_.produce_timeout); !st) {
    return std::unexpected(PollError{PollFailure::kKafka, "producing saga " + saga_id + ": " + st.error().message});
  }
  result.records += produced;
  result.rejected += rejects.size();
  return static_cast<int>(seq);
}

std::expected<PollResult, PollError> Extractor::poll(int64_t now) {
  auto fail_poll = [&](PollFailure kind, std::string message) {
    polls(p_.name, failure_label(kind)).add();
    return std::unexpected(PollError{kind, std::move(message)});
  };
  auto stored = store_.since(p_.name);
  if (!stored) return fail_poll(PollFailure::kStore, stored.error().message);
  PollResult result;
  result.since_ms = stored->value_or(s_.start_ms       ? *s_.start_ms
                                     : s_.start_ago_ms ? now - *s_.start_ago_ms
                                                       : now - s_.every_ms);
  auto pending = store_.until(p_.name);
  if (!pending) return fail_poll(PollFailure::kStore, pending.error().message);
  if (const auto until = pending->value_or(std::numeric_limits<int64_t>::min()); until > result.since_ms) {
    result.until_ms = until;  // the window a crash interrupted, redone as it was
  } else {
    result.until_ms = s_.window_ms > 0 ? std::min(now, result.since_ms + s_.window_ms) : now;
    if (result.until_ms <= result.since_ms) return result;
    if (auto st = store_.set_until(p_.name, result.until_ms); !st) {
      return fail_poll(PollFailure::kStore, st.error().message);
    }
  }
  result.caught_up = result.until_ms >= now;
  result.next_since_ms = result.since_ms;

  std::map<std::string, std::string> headers(s_.headers.begin(), s_.headers.end());
  std::string url = window_url(s_, result.since_ms, result.until_ms);
  int64_t max_cursor = 0;
  for (int page_no = 0; !url.empty(); ++page_no) {
    if (page_no >= options_.max_pages) {
      return fail_poll(PollFailure::kMalformed,
                       fmt::format("more than {} pages in one window; the API's next links may loop", page_no));
    }
    auto body = client_.get(url, headers);
    if (!body) {
      if (body.error().code == Errc::kTimeout) return fail_poll(PollFailure::kStopped, body.error().message);
      const bool too_large = body.error().message.find("over the limit") != std::string::npos;
      return fail_poll(too_large ? PollFailure::kMalformed : PollFailure::kHttp, body.error().message);
    }
    auto page = parse_page(s_, *body);
    if (!page) return fail_poll(PollFailure::kMalformed, fmt::format("GET {}: {}", url, page.error().message));
    if (page->records.size() > options_.max_records) {
      return fail_poll(PollFailure::kMalformed, fmt::format("GET {}: {} records in one page, over the limit of {}", url,
                                                            page->records.size(), options_.max_records));
    }
    ++result.pages;
    if (!page->records.empty()) {
      // The same window, page and body give the same saga: a retried poll
      // re-produces what the crashed one did, and every stage folds it.
      const auto saga_id = stable_id(
          {p_.name, std::to_string(result.since_ms), std::to_string(result.until_ms), std::to_string(page_no), *body});
      auto n = produce_page(saga_id, page->records, max_cursor, result);
      if (!n) return fail_poll(n.error().kind, n.error().message);
      ++result.sagas;
    }
    url = page->next.value_or("");
  }
  // Catching up, the window's end moves since on; at the live edge, the
  // newest record does (the API may not have published up to now yet).
  const bool cursor_moves = result.caught_up && s_.cursor_field && max_cursor > 0;
  const int64_t base = cursor_moves ? std::min(result.until_ms, max_cursor + 1) : result.until_ms;
  result.next_since_ms = std::max(result.since_ms, base - s_.lookback_ms);
  if (auto st = store_.set_since(p_.name, result.next_since_ms); !st) {
    return fail_poll(PollFailure::kStore, st.error().message);
  }
  polls(p_.name, "ok").add();
  counter("starling_extract_records_total", "Records pulled and produced to <p>.raw", {{"pipeline", p_.name}})
      .add(result.records);
  counter("starling_extract_rejected_total", "Pulled records that did not convert, sent to <p>.rejected",
          {{"pipeline", p_.name}})
      .add(result.rejected);
  counter("starling_extract_pages_total", "Pages fetched", {{"pipeline", p_.name}}).add(result.pages);
  metrics()
      .gauge("starling_extract_cursor_timestamp_seconds", "Where the next window starts (Unix seconds)",
             {{"pipeline", p_.name}})
      .set(static_cast<double>(result.next_since_ms) / 1000);
  return result;
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
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(s_.every_ms);
    while (!stop_() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

}  // namespace starling::extract
