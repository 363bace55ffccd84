#include "services/saga/console.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "services/common/ids.h"
#include "services/common/time.h"
#include "services/replay/replay.h"
#include "services/saga/saga_api.h"

namespace starling::saga {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kConsolePrefix = "/console/";
constexpr std::string_view kReplaysPrefix = "/v1/replays/";
constexpr std::string_view kSagaPrefix = "/v1/sagas/";

// Replay ids name files in the replay folder: nothing that could leave it.
bool valid_replay_id(const std::string& id) {
  return !id.empty() && id.size() <= 200 && id.front() != '.' && std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
  });
}

json replay_json(const replay::ReplayStatus& s, int64_t now) {
  const uint64_t read = s.offsets_read();
  const uint64_t total = s.offsets_total();
  const int64_t took = std::max<int64_t>(1, (s.updated_ms > 0 ? s.updated_ms : now) - s.started_ms);
  const double rate = s.started_ms > 0 ? static_cast<double>(read) * 1000.0 / static_cast<double>(took) : 0.0;
  json eta = nullptr;
  if ((s.state == "running") && rate > 0 && total >= read) eta = static_cast<double>(total - read) / rate;
  json j = {{"id", s.id},
            {"pipeline", s.pipeline},
            {"stage", s.stage},
            {"state", s.state},
            {"range", s.range},
            {"published", s.published()},
            {"offsets_read", read},
            {"offsets_total", total},
            {"rate", rate},
            {"eta_s", eta},
            {"started", s.started_ms > 0 ? rfc3339(s.started_ms) : ""},
            {"updated", s.updated_ms > 0 ? rfc3339(s.updated_ms) : ""}};
  if (!s.error.empty()) j["error"] = s.error;
  return j;
}

HttpResponse with_console_headers(HttpResponse r) {
  r.headers.emplace_back("Content-Security-Policy", kConsoleCsp);
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
  r.headers.emplace_back("X-Frame-Options", "DENY");
  return r;
}

}  // namespace

HttpResponse console_file(const std::string& path) {
  std::string name = path.size() > kConsolePrefix.size() ? path.substr(kConsolePrefix.size()) : "index.html";
  for (const auto& a : console_assets()) {
    if (name != a.name) continue;
    HttpResponse r{200, std::string(a.body), a.content_type, {}};
    // index.html names the others; it is never cached, so an upgrade shows at once.
    r.headers.emplace_back("Cache-Control", name == "index.html" ? "no-store" : "no-cache");
    return with_console_headers(std::move(r));
  }
  return with_console_headers(
      json_error(404, "no_such_file", "no console file '" + name + "'; the console is /console/"));
}

SagaHttp::SagaHttp(SagaStore& store, const Activity& activity, Clock clock, SagaHttpOptions options)
    : store_(store), activity_(activity), clock_(std::move(clock)), options_(std::move(options)) {}

HttpResponse SagaHttp::handle(const HttpRequest& req) const {
  try {
    if (req.path == "/console" || req.path.starts_with(kConsolePrefix)) {
      if (req.method != "GET") return json_error(405, "method_not_allowed", "use GET");
      return console_file(req.path);
    }
    if (req.path == "/openapi.json") return handle_saga_api(store_, req, clock_, options_.ownership);
    // Who is asking comes before anything that would tell a stranger what exists.
    const ApiKey* key = nullptr;
    if (options_.keys) {
      auto who = authenticate(*options_.keys, req);
      if (!who) return std::move(who.error());
      key = *who;
      if (!key->has_scope("read")) {
        return json_error(
            403, "read_scope_required",
            fmt::format("the key '{}' has no read scope (its scopes: {})", key->name, fmt::join(key->scopes, ", ")),
            "authorization");
      }
      if (req.method != "GET" && req.method != "HEAD" && !key->has_scope("admin")) {
        return json_error(403, "admin_scope_required",
                          fmt::format("the key '{}' may read but not control (it needs the admin scope)", key->name),
                          "authorization");
      }
      if (auto p = req.query.find("pipeline"); p != req.query.end() && !key->allows_pipeline(p->second)) {
        return json_error(403, "pipeline_not_allowed", "the key may not see pipeline '" + p->second + "'", "pipeline");
      }
    }
    return route(req, key);
  } catch (const std::exception& e) {
    spdlog::error("{} {}: {}", req.method, req.path, e.what());
    return json_error(500, "internal", "the request failed; the saga service's log has the cause");
  }
}

