#include "services/saga/saga_api.h"

#include <fmt/format.h>

#include <charconv>
#include <nlohmann/json.hpp>

#include "services/common/text.h"
#include "services/common/time.h"
#include "services/saga/saga_state.h"

namespace starling::saga {

using nlohmann::json;

namespace {

json counts_json(const v1::SagaRecord& r) {
  const auto c = counts(r);
  return {{"cleaned", c.cleaned},
          {"rejected", c.rejected},
          {"loaded", c.loaded},
          {"rejected_at_load", c.rejected_at_load},
          {"in_flight", c.in_flight}};
}

json to_json(const v1::SagaRecord& r, bool detail) {
  json j = {{"saga_id", r.saga_id()},
            {"pipeline", r.pipeline()},
            {"state", state_name(r.state())},
            {"total", r.total()},
            {"counts", counts_json(r)},
            {"created_ms", r.created_ms()},
            {"created", rfc3339(r.created_ms())},
            {"updated_ms", r.updated_ms()},
            {"kind", r.kind() == v1::SAGA_KIND_REPLAY ? "REPLAY" : "INGEST"}};
  if (r.kind() == v1::SAGA_KIND_REPLAY) {
    // The replay is the parent; its children are the input partitions it
    // read, each a range of its seqs, so their progress is the parent's bitmaps.
    const auto& info = r.replay();
    json children = json::array();
    for (const auto& child : info.children()) {
      const auto c = child_counts(r, child);
      children.push_back({{"name", child.name()},
                          {"seqs", {child.first(), child.last()}},
                          {"offsets", {child.from_offset(), child.to_offset()}},
                          {"total", c.total},
                          {"loaded", c.loaded},
                          {"rejected", c.rejected},
                          {"in_flight", c.total - c.loaded - c.rejected}});
    }
    j["replay"] = {{"stage", info.stage()},
                   {"source_topic", info.source_topic()},
                   {"replay_topic", info.replay_topic()},
                   {"range", info.range()},
                   {"children", children},
                   {"origin_saga_count", info.origin_saga_count()},
                   {"duplicates_skipped", info.duplicates_skipped()},
                   {"cancelled", info.cancelled()}};
    if (detail) j["replay"]["origin_sagas"] = info.origin_sagas();
  } else if (!r.ingested() && r.saga_id().starts_with(kReplaySagaPrefix)) {
    j["kind"] = "REPLAY";  // still publishing: the command has not sent its total yet
  }
  if (detail) {
    json reasons = json::object();
    for (const auto& [k, v] : r.reason_counts()) reasons[k] = v;
    j["reasons"] = reasons;
    json timeline = json::array();
    for (const auto& t : r.timeline()) {
      timeline.push_back({{"from", t.from() == v1::SAGA_STATE_UNSPECIFIED ? "" : state_name(t.from())},
                          {"to", state_name(t.to())},
                          {"time_ms", t.time_ms()},
                          {"time", rfc3339(t.time_ms())},
                          {"cause", t.cause()}});
    }
    j["timeline"] = timeline;
    j["explanation"] = explain(r);
    j["partition"] = r.partition();
    j["compensated"] = r.compensated();
    if (r.deadline_ms() != 0) j["next_deadline"] = rfc3339(r.deadline_ms());
  }
  return j;
}

std::string query(const HttpRequest& req, const std::string& name) {
  auto it = req.query.find(name);
  return it == req.query.end() ? std::string{} : it->second;
}

std::string hex(const std::string& s) {
  std::string out;
  for (const unsigned char c : s) out += fmt::format("{:02x}", c);
  return out;
}

std::optional<std::string> unhex(const std::string& s) {
  if (s.size() % 2 != 0) return std::nullopt;
  std::string out;
  for (std::size_t i = 0; i < s.size(); i += 2) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data() + i, s.data() + i + 2, v, 16);
    if (ec != std::errc{} || p != s.data() + i + 2) return std::nullopt;
    out += static_cast<char>(v);
  }
  return out;
}

HttpResponse bad_param(const std::string& name, const std::string& message) {
  return json_error(400, "invalid_parameter", name + ": " + message, name);
}

struct Tally {
  uint64_t sagas = 0, accepted = 0, loaded = 0, rejected = 0, in_flight = 0;
  json by_state = json::object();
  void add(const v1::SagaRecord& r) {
    const auto c = counts(r);
    ++sagas;
    const std::string name = state_name(r.state());
    by_state[name] = by_state.value(name, 0) + 1;
    accepted += r.total();
    loaded += c.loaded;
    rejected += c.rejected + c.rejected_at_load;
    in_flight += c.in_flight;
  }
  void add(const v1::SagaAggregate& a) {
    sagas += a.sagas();
    accepted += a.accepted();
    loaded += a.loaded();
    rejected += a.rejected();
    in_flight += a.in_flight();
    for (const auto& [k, v] : a.by_state()) by_state[k] = by_state.value(k, 0) + v;
  }
  void merge(const Tally& o) {
    sagas += o.sagas;
    accepted += o.accepted;
    loaded += o.loaded;
    rejected += o.rejected;
    in_flight += o.in_flight;
    for (const auto& [k, v] : o.by_state.items()) by_state[k] = by_state.value(k, 0) + v.get<uint64_t>();
  }
  bool balanced() const { return accepted == loaded + rejected + in_flight; }
  json to_json() const {
    return {{"sagas", sagas},       {"by_state", by_state},   {"accepted", accepted},  {"loaded", loaded},
            {"rejected", rejected}, {"in_flight", in_flight}, {"balanced", balanced()}};
  }
};

