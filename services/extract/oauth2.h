#pragma once
// OAuth2 client credentials (RFC 6749 section 4.4) for a source's
// `auth: {oauth2: ...}`: a token asked of token_url with HTTP Basic client
// authentication, kept until shortly before it expires, asked again then or
// after the API answered 401.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "services/common/error.h"
#include "services/common/http.h"
#include "services/common/pipeline.h"

namespace starling::extract {

/// One POST (http_call in production, a fake in unit tests).
using HttpPost = std::function<Result<HttpResponse>(const std::string& url, const std::string& body,
                                                    const std::map<std::string, std::string>& headers, int timeout_ms)>;

/// http_call as an HttpPost, with the same TLS settings as the API's GETs.
HttpPost http_post(const HttpClientOptions& tls = {});

class TokenSource {
 public:
  TokenSource(HttpPollSource::OAuth2 config, HttpPost post, int timeout_ms, std::function<bool()> stop = {});

  /// A token valid at `now_ms`: the kept one until its refresh time (a fifth
  /// of its life, at most 60 s, before it expires), else a new one. Errors:
  /// Errc::kUnavailable when the token endpoint kept failing (5xx, timeouts:
  /// 3 tries), Errc::kInvalidArgument when it refused the credentials or
  /// answered something that is not a bearer token.
  Result<std::string> token(int64_t now_ms);
  /// Forgets the kept token (the API answered 401).
  void invalidate() { token_.reset(); }
  /// Tokens asked for so far.
  int fetched() const { return fetched_; }
  /// When the kept token is asked again (Unix ms); 0 without one.
  int64_t refresh_at_ms() const { return token_ ? refresh_at_ms_ : 0; }

 private:
  HttpPollSource::OAuth2 config_;
  HttpPost post_;
  int timeout_ms_;
  std::function<bool()> stop_;
  std::optional<std::string> token_;
  int64_t refresh_at_ms_ = 0;
  int fetched_ = 0;
};

}  // namespace starling::extract