HttpResponse SagaHttp::route(const HttpRequest& req, const ApiKey* key) const {
  const auto allowed = [key](const std::string& pipeline) { return key == nullptr || key->allows_pipeline(pipeline); };
  if (req.path == "/v1/whoami") {
    if (req.method != "GET") return json_error(405, "method_not_allowed", "use GET");
    if (key == nullptr) return {200, json({{"auth", false}, {"name", ""}, {"scopes", {"read", "admin"}}}).dump()};
    return {200,
            json({{"auth", true}, {"name", key->name}, {"scopes", key->scopes}, {"pipelines", key->pipelines}}).dump()};
  }
  if (req.path == "/v1/overview") {
    if (req.method != "GET") return json_error(405, "method_not_allowed", "use GET");
    return {200, activity_.overview(clock_(), allowed).dump()};
  }
  if (req.path == "/v1/replays") {
    if (req.method == "POST") return start_replay(req, key);
    if (req.method != "GET") return json_error(405, "method_not_allowed", "use GET or POST");
    return replays(key);
  }
  if (req.path.starts_with(kReplaysPrefix)) {
    const auto rest = req.path.substr(kReplaysPrefix.size());
    const auto slash = rest.find('/');
    if (slash == std::string::npos) return json_error(404, "not_found", "no route for " + req.path);
    const auto id = rest.substr(0, slash);
    const auto action = rest.substr(slash + 1);
    if (action != "pause" && action != "resume" && action != "cancel") {
      return json_error(404, "not_found", "no route for " + req.path + "; expected pause, resume or cancel");
    }
    if (req.method != "POST") return json_error(405, "method_not_allowed", "use POST");
    if (!valid_replay_id(id)) return json_error(400, "invalid_parameter", "not a replay id", "id");
    if (key != nullptr) {
      auto s = replay::read_replay_status(options_.replay_dir, id);
      if (s && !key->allows_pipeline(s->pipeline)) return json_error(404, "unknown_replay", "no replay " + id, "id");
    }
    return control_replay(id, action);
  }
  if (key != nullptr && !key->allows_pipeline("*")) {
    // A key limited to some pipelines: a saga of another is not there for it.
    if (req.path.starts_with(kSagaPrefix)) {
      auto id = req.path.substr(kSagaPrefix.size());
      id = id.substr(0, id.find('/'));
      auto r = store_.get(id);
      const std::optional<v1::SagaRecord> found = r ? std::move(*r) : std::nullopt;
      if (found.has_value() && !allowed(found->pipeline())) {
        return json_error(404, "unknown_saga", "no saga with id '" + id + "'", "saga_id");
      }
    } else if (req.path == "/v1/sagas" && !req.query.contains("pipeline")) {
      return json_error(400, "invalid_parameter", "pipeline: this key sees some pipelines only; name one", "pipeline");
    }
  }
  if (options_.topics) {
    if (auto r = handle_topics_api(*options_.topics, store_, req, clock_)) return std::move(*r);
  }
  if (req.method != "GET") return json_error(405, "method_not_allowed", "the saga API is read-only");
  return handle_saga_api(store_, req, clock_, options_.ownership);
}

HttpResponse SagaHttp::replays(const ApiKey* key) const {
  json list = json::array();
  if (!options_.replay_dir.empty()) {
    std::error_code ec;
    std::vector<std::string> ids;
    for (fs::directory_iterator it(options_.replay_dir, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->path().extension() == ".json") ids.push_back(it->path().stem().string());
    }
    std::sort(ids.begin(), ids.end());
    const int64_t now = clock_();
    std::vector<json> found;
    for (const auto& id : ids) {
      if (!valid_replay_id(id)) continue;
      auto s = replay::read_replay_status(options_.replay_dir, id);
      if (!s) continue;  // being written, or not a replay's: listed when it reads
      if (key != nullptr && !key->allows_pipeline(s->pipeline)) continue;
      found.push_back(replay_json(*s, now));
    }
    // The newest first.
    std::stable_sort(found.begin(), found.end(), [](const json& a, const json& b) {
      return a.value("started", std::string{}) > b.value("started", std::string{});
    });
    for (auto& j : found) list.push_back(std::move(j));
  }
  return {200, json({{"replays", std::move(list)}}).dump()};
}

void default_replay_runner(const replay::ReplayOptions& options) {
  auto res = replay::run_replay(options);
  if (!res) spdlog::warn("console replay {}: {}", options.id, res.error().message);
}

