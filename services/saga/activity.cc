#include "services/saga/activity.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "services/saga/saga_state.h"

namespace starling::saga {

using nlohmann::json;

namespace {

uint64_t events_of(const v1::ProgressFact& fact) {
  if (fact.step() == v1::STEP_INGESTED) return fact.total();
  uint64_t n = 0;
  for (const auto& r : fact.seqs()) {
    if (r.last() >= r.first()) n += static_cast<uint64_t>(r.last()) - r.first() + 1;
  }
  return n;
}

}  // namespace

int Activity::latency_bucket(double ms) {
  if (!(ms > 1.0)) return 0;
  const int b = static_cast<int>(std::ceil(std::log2(ms) * 4));
  return std::clamp(b, 0, kLatencyBuckets - 1);
}

double Activity::bucket_upper_ms(int bucket) { return std::exp2(bucket / 4.0); }

Activity::Pipeline* Activity::pipeline(const std::string& name) {
  auto it = pipelines_.find(name);
  if (it != pipelines_.end()) return &it->second;
  if (pipelines_.size() >= kPipelines) return nullptr;
  return &pipelines_[name];
}

Activity::Second& Activity::slot(Pipeline& p, int64_t second) {
  auto& s = p.seconds[static_cast<std::size_t>(second % kSeconds)];
  if (s.second != second) s = Second{.second = second};
  return s;
}

void Activity::record(const v1::ProgressFact& fact, int64_t saga_created_ms, int64_t now_ms) {
  const int step = fact.step();
  if (step < v1::STEP_INGESTED || step > v1::STEP_REJECTED_AT_LOAD) return;
  const uint64_t n = events_of(fact);
  std::lock_guard lock(mu_);
  Pipeline* p = pipeline(fact.pipeline());
  if (p == nullptr) return;
  auto& s = slot(*p, now_ms / 1000);
  s.steps[static_cast<std::size_t>(step)] += n;
  if (step == v1::STEP_LOADED && saga_created_ms > 0 && n > 0) {
    const double ms = static_cast<double>(std::max<int64_t>(0, fact.time_ms() - saga_created_ms));
    s.latency[static_cast<std::size_t>(latency_bucket(ms))] += n;
  }
  for (const auto& rejection : fact.rejections()) {
    for (const auto& reason : rejection.reasons()) {
      std::string key = reason.rule();
      key += '\0';
      key += reason.field();
      if (s.rejects.size() >= kRuleKeys && !s.rejects.contains(key)) key = std::string("other\0", 6);
      ++s.rejects[key];
    }
  }
}

void Activity::set_lag(const std::string& pipeline_name, const std::string& stage, std::optional<int64_t> lag) {
  std::lock_guard lock(mu_);
  if (pipeline_name.empty()) {
    saga_lag_ = lag;
    return;
  }
  if (Pipeline* p = pipeline(pipeline_name)) p->lag[stage] = lag;
}

void Activity::set_states(const std::map<std::pair<std::string, v1::SagaState>, int64_t>& counts) {
  std::lock_guard lock(mu_);
  for (auto& [name, p] : pipelines_) p.states.clear();
  for (const auto& [key, n] : counts) {
    if (Pipeline* p = pipeline(key.first)) p->states[state_name(key.second)] = n;
  }
}

json Activity::overview(int64_t now_ms, const std::function<bool(const std::string&)>& allowed) const {
  static constexpr std::array<const char*, 6> kStepNames = {"",         "ingested", "cleaned",
                                                            "rejected", "loaded",   "rejected_at_load"};
  last_viewed_ms_ = now_ms;
  const int64_t now_s = now_ms / 1000;
  // The current second is still filling: the series ends with the last whole one.
  const int64_t last = now_s - 1;
  std::lock_guard lock(mu_);
  json pipelines = json::array();
  for (const auto& [name, p] : pipelines_) {
    if (allowed && !allowed(name)) continue;
    json stages = json::object();
    std::array<uint64_t, kLatencyBuckets> latency{};
    std::map<std::string, uint64_t> rejects;
    for (int step = v1::STEP_INGESTED; step <= v1::STEP_REJECTED_AT_LOAD; ++step) {
      json series = json::array();
      uint64_t recent = 0;
      for (int64_t sec = last - kSeconds + 1; sec <= last; ++sec) {
        const auto& s = p.seconds[static_cast<std::size_t>(sec % kSeconds)];
        const uint64_t v = s.second == sec ? s.steps[static_cast<std::size_t>(step)] : 0;
        series.push_back(v);
        if (sec > last - kRateSeconds) recent += v;
      }
      stages[kStepNames[static_cast<std::size_t>(step)]] = {{"rate", static_cast<double>(recent) / kRateSeconds},
                                                            {"series", std::move(series)}};
    }
    for (const auto& s : p.seconds) {
      if (s.second < 0 || s.second <= last - kSeconds || s.second > last) continue;
      for (int b = 0; b < kLatencyBuckets; ++b)
        latency[static_cast<std::size_t>(b)] += s.latency[static_cast<std::size_t>(b)];
      for (const auto& [k, v] : s.rejects) rejects[k] += v;
    }
    uint64_t samples = 0;
    for (auto v : latency) samples += v;
    json lat = nullptr;
    if (samples > 0) {
      auto quantile = [&](double q) {
        const auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(samples)));
        uint64_t seen = 0;
        for (int b = 0; b < kLatencyBuckets; ++b) {
          seen += latency[static_cast<std::size_t>(b)];
          if (seen >= rank) return bucket_upper_ms(b);
        }
        return bucket_upper_ms(kLatencyBuckets - 1);
      };
      lat = {{"p50", quantile(0.50)}, {"p99", quantile(0.99)}, {"samples", samples}};
    }
    std::vector<std::pair<std::string, uint64_t>> by_count(rejects.begin(), rejects.end());
    std::stable_sort(by_count.begin(), by_count.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    json rpm = json::array();
    for (const auto& [k, v] : by_count) {
      const auto nul = k.find('\0');
      rpm.push_back(
          {{"rule", k.substr(0, nul)}, {"field", nul == std::string::npos ? "" : k.substr(nul + 1)}, {"count", v}});
    }
    json lag = json::object();
    for (const auto& stage : {"clean", "load"}) {
      auto it = p.lag.find(stage);
      const std::optional<int64_t> value = it != p.lag.end() ? it->second : std::nullopt;
      lag[stage] = value.has_value() ? json(value.value()) : json(nullptr);
    }
    pipelines.push_back({{"name", name},
                         {"stages", std::move(stages)},
                         {"lag", std::move(lag)},
                         {"sagas_by_state", p.states},
                         {"rejects_per_min", std::move(rpm)},
                         {"latency_ms", std::move(lat)}});
  }
  return {{"time_ms", now_ms},
          {"pipelines", std::move(pipelines)},
          {"saga_lag", saga_lag_ ? json(*saga_lag_) : json(nullptr)}};
}

}  // namespace starling::saga
