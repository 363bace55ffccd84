#include "services/extract/api_client.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <thread>

#include "services/common/shutdown.h"
#include "services/common/text.h"
#include "services/common/time.h"

namespace starling::extract {

namespace {

std::string header(const HttpResponse& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (k.size() == name.size() &&
        std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) { return std::tolower(a) == b; })) {
      return v;
    }
  }
  return {};
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_retry_after(const std::string& value, int64_t now_ms) {
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    if (value.size() > 9) return std::chrono::milliseconds::max();
    return std::chrono::seconds(std::stoll(value));
  }
  std::tm tm{};
  const char* end = ::strptime(value.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  const int64_t at_ms = static_cast<int64_t>(::timegm(&tm)) * 1000;
  return std::chrono::milliseconds(std::max<int64_t>(0, at_ms - now_ms));
}

HttpGet http_get(const HttpClientOptions& tls) {
  return [tls](const std::string& url, const std::map<std::string, std::string>& headers, int timeout_ms) {
    auto o = tls;
    o.timeout_ms = timeout_ms;
    return http_call("GET", url, {}, headers, o);
  };
}

ApiClient::ApiClient(ClientOptions options, HttpGet get, std::function<bool()> stop,
                     std::function<void(const ClientEvent&)> observe)
    : options_(options),
      get_(std::move(get)),
      stop_(std::move(stop)),
      observe_(std::move(observe)),
      rng_(std::random_device{}()) {}

bool ApiClient::sleep(std::chrono::milliseconds d) { return sleep_unless(d, stop_); }

void ApiClient::keep_quota() {
  if (options_.quota_per_min > 0 && last_request_) {
    const auto spacing = std::chrono::microseconds(static_cast<int64_t>(60e6 / options_.quota_per_min));
    const auto next = *last_request_ + spacing;
    const auto now = std::chrono::steady_clock::now();
    if (next > now) sleep(std::chrono::ceil<std::chrono::milliseconds>(next - now));  // never a hair early
  }
  last_request_ = std::chrono::steady_clock::now();
}

// Full jitter (AWS's "Exponential Backoff and Jitter"): uniform in
// [0, min(max, base * 2^(attempt-1))], so many clients do not retry in step;
// at least a tenth of the bound, so a retry never comes at once.
std::chrono::milliseconds ApiClient::backoff(int attempt) {
  const auto cap =
      std::min<int64_t>(options_.backoff_max.count(), options_.backoff_base.count() << std::min(attempt - 1, 20));
  std::uniform_int_distribution<int64_t> d(cap / 10, cap);
  return std::chrono::milliseconds(d(rng_));
}

Result<std::string> ApiClient::get(const std::string& url, const std::map<std::string, std::string>& headers) {
  return get(Request{url, url, headers, {}});
}

Result<std::string> ApiClient::get(Request request) {
  const auto& url = request.shown.empty() ? request.url : request.shown;
  int failures = 0;
  int throttled = 0;
  bool reauthed = false;
  std::string last;
  while (true) {
    if (stop_ && stop_()) return fail(Errc::kTimeout, "stopping");
    keep_quota();
    auto r = get_(request.url, request.headers, options_.timeout_ms);
    if (r && r->status == 401 && request.reauth && !reauthed) {
      if (observe_) observe_({ClientEvent::kResponse, 401, {}, {}});
      reauthed = true;
      if (auto st = request.reauth(request.headers); !st) {
        return fail(st.error().code, fmt::format("GET {}: 401, and a new token failed: {}", url, st.error().message));
      }
      continue;
    }
    if (r && r->status >= 200 && r->status < 300) {
      if (observe_) observe_({ClientEvent::kResponse, r->status, {}, {}});
      if (r->body.size() > options_.max_response_bytes) {
        return fail(Errc::kInvalidArgument, fmt::format("the response has {} bytes, over the limit of {}",
                                                        r->body.size(), options_.max_response_bytes));
      }
      return std::move(r->body);
    }
    if (r && r->status == 429) {
      if (observe_) observe_({ClientEvent::kResponse, 429, {}, {}});
      const auto raw = header(*r, "retry-after");
      auto wait = parse_retry_after(raw, now_ms());
      if (!wait)
        wait = backoff(++throttled);  // no usable Retry-After: back off as for a 503
      else
        ++throttled;
      if (throttled > options_.max_429) {
        return fail(Errc::kUnavailable, fmt::format("GET {}: still 429 after {} tries", url, options_.max_429));
      }
      if (*wait > options_.max_retry_after) {
        return fail(Errc::kUnavailable, fmt::format("GET {}: 429 with Retry-After {} s, longer than {} s", url,
                                                    wait->count() / 1000, options_.max_retry_after.count() / 1000));
      }
      if (observe_) observe_({ClientEvent::kRetryAfter, 429, *wait, excerpt(utf8_safe(raw))});
      if (!sleep(*wait)) return fail(Errc::kTimeout, "stopping");
      last_request_.reset();  // the API said when: the wait already spaced us
      continue;
    }
    if (r && (r->status < 500 || r->status == 501)) {
      // A 4xx (a wrong URL, a refused key) or a 501: no retry can change it.
      if (observe_) observe_({ClientEvent::kResponse, r->status, {}, {}});
      return fail(Errc::kInvalidArgument,
                  fmt::format("GET {}: HTTP {}: {}", url, r->status, excerpt(utf8_safe(r->body), 200)));
    }
    if (r) {
      if (observe_) observe_({ClientEvent::kResponse, r->status, {}, {}});
      last = fmt::format("HTTP {}", r->status);
    } else {
      if (observe_) observe_({ClientEvent::kTransportError, 0, {}, r.error().message});
      last = r.error().message;
    }
    if (++failures >= options_.max_attempts) {
      return fail(Errc::kUnavailable, fmt::format("GET {}: {} after {} attempts", url, last, failures));
    }
    const auto wait = backoff(failures);
    if (observe_) observe_({ClientEvent::kBackoff, r ? r->status : 0, wait, last});
    if (!sleep(wait)) return fail(Errc::kTimeout, "stopping");
  }
}

}  // namespace starling::extract