SagaHttp::~SagaHttp() {
  std::lock_guard lock(replays_mu_);
  for (auto& r : running_) {
    if (!r.done->load()) {
      if (auto st = replay::control_replay(options_.replay_dir, r.id, "cancel"); !st) {
        spdlog::warn("console replay {}: {}", r.id, st.error().message);
      }
    }
    if (r.thread.joinable()) r.thread.join();
  }
}

std::optional<HttpResponse> SagaHttp::select_redrive(replay::ReplayOptions& o, RejectSelection selection) const {
  if (!options_.topics) return json_error(409, "replays_not_configured", "this starling-saga does not read topics");
  if (o.stage != "clean") return json_error(400, "invalid_parameter", "stage: a re-drive goes through clean", "stage");
  if (!o.saga.empty()) {
    return json_error(400, "invalid_parameter", "saga: re-drive a saga by replaying it, without rule or field", "saga");
  }
  const auto* pipeline = topics_pipeline(*options_.topics, o.pipeline);
  if (pipeline == nullptr) return json_error(404, "unknown_pipeline", "no pipeline '" + o.pipeline + "'", "pipeline");
  const int64_t now = clock_();
  for (const auto& [name, text, out] :
       {std::tuple{"from", &o.from, &selection.since_ms}, std::tuple{"to", &o.to, &selection.until_ms}}) {
    if (text->empty()) continue;
    *out = parse_time_param(*text, now);
    if (!*out)
      return json_error(400, "invalid_parameter", std::string(name) + ": expected a time or a duration back", name);
  }
  auto picked = select_rejects(*options_.topics, *pipeline, selection, kRedriveMax);
  if (!picked) return json_error(503, "kafka_unavailable", picked.error().message);
  if (picked->event_ids.empty()) {
    return json_error(404, "nothing_to_redrive",
                      fmt::format("no record rejected by clean matches (rule '{}', field '{}', device '{}')",
                                  selection.rule, selection.field, selection.device_id),
                      selection.rule.empty() ? "field" : "rule");
  }
  if (picked->matched > kRedriveMax) {
    return json_error(400, "selection_too_large",
                      fmt::format("{} rejected records match; one re-drive takes at most {}: narrow it with from, to "
                                  "or device_id",
                                  picked->matched, kRedriveMax),
                      "from");
  }
  // Read them back from <p>.raw over the span of their ingest times; the
  // replay skips every other event there.
  constexpr int64_t kSlackMs = 60'000;
  o.from = std::to_string(std::max<int64_t>(0, picked->first_ingest_ms - kSlackMs));
  o.to = std::to_string(picked->last_ingest_ms + kSlackMs);
  o.event_ids = std::move(picked->event_ids);
  return std::nullopt;
}

