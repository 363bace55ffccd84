#include "services/extract/oauth2.h"

#include <fmt/format.h>
#include <google/protobuf/stubs/strutil.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <nlohmann/json.hpp>

#include "services/common/shutdown.h"
#include "services/common/text.h"

namespace starling::extract {

HttpPost http_post(const HttpClientOptions& tls) {
  return [tls](const std::string& url, const std::string& body, const std::map<std::string, std::string>& headers,
               int timeout_ms) {
    auto o = tls;
    o.timeout_ms = timeout_ms;
    return http_call("POST", url, body, headers, o);
  };
}

TokenSource::TokenSource(HttpPollSource::OAuth2 config, HttpPost post, int timeout_ms, std::function<bool()> stop)
    : config_(std::move(config)), post_(std::move(post)), timeout_ms_(timeout_ms), stop_(std::move(stop)) {}

Result<std::string> TokenSource::token(int64_t now_ms) {
  if (token_ && now_ms < refresh_at_ms_) return *token_;
  token_.reset();
  // RFC 6749 2.3.1: the client id and secret, each form-encoded, as Basic.
  std::string basic;
  google::protobuf::Base64Escape(url_encode(config_.client_id) + ":" + url_encode(config_.client_secret), &basic);
  const std::map<std::string, std::string> headers{{"Authorization", "Basic " + basic},
                                                   {"Content-Type", "application/x-www-form-urlencoded"},
                                                   {"Accept", "application/json"}};
  std::string body = "grant_type=client_credentials";
  if (!config_.scope.empty()) body += "&scope=" + url_encode(config_.scope);
  std::string last;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    if (attempt > 1 && !sleep_unless(std::chrono::milliseconds(500 << (attempt - 2)), stop_)) {
      return fail(Errc::kTimeout, "stopping");
    }
    auto r = post_(config_.token_url, body, headers, timeout_ms_);
    ++fetched_;
    if (!r) {
      last = r.error().message;
      continue;
    }
    if (r->status >= 500 || r->status == 429) {
      last = fmt::format("HTTP {}", r->status);
      continue;
    }
    if (r->status != 200) {
      // 400 invalid_client, 401: the credentials are wrong; asking again cannot help.
      return fail(Errc::kInvalidArgument, fmt::format("token endpoint {}: HTTP {}: {}", config_.token_url, r->status,
                                                      excerpt(utf8_safe(r->body), 200)));
    }
    const auto doc = nlohmann::json::parse(r->body, nullptr, /*allow_exceptions=*/false);
    if (!doc.is_object() || !doc.contains("access_token") || !doc["access_token"].is_string() ||
        doc["access_token"].get_ref<const std::string&>().empty()) {
      return fail(Errc::kInvalidArgument, fmt::format("token endpoint {}: expected JSON with an access_token, got '{}'",
                                                      config_.token_url, excerpt(utf8_safe(r->body), 120)));
    }
    auto type = doc.contains("token_type") && doc["token_type"].is_string() ? doc["token_type"].get<std::string>()
                                                                            : std::string("Bearer");
    for (auto& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (type != "bearer") {
      return fail(Errc::kInvalidArgument, fmt::format("token endpoint {}: token_type {}: only Bearer is supported",
                                                      config_.token_url, excerpt(doc["token_type"].dump(), 40)));
    }
    const auto& value = doc["access_token"].get_ref<const std::string&>();
    if (value.find_first_of("\r\n") != std::string::npos) {
      return fail(Errc::kInvalidArgument,
                  fmt::format("token endpoint {}: the access_token holds a line break", config_.token_url));
    }
    // No expires_in: RFC 6749 leaves it to the server; an hour, refreshed after 401s too.
    int64_t life_ms = 3'600'000;
    if (doc.contains("expires_in") && doc["expires_in"].is_number() && doc["expires_in"].get<double>() > 0) {
      life_ms = static_cast<int64_t>(doc["expires_in"].get<double>() * 1000);
    }
    refresh_at_ms_ = now_ms + life_ms - std::min<int64_t>(60'000, life_ms / 5);
    token_ = value;
    return *token_;
  }
  return fail(Errc::kUnavailable, fmt::format("token endpoint {}: {} after 3 attempts", config_.token_url, last));
}

}  // namespace starling::extract
