#include "services/ingest/ingest_service.h"

#include <mutex>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "services/common/ids.h"
#include "services/common/metrics.h"
#include "services/common/records.h"
#include "services/common/time.h"
#include "starling/v1/envelope.pb.h"
#include "starling/v1/saga.pb.h"

namespace starling::ingest {

using nlohmann::json;

IngestService::IngestService(std::map<std::string, PipelineConfig> pipelines, kafka::Producer& producer,
                             std::string instance)
    : pipelines_(std::move(pipelines)), producer_(producer), instance_(std::move(instance)) {}

void IngestService::handle(HttpRequest req, HttpResponder inner) {
  // Every answer is counted by status code.
  auto respond = [inner = std::move(inner)](HttpResponse r) {
    metrics()
        .counter("starling_ingest_requests_total", "Event requests answered, by HTTP status",
                 {{"code", std::to_string(r.status)}})
        .add();
    inner(std::move(r));
  };
  // /v1/pipelines/{p}/events
  constexpr std::string_view prefix = "/v1/pipelines/";
  constexpr std::string_view suffix = "/events";
  if (req.path.starts_with(prefix) && req.path.ends_with(suffix) && req.path.size() > prefix.size() + suffix.size()) {
    const auto name = req.path.substr(prefix.size(), req.path.size() - prefix.size() - suffix.size());
    if (req.method != "POST") return respond(json_error(405, "method_not_allowed", "use POST to send events"));
    const auto it = pipelines_.find(name);
    if (it == pipelines_.end()) {
      return respond(json_error(404, "unknown_pipeline", fmt::format("no pipeline named '{}'", name), "pipeline"));
    }
    return post_events(it->second, req, std::move(respond));
  }
  respond(json_error(404, "not_found", fmt::format("no route for {} {}", req.method, req.path)));
}

void IngestService::post_events(const PipelineConfig& p, const HttpRequest& req, HttpResponder respond) {
  json body;
  try {
    body = json::parse(req.body);
  } catch (const json::parse_error& e) {
    return respond(json_error(400, "invalid_json", e.what(), "body"));
  }
  if (body.is_object()) body = json::array({std::move(body)});
  if (!body.is_array()) return respond(json_error(400, "invalid_body", "expected a JSON array of records", "body"));
  if (body.empty()) return respond(json_error(400, "empty_batch", "the array holds no records", "body"));

  const auto saga_id = random_id();
  const auto trace_id = req.header("traceparent").empty() ? random_id() : req.header("traceparent");
  const auto ingest_ms = now_ms();
  json refused = json::array();
  std::vector<kafka::OutMessage> out;
  out.reserve(body.size() + 1);
  uint32_t seq = 0;
  for (std::size_t i = 0; i < body.size(); ++i) {
    auto record = record_from_json(p, body[i]);
    if (!record) {
      refused.push_back({{"index", i}, {"reason", record.error().message}});
      continue;
    }
    const auto& msg = **record;
    v1::Envelope env;
    env.set_event_id(p.event_id_field ? field_text(msg, p.event_id_field) : std::string{});
    if (env.event_id().empty()) env.set_event_id(fmt::format("{}-{}", saga_id, seq));
    env.set_saga_id(saga_id);
    env.set_seq(seq);
    env.set_pipeline(p.name);
    if (p.device_id_field) env.set_device_id(field_text(msg, p.device_id_field));
    env.set_event_time_ms(p.event_time_field ? timestamp_ms(msg, p.event_time_field) : ingest_ms);
    if (env.event_time_ms() == 0) env.set_event_time_ms(ingest_ms);
    env.set_ingest_time_ms(ingest_ms);
    env.set_schema_name(p.message_type);
    env.set_schema_version(p.schema_version);
    env.set_trace_id(trace_id);
    msg.SerializeToString(env.mutable_payload());
    out.push_back({p.raw_topic(), env.device_id().empty() ? env.event_id() : env.device_id(),
                   env.SerializeAsString(), {{kafka::kTraceHeader, trace_id}}});
    ++seq;
  }
  if (seq == 0) {
    return respond(HttpResponse{422,
                                json{{"error", {{"code", "no_valid_records"},
                                                {"message", "no record could be converted to " + p.message_type},
                                                {"field", "body"}}},
                                     {"refused", refused}}
                                    .dump()});
  }
  v1::ProgressFact fact;
  fact.set_saga_id(saga_id);
  fact.set_pipeline(p.name);
  fact.set_step(v1::STEP_INGESTED);
  fact.set_total(seq);
  auto* range = fact.add_seqs();
  range->set_first(0);
  range->set_last(seq - 1);
  fact.set_source(instance_);
  fact.set_time_ms(ingest_ms);
  out.push_back({kSagaTopic, saga_id, fact.SerializeAsString(), {{kafka::kTraceHeader, trace_id}}});

  // The answer waits for every delivery report; the last one sends it.
  struct Pending {
    std::mutex mu;
    std::size_t left;
    std::string error;
    HttpResponder respond;
    json receipt;
  };
  auto pending = std::make_shared<Pending>();
  pending->left = out.size();
  pending->respond = std::move(respond);
  pending->receipt = {{"saga_id", saga_id}, {"pipeline", p.name}, {"accepted", seq}, {"refused", refused}};
  for (auto& m : out) {
    producer_.produce(std::move(m), [pending](const kafka::Delivery& d) {
      std::unique_lock lock(pending->mu);
      if (d.status != kafka::DeliveryStatus::persisted && pending->error.empty()) pending->error = d.error;
      if (--pending->left != 0) return;
      lock.unlock();
      if (pending->error.empty()) {
        const auto pipeline = pending->receipt["pipeline"].get<std::string>();
        metrics()
            .counter("starling_ingest_events_accepted_total", "Events persisted in Kafka and acknowledged with 202",
                     {{"pipeline", pipeline}})
            .add(pending->receipt["accepted"].get<uint64_t>());
        pending->respond({202, pending->receipt.dump()});
      } else {
        spdlog::warn("saga {} not accepted: {}", pending->receipt["saga_id"].get<std::string>(), pending->error);
        auto resp = json_error(503, "broker_unavailable",
                               "not every event was persisted (" + pending->error + "); retry the request");
        resp.headers.emplace_back("Retry-After", "1");
        pending->respond(std::move(resp));
      }
    });
  }
}

}  // namespace starling::ingest