HttpResponse SagaHttp::start_replay(const HttpRequest& req, const ApiKey* key) const {
  if (options_.replay_dir.empty() || options_.kafka.empty()) {
    return json_error(409, "replays_not_configured", "this starling-saga has no --replay-dir; run `starling replay`");
  }
  constexpr std::size_t kBodyMax = 4096;
  if (req.body.size() > kBodyMax) return json_error(413, "body_too_large", "a replay request is at most 4096 bytes");
  const auto body = json::parse(req.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return json_error(400, "invalid_body", "expected a JSON object: {\"pipeline\", \"stage\", \"saga\" or \"from\"}");
  }
  replay::ReplayOptions o;
  o.kafka = options_.kafka;
  o.kafka_properties = options_.kafka_properties;
  o.state_dir = options_.replay_dir;
  const auto text = [&](const char* field, std::string& out) -> std::optional<HttpResponse> {
    if (!body.contains(field)) return std::nullopt;
    if (!body[field].is_string() || body[field].get<std::string>().size() > 200) {
      return json_error(400, "invalid_parameter", fmt::format("{}: expected a string of at most 200 bytes", field),
                        field);
    }
    out = body[field].get<std::string>();
    return std::nullopt;
  };
  for (const auto& [k, v] : body.items()) {
    if (k != "pipeline" && k != "stage" && k != "saga" && k != "from" && k != "to" && k != "rate" && k != "rule" &&
        k != "field" && k != "device_id") {
      return json_error(400, "invalid_parameter",
                        k + ": unknown; expected pipeline, stage, saga, from, to, rate, or rule, field, device_id", k);
    }
  }
  // A re-drive: the clean-stage rejects that match rule, field and device
  // (from and to bound when they were rejected), replayed through clean.
  RejectSelection selection;
  for (const auto& [f, out] : {std::pair{"rule", &selection.rule}, std::pair{"field", &selection.field},
                               std::pair{"device_id", &selection.device_id}}) {
    if (auto bad = text(f, *out)) return *bad;
  }
  const bool redrive = !selection.rule.empty() || !selection.field.empty() || !selection.device_id.empty();
  for (const auto* f : {"pipeline", "stage", "saga", "from", "to"}) {
    std::string* out = f == std::string_view("pipeline") ? &o.pipeline
                       : f == std::string_view("stage")  ? &o.stage
                       : f == std::string_view("saga")   ? &o.saga
                       : f == std::string_view("from")   ? &o.from
                                                         : &o.to;
    if (auto bad = text(f, *out)) return *bad;
  }
  if (body.contains("rate")) {
    if (!body["rate"].is_number() || body["rate"].get<double>() < 0 || body["rate"].get<double>() > 1e6) {
      return json_error(400, "invalid_parameter", "rate: expected events per second from 0 (no limit) to 1000000",
                        "rate");
    }
    o.rate = body["rate"].get<double>();
  }
  if (o.pipeline.empty()) return json_error(400, "invalid_parameter", "pipeline: required", "pipeline");
  if (key != nullptr && !key->allows_pipeline(o.pipeline)) {
    return json_error(403, "pipeline_not_allowed", "the key may not see pipeline '" + o.pipeline + "'", "pipeline");
  }
  if (redrive) {
    if (auto bad = select_redrive(o, selection)) return *bad;
  } else if (!o.saga.empty()) {
    auto r = store_.get(o.saga);
    if (!r) return json_error(500, "store_error", r.error().message);
    const std::optional<v1::SagaRecord>& found = *r;
    if (!found.has_value() || found->pipeline() != o.pipeline) {
      return json_error(404, "unknown_saga", "no saga '" + o.saga + "' in pipeline '" + o.pipeline + "'", "saga");
    }
    // Its events were ingested at its creation: start a minute before, not at the beginning of the topic.
    if (o.from.empty() && found->created_ms() > 60'000) o.from = std::to_string(found->created_ms() - 60'000);
  }
  if (auto st = replay::check_replay_options(o); !st) {
    // The checks name CLI flags; here they are fields.
    auto message = st.error().message;
    if (message.starts_with("--")) message = message.substr(2);
    const auto field = message.substr(0, message.find(':'));
    return json_error(400, "invalid_parameter", message, field);
  }
  o.id = std::string(kReplaySagaPrefix) + random_id();
  std::lock_guard lock(replays_mu_);
  std::erase_if(running_, [](Running& r) {
    if (!r.done->load()) return false;
    if (r.thread.joinable()) r.thread.join();
    return true;
  });
  if (running_.size() >= kConsoleReplaysMax) {
    return json_error(429, "too_many_replays",
                      fmt::format("{} replays started here are running; wait for one or cancel it", running_.size()));
  }
  auto done = std::make_shared<std::atomic<bool>>(false);
  running_.push_back({o.id, std::thread([o, done, run = options_.run_replay] {
                        run(o);
                        *done = true;
                      }),
                      done});
  spdlog::info("console: {} started replay {} of {} ({} stage{}{})", key != nullptr ? key->name : "a user", o.id,
               o.pipeline, o.stage, o.saga.empty() ? "" : ", saga " + o.saga,
               o.event_ids.empty() ? "" : fmt::format(", {} rejected records", o.event_ids.size()));
  json answer = {{"id", o.id}, {"saga_id", o.id}};
  if (!o.event_ids.empty()) answer["records"] = o.event_ids.size();
  return {202, answer.dump()};
}

HttpResponse SagaHttp::control_replay(const std::string& id, const std::string& action) const {
  if (options_.replay_dir.empty()) return json_error(404, "unknown_replay", "no replay folder is configured", "id");
  auto s = replay::read_replay_status(options_.replay_dir, id);
  if (!s) return json_error(404, "unknown_replay", "no replay " + id, "id");
  if (auto st = replay::control_replay(options_.replay_dir, id, action); !st) {
    return json_error(409, "replay_refused", st.error().message, "id");
  }
  auto now = replay::read_replay_status(options_.replay_dir, id);
  spdlog::info("console: replay {} {}", id, action);
  return {200, json({{"id", id}, {"action", action}, {"state", now ? now->state : s->state}}).dump()};
}

}  // namespace starling::saga