HttpResponse list_sagas(SagaStore& store, const HttpRequest& req, const Ownership* owned) {
  const auto mine = [owned](const v1::SagaRecord& r) { return owned == nullptr || owned->owns(r.partition()); };
  const auto state = query(req, "state");
  if (!state.empty() && !parse_state(state)) {
    return bad_param(
        "state", "'" + state + "' is not one of ACCEPTED, IN_FLIGHT, COMPLETED, STALLED, OVERDUE, FAILED, COMPENSATED");
  }
  const auto pipeline = query(req, "pipeline");
  int64_t since = 0;
  if (const auto s = query(req, "since"); !s.empty()) {
    auto t = parse_time_ms(s);
    if (!t) return bad_param("since", t.error().message);
    since = *t;
  }
  std::size_t limit = 100;
  if (const auto l = query(req, "limit"); !l.empty()) {
    auto [p, ec] = std::from_chars(l.data(), l.data() + l.size(), limit);
    if (ec != std::errc{} || p != l.data() + l.size() || limit > kPageMax) {
      return bad_param("limit", fmt::format("expected an integer from 0 to {}, got '{}'", kPageMax, l));
    }
  }
  std::string after;
  if (const auto t = query(req, "page_token"); !t.empty()) {
    auto id = unhex(t);
    if (!id || id->empty()) return bad_param("page_token", "not a token this API returned");
    after = *id;
  }
  const auto order = query(req, "order");
  if (!order.empty() && order != "id" && order != "newest") {
    return bad_param("order", "expected id (the default: saga-id order, with totals) or newest, got '" + order + "'");
  }
  if (order == "newest") {
    // From the listing index: a page costs the same with 10 or 10M sagas
    // stored, and has no totals (the overview counts sagas by state).
    if (pipeline.empty()) return bad_param("pipeline", "order=newest lists one pipeline; name it");
    ListQuery q{pipeline, std::nullopt, since, INT64_MAX, after, limit};
    if (!state.empty()) q.state = parse_state(state);
    if (const auto u = query(req, "until"); !u.empty()) {
      auto t = parse_time_ms(u);
      if (!t) return bad_param("until", t.error().message);
      q.until_ms = *t;
    }
    auto page = store.list(q);
    if (!page && page.error().code == Errc::kInvalidArgument) return bad_param("page_token", page.error().message);
    if (!page) return json_error(500, "store_error", page.error().message);
    json list = json::array();
    for (const auto& r : page->sagas) {
      if (mine(r)) list.push_back(to_json(r, false));
    }
    json body = {{"sagas", list}};
    if (!page->next.empty()) body["next_page_token"] = hex(page->next);
    return {200, json_text(body)};
  }
  // One pass in saga-id order: totals over every match, the page after the
  // token. Saga-id order is stable under inserts, so pages neither repeat nor
  // skip a saga that existed when paging began.
  json list = json::array();
  Tally totals;
  std::string last;
  bool more = false;
  auto st = store.scan([&](const v1::SagaRecord& r) {
    if (!pipeline.empty() && r.pipeline() != pipeline) return true;
    if (!state.empty() && state_name(r.state()) != state) return true;
    if (r.created_ms() < since || !mine(r)) return true;
    totals.add(r);
    if (!after.empty() && r.saga_id() <= after) return true;
    if (list.size() < limit) {
      list.push_back(to_json(r, false));
      last = r.saga_id();
    } else {
      more = true;
    }
    return true;
  });
  if (!st) return json_error(500, "store_error", st.error().message);
  json body = {{"sagas", list}, {"totals", totals.to_json()}};
  if (more && !last.empty()) body["next_page_token"] = hex(last);
  return {200, json_text(body)};
}

