#include "services/ingest/ingest_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <thread>

#include "services/common/ids.h"
#include "services/common/metrics.h"
#include "services/common/records.h"
#include "services/common/text.h"

namespace starling::ingest {

using nlohmann::json;

namespace {

constexpr int kMaxProxies = 16;

// Where a record's problem is, as error.field names it: records[3].device_id.
std::string record_path(const FieldError& e) {
  return fmt::format("records[{}]{}{}", e.index, e.field.empty() ? "" : ".", e.field);
}

json refused_json(const std::vector<FieldError>& refused) {
  json out = json::array();
  for (const auto& r : refused) out.push_back({{"index", r.index}, {"field", r.field}, {"reason", r.reason}});
  return out;
}

HttpResponse with_retry_after(HttpResponse r, double seconds) {
  r.headers.emplace_back("Retry-After", std::to_string(std::max<long>(1, std::lround(std::ceil(seconds)))));
  return r;
}

// Printable ASCII without spaces, 1..255 characters (as Stripe and the IETF draft allow).
bool valid_idempotency_key(const std::string& k) {
  if (k.empty() || k.size() > 255) return false;
  for (const char c : k) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace

IngestService::IngestService(std::map<std::string, PipelineConfig> pipelines, kafka::Producer& producer,
                             std::string instance, IngestOptions options)
    : pipelines_(std::move(pipelines)),
      ingestor_(producer, std::move(instance)),
      options_(std::move(options)),
      limiter_(options_.device_rate, options_.max_tracked_devices) {
  for (const auto& [name, p] : pipelines_) {
    counters_[name] = {&metrics().counter("starling_ingest_events_accepted_total",
                                          "Events persisted in Kafka and acknowledged with 202", {{"pipeline", name}}),
                       &metrics().counter("starling_ingest_events_refused_total",
                                          "Records refused because they do not convert", {{"pipeline", name}})};
  }
}

void IngestService::handle(HttpRequest req, HttpResponder respond) {
  // Answers are counted by route and status around this (service_routes).
  if (req.path == "/openapi.json") {
    if (req.method != "GET") return respond(json_error(405, "method_not_allowed", "use GET"));
    return respond({200, openapi_json()});
  }
  constexpr std::string_view kPrefix = "/v1/pipelines/";
  constexpr std::string_view kSuffix = "/events";
  const bool events =
      req.path.starts_with(kPrefix) && req.path.ends_with(kSuffix) && req.path.size() > kPrefix.size() + kSuffix.size();
  // Only /v1/sagas/{saga_id}: the saga API's deeper paths (/v1/sagas/{id}/events) are not proxied.
  constexpr std::string_view kSagas = "/v1/sagas/";
  const bool sagas = req.path.starts_with(kSagas) && req.path.find('/', kSagas.size()) == std::string::npos;
  if (!events && !sagas)
    return respond(json_error(404, "not_found", fmt::format("no route for {} {}", req.method, req.path)));

  // Who is asking comes before anything that would tell a stranger what exists.
  const ApiKey* key = nullptr;
  if (options_.keys) {
    auto who = authenticate(*options_.keys, req);
    if (!who) return respond(std::move(who.error()));
    key = *who;
  }
  if (sagas) {
    if (req.method != "GET") return respond(json_error(405, "method_not_allowed", "use GET"));
    return get_saga(key, req, std::move(respond));
  }
  const auto name = req.path.substr(kPrefix.size(), req.path.size() - kPrefix.size() - kSuffix.size());
  if (req.method != "POST") return respond(json_error(405, "method_not_allowed", "use POST to send events"));
  if (key != nullptr && !key->has_scope("ingest")) {
    return respond(json_error(
        403, "scope_not_allowed",
        fmt::format("the key '{}' may not send events (its scopes: {})", key->name, fmt::join(key->scopes, ", ")),
        "authorization"));
  }
  if (key != nullptr && !key->allows_pipeline(name)) {
    return respond(json_error(403, "pipeline_not_allowed",
                              fmt::format("API key '{}' may not send to pipeline '{}'", key->name, name), "pipeline"));
  }
  const auto it = pipelines_.find(name);
  if (it == pipelines_.end()) {
    return respond(json_error(404, "unknown_pipeline", fmt::format("no pipeline named '{}'", name), "pipeline"));
  }
  post_events(it->second, key, req, std::move(respond));
}

void IngestService::post_events(const PipelineConfig& p, const ApiKey* key, const HttpRequest& req,
                                HttpResponder respond) {
  const auto format = body_format(req.header("content-type"));
  if (!format) return respond(json_error(415, "unsupported_media_type", format.error().message, "content-type"));
  const auto atomic_it = req.query.find("atomic");
  const bool atomic = atomic_it != req.query.end() && (atomic_it->second == "true" || atomic_it->second == "1");
  if (atomic_it != req.query.end() && !atomic && atomic_it->second != "false" && atomic_it->second != "0") {
    return respond(json_error(400, "invalid_parameter", "atomic must be true or false, got '" + atomic_it->second + "'",
                              "atomic"));
  }
  const auto idem_key = req.header("idempotency-key");
  if (req.headers.contains("idempotency-key") && !valid_idempotency_key(idem_key)) {
    return respond(json_error(400, "invalid_idempotency_key",
                              "Idempotency-Key must be 1 to 255 printable ASCII characters without spaces",
                              "idempotency-key"));
  }

  auto decoded = decode_body(p, *format, req.body);
  if (!decoded) return respond(json_error(400, "invalid_body", decoded.error().message, "body"));
  if (decoded->count() > options_.max_records) {
    return respond(json_error(
        413, "too_many_records",
        fmt::format("{} records in one request; at most {}", decoded->count(), options_.max_records), "body"));
  }
  auto& refused_total = *counters_.at(p.name).refused;
  // A record over the size limits would be accepted and then stuck: its
  // derived records might not fit Kafka's maximum. The request is refused whole.
  for (const auto& rec : decoded->records) {
    if (auto e = over_limits(*rec.message, options_.limits, rec.index)) {
      refused_total.add(decoded->count());
      return respond(json_error(
          413, "record_too_large",
          fmt::format("record {}: {}{}", e->index, e->field.empty() ? "" : "field '" + e->field + "': ", e->reason),
          record_path(*e)));
    }
  }
  // A key scoped to a device pattern may send only those devices' events.
  std::map<std::string, double> by_device;
  for (const auto& rec : decoded->records) {
    const auto device = p.device_id_field ? field_text(*rec.message, p.device_id_field) : std::string{};
    if (key != nullptr && !key->allows_device(device)) {
      return respond(json_error(
          403, "device_not_allowed",
          fmt::format("record {}: API key '{}' may not send for device '{}' (allowed: {})", rec.index, key->name,
                      device, key->devices),
          fmt::format("records[{}].{}", rec.index, p.device_id_field ? p.device_id_field->name() : "device_id")));
    }
    by_device[device] += 1;
  }
  if (decoded->records.empty() || (atomic && !decoded->refused.empty())) {
    refused_total.add(decoded->count());
    const auto& first = decoded->refused.front();
    json body = {{"error",
                  {{"code", decoded->records.empty() ? "no_valid_records" : "invalid_records"},
                   {"message", fmt::format("{} of {} records do not convert to {}{}; the first: record {}: {}: {}",
                                           decoded->refused.size(), decoded->count(), p.message_type,
                                           atomic ? " and atomic=true refuses them all" : "", first.index,
                                           first.field.empty() ? "(record)" : first.field, first.reason)},
                   {"field", record_path(first)}}},
                 {"refused", refused_json(decoded->refused)}};
    return respond({422, json_text(body)});
  }
  std::string who;
  if (const double wait = limiter_.admit(key, p.name, by_device, who); wait > 0) {
    return respond(with_retry_after(
        json_error(429, "rate_limited", fmt::format("{} is over its rate; retry in {:.1f} s", who, wait),
                   who.starts_with("device") ? "device_id" : "authorization"),
        wait));
  }

  // Never a client header stored raw: only a traceparent that parses lends
  // its trace id; another is dropped with a warning, and the batch gets one.
  std::string trace_id;
  if (req.headers.contains("traceparent")) {
    if (auto t = traceparent_trace_id(req.header("traceparent"))) {
      trace_id = std::move(*t);
    } else {
      spdlog::warn("pipeline {}: ignored a traceparent that is not W3C Trace Context: '{}'", p.name,
                   excerpt(req.header("traceparent")));
    }
  }
  Batch batch{&p, std::move(decoded->records), {}, std::move(trace_id)};
  const std::string scope = key != nullptr ? key->name : "";
  const auto h = sha256(req.header("content-type") + '\n' + req.body);
  // Without an Idempotency-Key the body is the key: a client that retries a
  // 503 (or a timeout) with the same body gets the same saga, seqs and event
  // ids, which every stage folds idempotently, so each reading is loaded
  // once. The MQTT bridge derives its sagas the same way. A device that
  // sends one reading twice on purpose must make the bodies differ (an
  // event_id or an event_time); see README, "Retries".
  batch.saga_id = derived_saga_id(scope, p.name, "body:" + hex(h.data(), h.size()));
  std::string idem_id;
  if (!idem_key.empty()) {
    idem_id = derived_saga_id(scope, p.name, idem_key);
    HttpResponse stored;
    switch (idempotency_.begin(idem_id, hex(h.data(), h.size()), stored)) {
      case IdempotencyCache::Begin::kReplay:
        stored.headers.emplace_back("Idempotent-Replayed", "true");
        return respond(std::move(stored));
      case IdempotencyCache::Begin::kInFlight:
        return respond(with_retry_after(
            json_error(409, "request_in_progress", "a request with this Idempotency-Key is still being processed",
                       "idempotency-key"),
            1));
      case IdempotencyCache::Begin::kMismatch:
        return respond(json_error(422, "idempotency_key_reused",
                                  "this Idempotency-Key was used for a different request body", "idempotency-key"));
      case IdempotencyCache::Begin::kFresh:
        break;
    }
    batch.saga_id = idem_id;
  }
  auto refused = refused_json(decoded->refused);
  refused_total.add(decoded->refused.size());
  auto& accepted_total = *counters_.at(p.name).accepted;
  ingestor_.submit(std::move(batch), [this, &accepted_total, idem_id, refused = std::move(refused), pipeline = p.name,
                                      respond = std::move(respond)](Result<Receipt> r) mutable {
    HttpResponse answer;
    if (r) {
      accepted_total.add(r->accepted);
      answer = {202, json_text(json{{"saga_id", r->saga_id},
                                    {"pipeline", pipeline},
                                    {"accepted", r->accepted},
                                    {"refused", std::move(refused)},
                                    {"trace_id", r->trace_id}})};
    } else {
      spdlog::warn("request for pipeline {} not accepted: {}", pipeline, r.error().message);
      answer =
          with_retry_after(json_error(503, "broker_unavailable",
                                      "not every event was persisted (" + r.error().message + "); retry the request"),
                           1);
    }
    if (!idem_id.empty()) idempotency_.finish(idem_id, answer);
    respond(std::move(answer));
  });
}

void IngestService::get_saga(const ApiKey* key, const HttpRequest& req, HttpResponder respond) {
  if (options_.saga_url.empty()) {
    return respond(json_error(404, "no_saga_service", "this front door is not configured with --saga-url"));
  }
  const auto id = req.path.substr(std::string_view("/v1/sagas/").size());
  // Saga ids are hex (random or derived) or "replay-<hex>"; anything URL-safe
  // up to kMaxSagaId passes to the coordinator, which answers 404 for the rest.
  constexpr std::size_t kMaxSagaId = 128;
  if (id.empty() || id.size() > kMaxSagaId ||
      id.find_first_not_of("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ._-") != std::string::npos) {
    return respond(json_error(
        400, "invalid_saga_id",
        fmt::format("expected a saga id: 1 to {} letters, digits, '.', '_' or '-' (as 'replay-…')", kMaxSagaId),
        "saga_id"));
  }
  if (proxies_.fetch_add(1) >= kMaxProxies) {
    proxies_.fetch_sub(1);
    return respond(with_retry_after(json_error(503, "busy", "too many saga lookups in flight"), 1));
  }
  // The coordinator's client blocks; keep it off the io threads.
  std::thread([this, key, url = options_.saga_url + "/v1/sagas/" + id, respond = std::move(respond)] {
    auto r = http_call("GET", url, {}, {}, 5'000);
    proxies_.fetch_sub(1);
    if (!r) return respond(with_retry_after(json_error(503, "saga_service_unavailable", r.error().message), 1));
    if (r->status == 200 && key != nullptr) {
      // A key sees only the sagas of its own pipelines; others do not exist for it.
      const auto body = json::parse(r->body, nullptr, false);
      if (body.is_discarded() || !key->allows_pipeline(body.value("pipeline", ""))) {
        return respond(json_error(404, "unknown_saga", "no such saga", "saga_id"));
      }
    }
    respond({r->status, std::move(r->body)});
  }).detach();
}

}  // namespace starling::ingest
