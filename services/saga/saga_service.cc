#include "services/saga/saga_service.h"

#include <unordered_map>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "services/common/pipeline.h"
#include "services/common/shutdown.h"
#include "services/common/time.h"
#include "services/saga/saga_state.h"

namespace starling::saga {

using nlohmann::json;

SagaService::SagaService(SagaStore& store, kafka::KafkaOptions kafka, std::string instance, SagaOptions options)
    : store_(store), kafka_(std::move(kafka)), instance_(std::move(instance)), options_(options) {}

int SagaService::run() {
  auto producer = kafka::KafkaProducer::create(kafka_, {.queue_full_wait = std::chrono::seconds(60)});
  if (!producer) {
    spdlog::critical("{}", producer.error().message);
    return 1;
  }
  auto relay = [&] {
    if (auto sent = kafka::relay_outbox(store_, **producer); !sent) spdlog::warn("outcome relay: {}", sent.error().message);
  };
  relay();
  kafka::RebalanceHooks hooks;
  hooks.on_assign = [this](const std::vector<kafka::TopicPartition>& parts) {
    auto stored = store_.offsets();
    STARLING_ASSERT(stored.has_value(), "cannot read stored offsets: {}", stored.error().message);
    std::map<kafka::TopicPartition, int64_t> starts;
    for (const auto& tp : parts) {
      if (auto it = stored->find(tp); it != stored->end()) starts[tp] = it->second;
    }
    spdlog::info("resuming {} of {} partitions from offsets in RocksDB", starts.size(), parts.size());
    return starts;
  };
  auto consumer = kafka::KafkaConsumer::create(kafka_, "starling-saga", {kSagaTopic}, std::move(hooks));
  if (!consumer) {
    spdlog::critical("{}", consumer.error().message);
    return 1;
  }
  uint64_t folded = 0;
  while (!shutdown_requested()) {
    auto batch = (*consumer)->poll_batch(options_.batch_max, options_.batch_wait);
    if (!batch) {
      spdlog::critical("{}", batch.error().message);
      return 1;
    }
    if (batch->empty()) continue;
    std::unordered_map<std::string, v1::SagaRecord> dirty;
    std::unordered_map<std::string, v1::SagaState> before;
    std::map<kafka::TopicPartition, int64_t> next;
    for (const auto& in : *batch) {
      next[{in.topic, in.partition}] = in.offset + 1;
      v1::ProgressFact fact;
      if (!fact.ParseFromString(in.value) || fact.saga_id().empty()) {
        spdlog::warn("{}/{}@{}: not a progress fact; skipped", in.topic, in.partition, in.offset);
        continue;
      }
      auto it = dirty.find(fact.saga_id());
      if (it == dirty.end()) {
        auto stored = store_.get(fact.saga_id());
        if (!stored) {
          spdlog::critical("saga store: {}", stored.error().message);
          return 1;
        }
        it = dirty.emplace(fact.saga_id(), stored->value_or(v1::SagaRecord{})).first;
        before[fact.saga_id()] = it->second.state();
      }
      fold(it->second, fact);
      ++folded;
    }
    std::vector<v1::SagaRecord> records;
    std::vector<kafka::OutMessage> outcomes;
    for (auto& [id, r] : dirty) {
      if (r.state() == v1::SAGA_STATE_COMPLETED && before[id] != v1::SAGA_STATE_COMPLETED) {
        const auto c = counts(r);
        v1::SagaOutcome o;
        o.set_saga_id(id);
        o.set_pipeline(r.pipeline());
        o.set_state(r.state());
        o.set_total(r.total());
        o.set_loaded(c.loaded);
        o.set_rejected(c.rejected + c.rejected_at_load);
        o.set_time_ms(now_ms());
        outcomes.push_back({kOutcomeTopic, id, o.SerializeAsString(), {}});
      }
      records.push_back(std::move(r));
    }
    if (auto st = store_.commit(records, next, outcomes); !st) {
      spdlog::critical("saga store commit: {}", st.error().message);
      return 1;  // nothing was applied; a restart refolds from the stored offsets
    }
    if (!outcomes.empty()) relay();
  }
  spdlog::info("draining: folded {} facts this run", folded);
  relay();
  (*consumer)->close();
  return 0;
}

namespace {

json to_json(const v1::SagaRecord& r, bool detail) {
  const auto c = counts(r);
  json j = {{"saga_id", r.saga_id()},
            {"pipeline", r.pipeline()},
            {"state", state_name(r.state())},
            {"total", r.total()},
            {"ingested", r.ingested()},
            {"counts",
             {{"cleaned", c.cleaned},
              {"rejected", c.rejected},
              {"loaded", c.loaded},
              {"rejected_at_load", c.rejected_at_load},
              {"in_flight", c.in_flight}}},
            {"created_ms", r.created_ms()},
            {"updated_ms", r.updated_ms()}};
  if (detail) {
    json reasons = json::object();
    for (const auto& [k, v] : r.reason_counts()) reasons[k] = v;
    j["reasons"] = reasons;
  }
  return j;
}

}  // namespace

HttpResponse handle_saga_api(SagaStore& store, const HttpRequest& req) {
  if (req.method != "GET") return json_error(405, "method_not_allowed", "the saga API is read-only");
  if (req.path == "/healthz" || req.path == "/readyz") return {200, R"({"status":"ok"})"};
  constexpr std::string_view one = "/v1/sagas/";
  if (req.path.starts_with(one) && req.path.size() > one.size()) {
    const auto id = req.path.substr(one.size());
    auto r = store.get(id);
    if (!r) return json_error(500, "store_error", r.error().message);
    if (!r->has_value()) return json_error(404, "unknown_saga", "no saga with id '" + id + "'", "saga_id");
    return {200, to_json(**r, true).dump()};
  }
  if (req.path == "/v1/sagas") {
    const auto state = req.query.contains("state") ? req.query.at("state") : "";
    const auto pipeline = req.query.contains("pipeline") ? req.query.at("pipeline") : "";
    std::size_t limit = 100;
    if (req.query.contains("limit")) {
      try {
        limit = std::stoul(req.query.at("limit"));
      } catch (const std::exception&) {
        return json_error(400, "invalid_parameter", "limit: expected a non-negative integer", "limit");
      }
    }
    json list = json::array();
    json by_state = json::object();
    uint64_t sagas = 0, accepted = 0, loaded = 0, rejected = 0, in_flight = 0;
    auto st = store.scan([&](const v1::SagaRecord& r) {
      if (!pipeline.empty() && r.pipeline() != pipeline) return true;
      const std::string name = state_name(r.state());
      if (!state.empty() && name != state) return true;
      const auto c = counts(r);
      ++sagas;
      by_state[name] = by_state.value(name, 0) + 1;
      accepted += r.total();
      loaded += c.loaded;
      rejected += c.rejected + c.rejected_at_load;
      in_flight += c.in_flight;
      if (list.size() < limit) list.push_back(to_json(r, false));
      return true;
    });
    if (!st) return json_error(500, "store_error", st.error().message);
    json totals = {{"sagas", sagas}, {"by_state", by_state}, {"accepted", accepted},
                   {"loaded", loaded}, {"rejected", rejected}, {"in_flight", in_flight}};
    return {200, json{{"sagas", list}, {"totals", totals}}.dump()};
  }
  return json_error(404, "not_found", "no route for " + req.path);
}

}  // namespace starling::saga
