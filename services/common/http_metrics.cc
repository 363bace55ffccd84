#include "services/common/http_metrics.h"

#include <array>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <tuple>

#include "services/common/metrics.h"

namespace starling {

namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i <= path.size()) {
    const auto slash = path.find('/', i);
    const auto end = slash == std::string_view::npos ? path.size() : slash;
    out.push_back(path.substr(i, end - i));
    if (slash == std::string_view::npos) break;
    i = slash + 1;
  }
  return out;
}

constexpr std::array<std::string_view, 7> kMethods = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"};

std::size_t method_index(const std::string& m) {
  for (std::size_t i = 0; i < kMethods.size(); ++i) {
    if (m == kMethods[i]) return i;
  }
  return kMethods.size();  // "other"
}

const std::vector<double>& latency_bounds() {
  static const std::vector<double> b = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return b;
}

// The series of one handler, looked up in the registry once each.
class HttpSeries {
 public:
  explicit HttpSeries(const RouteTable& routes) {
    for (const auto& r : routes.templates()) durations_[r] = nullptr;
    durations_[std::string(kUnmatchedRoute)] = nullptr;
    for (auto& [route, h] : durations_) {
      h = &metrics().histogram("starling_http_request_duration_seconds",
                               "From a request's arrival at its handler to its answer, by route", latency_bounds(),
                               {{"route", route}});
    }
  }

  void record(const std::string& route, std::size_t method, int code, double seconds) {
    durations_.at(route)->observe(seconds);
    Counter* c = nullptr;
    {
      std::lock_guard lock(mu_);
      auto& slot = counters_[{&route, method, code}];
      if (slot == nullptr) {
        const std::string m = method < kMethods.size() ? std::string(kMethods[method]) : "other";
        slot = &metrics().counter("starling_http_requests_total", "HTTP requests answered, by route, method and status",
                                  {{"route", route}, {"method", m}, {"code", std::to_string(code)}});
      }
      c = slot;
    }
    c->add();
  }

 private:
  std::map<std::string, Histogram*> durations_;  // fixed after construction
  std::mutex mu_;
  std::map<std::tuple<const std::string*, std::size_t, int>, Counter*> counters_;
};

}  // namespace

RouteTable::RouteTable(std::vector<std::string> templates) : templates_(std::move(templates)) {
  for (const auto& t : templates_) {
    std::vector<std::string> segs;
    for (auto s : split_path(t)) segs.emplace_back(s.starts_with('{') && s.ends_with('}') ? "{" : std::string(s));
    segments_.push_back(std::move(segs));
  }
}

RouteTable RouteTable::from_openapi(const std::string& openapi_json) {
  const auto doc = nlohmann::json::parse(openapi_json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("paths") || !doc["paths"].is_object()) {
    throw std::invalid_argument("an OpenAPI document without an object 'paths'");
  }
  std::vector<std::string> routes;
  for (const auto& [path, item] : doc["paths"].items()) routes.push_back(path);
  return RouteTable(std::move(routes));
}

const std::string& RouteTable::match(std::string_view path) const {
  static const std::string unmatched(kUnmatchedRoute);
  const auto parts = split_path(path);
  for (std::size_t t = 0; t < segments_.size(); ++t) {
    const auto& segs = segments_[t];
    if (segs.size() != parts.size()) continue;
    bool ok = true;
    for (std::size_t i = 0; i < segs.size() && ok; ++i) {
      ok = segs[i] == "{" ? !parts[i].empty() : segs[i] == parts[i];
    }
    if (ok) return templates_[t];
  }
  return unmatched;
}

HttpHandler instrument_http(RouteTable routes, HttpHandler handler) {
  auto table = std::make_shared<const RouteTable>(std::move(routes));
  auto series = std::make_shared<HttpSeries>(*table);
  return [table, series, handler = std::move(handler)](HttpRequest req, HttpResponder done) {
    const auto start = std::chrono::steady_clock::now();
    const std::string& route = table->match(req.path);
    const auto method = method_index(req.method);
    handler(std::move(req), [table, series, &route, method, start, done = std::move(done)](HttpResponse r) {
      const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
      series->record(route, method, r.status, took.count());
      done(std::move(r));
    });
  };
}

}  // namespace starling
