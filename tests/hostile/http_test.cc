// The shared HTTP layer (services/common/http.h) under bytes that are not
// UTF-8 and handlers that throw: no exception ends the process, every answer
// is valid JSON, and the server serves the next request.

#include "services/common/http.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>  // before Boost.Asio, whose awaitable.hpp uses std::exchange

#include "services/common/text.h"
#include "tests/support/raw_http.h"

namespace starling {
namespace {

using ::testing::HasSubstr;

using testing::raw_exchange;

std::string body_of(const std::string& raw) {
  const auto at = raw.find("\r\n\r\n");
  return at == std::string::npos ? std::string{} : raw.substr(at + 4);
}

// A handler as the services write them: it echoes what it did not find.
void echo_handler(const HttpRequest& req, const HttpResponder& done) {
  if (req.path == "/boom") throw std::runtime_error("a handler bug");
  if (req.path == "/answer-then-boom") {
    done({200, R"({"ok":true})"});
    throw std::runtime_error("a bug after answering");
  }
  if (req.path == "/ok") return done({200, R"({"ok":true})"});
  std::string state;
  if (auto it = req.query.find("state"); it != req.query.end()) state = it->second;
  done(json_error(404, "not_found", "no route for " + req.path + " (state '" + state + "')", "path"));
}

class HostileHttp : public ::testing::Test {
 protected:
  HostileHttp() : server_({.address = "127.0.0.1", .port = 0, .threads = 2}, echo_handler) { server_.start(); }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(server_.port()) + path; }
  void serves_on() {
    auto ok = http_call("GET", url("/ok"));
    ASSERT_TRUE(ok) << ok.error().message;
    EXPECT_EQ(ok->status, 200);
  }
  HttpServer server_;
};

TEST_F(HostileHttp, APathThatIsNotUtf8IsEchoedWithReplacementsAndTheServerServesOn) {
  const auto raw = raw_exchange(server_.port(), "GET /\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(raw, HasSubstr("404 Not Found"));
  const auto body = body_of(raw);
  EXPECT_TRUE(is_utf8(body)) << body;
  const auto err = nlohmann::json::parse(body)["error"];
  EXPECT_THAT(err["message"].get<std::string>(), HasSubstr("/\xEF\xBF\xBD\xEF\xBF\xBD"));
  serves_on();
}

TEST_F(HostileHttp, AQueryEscapeOfABadByteIsEchoedSafelyAndAMalformedEscapeStaysLiteral) {
  auto r = http_call("GET", url("/sagas?state=%FF"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 404);
  EXPECT_TRUE(is_utf8(r->body));
  EXPECT_THAT(nlohmann::json::parse(r->body)["error"]["message"].get<std::string>(), HasSubstr("'\xEF\xBF\xBD'"));
  r = http_call("GET", url("/sagas?state=%zz%4"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_THAT(nlohmann::json::parse(r->body)["error"]["message"].get<std::string>(), HasSubstr("'%zz%4'"));
  serves_on();
}

TEST_F(HostileHttp, AHandlerThatThrowsGets500WithARequestIdAndTheServerServesOn) {
  auto r = http_call("POST", url("/boom"), "{}");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 500);
  const auto err = nlohmann::json::parse(r->body)["error"];
  EXPECT_EQ(err["code"], "internal_error");
  std::string id;
  for (const auto& [k, v] : r->headers) {
    if (k == "X-Request-Id" || k == "x-request-id") id = v;
  }
  ASSERT_EQ(id.size(), 16u);
  EXPECT_THAT(err["message"].get<std::string>(), HasSubstr("request id " + id));
  serves_on();
}

TEST_F(HostileHttp, AHandlerThatThrowsAfterAnsweringAnswersOnceAndTheConnectionGoesOn) {
  // Two requests on one keep-alive connection: the first's answer is its
  // handler's, not a second one from the last-resort catch.
  const auto raw = raw_exchange(server_.port(),
                                "GET /answer-then-boom HTTP/1.1\r\nHost: x\r\n\r\n"
                                "GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(raw.find("500"), std::string::npos) << raw;
  std::size_t answers = 0;
  for (auto at = raw.find("HTTP/1.1 200"); at != std::string::npos; at = raw.find("HTTP/1.1 200", at + 1)) ++answers;
  EXPECT_EQ(answers, 2u) << raw;
}

}  // namespace
}  // namespace starling
