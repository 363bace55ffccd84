#pragma once
// Every HTTP request a service answers, counted and timed by route:
//   starling_http_requests_total{route,method,code}
//   starling_http_request_duration_seconds{route}   (handler entry to answer)
// The route label is a route's template ("/v1/sagas/{saga_id}", as the
// service's OpenAPI document spells it), never the requested path, and the
// method is one of a fixed set: a client cannot mint series by varying either.

#include <string>
#include <string_view>
#include <vector>

#include "services/common/http.h"

namespace starling {

/// Path templates, each segment literal or a `{name}` that matches one
/// non-empty segment.
class RouteTable {
 public:
  explicit RouteTable(std::vector<std::string> templates);
  /// The `paths` of an OpenAPI document (the services compile theirs in).
  /// Throws std::invalid_argument when it is not JSON with an object `paths`.
  static RouteTable from_openapi(const std::string& openapi_json);

  /// The first template `path` matches, or "unmatched".
  const std::string& match(std::string_view path) const;
  const std::vector<std::string>& templates() const { return templates_; }

 private:
  std::vector<std::string> templates_;
  std::vector<std::vector<std::string>> segments_;  // per template; "{" for a parameter
};

/// The route label of a request nothing matched (a 404, a probe of a scanner).
inline constexpr std::string_view kUnmatchedRoute = "unmatched";

/// `handler`, counting and timing each answer under its route in `routes`.
HttpHandler instrument_http(RouteTable routes, HttpHandler handler);

}  // namespace starling
