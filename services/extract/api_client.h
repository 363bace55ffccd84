#pragma once
// A polite HTTP client for one external API: keeps the declared quota,
// follows 429 + Retry-After, backs off exponentially with jitter on 5xx,
// timeouts and refused connections, and refuses a response over its size
// limit. Blocking; one per pipeline, used from that pipeline's poll thread.

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>

#include "services/common/error.h"
#include "services/common/http.h"

namespace starling::extract {

struct ClientOptions {
  int timeout_ms = 10'000;  // one request, connect to last byte (http_call's one bound)
  std::size_t max_response_bytes = 8 << 20;
  int max_attempts = 6;  // per request, for 5xx, timeouts and connection errors; then the poll fails
  std::chrono::milliseconds backoff_base{500};  // first back-off; doubles per attempt, with full jitter
  std::chrono::milliseconds backoff_max{30'000};
  std::chrono::milliseconds max_retry_after{300'000};  // a longer Retry-After fails the poll instead of waiting
  int max_429 = 20;                                    // 429s followed per request before the poll fails
  double quota_per_min = 0;                            // requests a minute at most; 0: no limit
};

/// One GET (http_call in production; a fake in unit tests).
using HttpGet = std::function<Result<HttpResponse>(const std::string& url,
                                                   const std::map<std::string, std::string>& headers, int timeout_ms)>;

/// What happened to one request, for logs and metrics.
struct ClientEvent {
  enum Kind { kResponse, kTransportError, kRetryAfter, kBackoff } kind;
  int status = 0;                     // kResponse
  std::chrono::milliseconds wait{0};  // kRetryAfter, kBackoff
  std::string detail;
};

class ApiClient {
 public:
  ApiClient(ClientOptions options, HttpGet get, std::function<bool()> stop,
            std::function<void(const ClientEvent&)> observe = {});

  /// The body of a 2xx answer to GET `url`. Errors: Errc::kUnavailable when
  /// the API kept failing (5xx, timeouts, 429s) past the attempts;
  /// Errc::kInvalidArgument for a 4xx other than 429 or a body over
  /// max_response_bytes (no retry can fix either); Errc::kTimeout when
  /// stopping interrupted a wait.
  Result<std::string> get(const std::string& url, const std::map<std::string, std::string>& headers);

  struct Request {
    std::string url;
    std::string shown;  // the url as errors show it (secrets redacted); "" shows url
    std::map<std::string, std::string> headers;
    // Called once on a 401 (an expired or revoked token): fresh headers and
    // the request is asked again; a second 401 fails as any 4xx.
    std::function<Status(std::map<std::string, std::string>&)> reauth;
  };
  Result<std::string> get(Request request);

 private:
  bool sleep(std::chrono::milliseconds d);  // false when stopped
  void keep_quota();
  std::chrono::milliseconds backoff(int attempt);

  ClientOptions options_;
  HttpGet get_;
  std::function<bool()> stop_;
  std::function<void(const ClientEvent&)> observe_;
  std::optional<std::chrono::steady_clock::time_point> last_request_;
  std::mt19937_64 rng_;
};

/// Retry-After as delta-seconds or an HTTP-date (relative to `now_ms`);
/// nullopt when it is neither.
std::optional<std::chrono::milliseconds> parse_retry_after(const std::string& value, int64_t now_ms);

/// http_call as an HttpGet; https:// verified against `tls.ca_file` or the
/// system's CAs.
HttpGet http_get(const HttpClientOptions& tls = {});

}  // namespace starling::extract