HttpResponse consistency(SagaStore& store, const HttpRequest& req, const std::string& pipeline, const Clock& clock,
                         const Ownership* owned) {
  int64_t to = clock();
  if (const auto s = query(req, "to"); !s.empty()) {
    auto t = parse_time_ms(s);
    if (!t) return bad_param("to", t.error().message);
    to = *t;
  }
  int64_t from = to - 24 * kHourMs;
  if (const auto s = query(req, "from"); !s.empty()) {
    auto t = parse_time_ms(s);
    if (!t) return bad_param("from", t.error().message);
    from = *t;
  }
  if (from >= to) return bad_param("from", "must be before to");
  int64_t window = kHourMs;
  if (const auto s = query(req, "window"); !s.empty()) {
    auto w = parse_duration_ms(s);
    if (!w) return bad_param("window", w.error().message);
    // Removed sagas survive only as hourly aggregates, so windows are whole hours.
    if (*w <= 0 || *w % kHourMs != 0) return bad_param("window", "must be a whole number of hours, like 1h or 1d");
    window = *w;
  }
  const int64_t start = from / kHourMs * kHourMs;
  const int64_t n = (to - start + window - 1) / window;
  if (n > 10'000) return bad_param("window", fmt::format("{} windows between from and to; at most 10000", n));
  const int64_t end = start + n * window;

  constexpr std::size_t kListMax = 100;  // sagas listed per window; the rest are counted
  struct Window {
    Tally live;
    Tally removed;
    json listed = json::array();
    uint64_t unlisted = 0;
  };
  std::map<int64_t, Window> windows;
  auto st = store.scan([&](const v1::SagaRecord& r) {
    if (r.pipeline() != pipeline || r.created_ms() < start || r.created_ms() >= end) return true;
    if (owned != nullptr && !owned->owns(r.partition())) return true;
    auto& w = windows[(r.created_ms() - start) / window];
    w.live.add(r);
    const auto c = counts(r);
    const bool balanced = r.total() == c.loaded + c.rejected + c.rejected_at_load + c.in_flight;
    if (balanced && r.state() == v1::SAGA_STATE_COMPLETED) return true;
    if (w.listed.size() >= kListMax) {
      ++w.unlisted;
      return true;
    }
    w.listed.push_back({{"saga_id", r.saga_id()},
                        {"state", state_name(r.state())},
                        {"total", r.total()},
                        {"loaded", c.loaded},
                        {"rejected", c.rejected + c.rejected_at_load},
                        {"in_flight", c.in_flight},
                        {"balanced", balanced},
                        {"explanation", explain(r)}});
    return true;
  });
  if (!st) return json_error(500, "store_error", st.error().message);
  auto aggs = store.aggregates(pipeline, start, end);
  if (!aggs) return json_error(500, "store_error", aggs.error().message);
  for (const auto& [hour, a] : *aggs) windows[(hour - start) / window].removed.add(a);

  json out = json::array();
  Tally all;
  bool consistent = true;
  for (const auto& [i, w] : windows) {
    Tally total = w.live;
    total.merge(w.removed);  // the window's equation covers live and removed sagas alike
    all.merge(total);
    consistent &= total.balanced() && w.listed.empty() && w.unlisted == 0;
    json j = total.to_json();
    j["start"] = rfc3339(start + i * window);
    j["end"] = rfc3339(start + (i + 1) * window);
    j["start_ms"] = start + i * window;
    j["removed_by_retention"] = w.removed.sagas;
    j["sagas_to_check"] = w.listed;
    if (w.unlisted > 0) j["sagas_to_check_not_listed"] = w.unlisted;
    out.push_back(std::move(j));
  }
  json body = {{"pipeline", pipeline},
               {"from", rfc3339(start)},
               {"to", rfc3339(end)},
               {"window_ms", window},
               {"windows", out},
               {"totals", all.to_json()},
               // Every window balances and every saga in it COMPLETED.
               {"consistent", consistent}};
  return {200, json_text(body)};
}

}  // namespace

HttpResponse handle_saga_api(SagaStore& store, const HttpRequest& req, const Clock& clock, const Ownership* owned) {
  if (req.method != "GET") return json_error(405, "method_not_allowed", "the saga API is read-only");
  constexpr std::string_view kSagaPrefix = "/v1/sagas/";
  if (req.path.starts_with(kSagaPrefix) && req.path.size() > kSagaPrefix.size()) {
    const auto id = req.path.substr(kSagaPrefix.size());
    auto r = store.get(id);
    if (!r) return json_error(500, "store_error", r.error().message);
    const std::optional<v1::SagaRecord>& found = *r;
    if (!found) return json_error(404, "unknown_saga", "no saga with id '" + id + "'", "saga_id");
    json j = to_json(*found, true);
    j["owned"] = owned == nullptr || owned->owns(found->partition());
    return {200, json_text(j)};
  }
  if (req.path == "/v1/sagas") return list_sagas(store, req, owned);
  if (req.path == "/openapi.json") return {200, openapi_json()};
  constexpr std::string_view kPipes = "/v1/pipelines/";
  constexpr std::string_view kTail = "/consistency";
  if (req.path.starts_with(kPipes) && req.path.ends_with(kTail) && req.path.size() > kPipes.size() + kTail.size()) {
    const auto p = req.path.substr(kPipes.size(), req.path.size() - kPipes.size() - kTail.size());
    if (p.find('/') != std::string::npos) return json_error(404, "not_found", "no route for " + req.path);
    return consistency(store, req, p, clock, owned);
  }
  return json_error(404, "not_found", "no route for " + req.path);
}

}  // namespace starling::saga
