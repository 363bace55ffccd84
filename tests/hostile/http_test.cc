// The shared HTTP layer (services/common/http.h) under bytes that are not
// UTF-8 and handlers that throw: no exception ends the process, every answer
// is valid JSON, and the server serves the next request.

#include "services/common/http.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <cctype>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>  // before Boost.Asio, whose awaitable.hpp uses std::exchange
#include <vector>

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

TEST_F(HostileHttp, OneConnectionOverTheLimitGets503AndIsClosedWhileTheOthersAreServed) {
  HttpServer small({.address = "127.0.0.1", .port = 0, .threads = 2, .max_connections = 3}, echo_handler);
  small.start();
  namespace asio = boost::asio;
  asio::io_context ioc;
  std::vector<asio::ip::tcp::socket> held;
  for (int i = 0; i < 3; ++i) {
    held.emplace_back(ioc);
    held.back().connect({asio::ip::make_address("127.0.0.1"), small.port()});
  }
  // Each held connection is served, so the server has counted all three.
  for (auto& s : held) {
    asio::write(s, asio::buffer(std::string("GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")));
    char buf[512];
    EXPECT_GT(s.read_some(asio::buffer(buf)), 0u);
  }
  const auto over = raw_exchange(small.port(), "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(over, HasSubstr("503 Service Unavailable"));
  EXPECT_THAT(over, HasSubstr("too_many_connections"));
  EXPECT_THAT(over, HasSubstr("Retry-After"));
  // Once one closes, a new one is served.
  held.front().close();
  bool served = false;
  for (int attempt = 0; attempt < 200 && !served; ++attempt) {
    served = raw_exchange(small.port(), "GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").find("200 OK") !=
             std::string::npos;
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(served);
}

// serve_bytes (the fuzz targets' seam) answers what a socket client gets, byte
// string by byte string, malformed ones included (raw_exchange half-closes
// after writing, as the end of serve_bytes' input is the end of the stream).
TEST_F(HostileHttp, ServeBytesAnswersAsTheServerDoesOverASocket) {
  const std::vector<std::string> inputs = {
      "GET /ok HTTP/1.1\r\nHost: x\r\n\r\nGET /nope?state=%FF HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      "GET /\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      "POST /boom HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
      "GARBAGE\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
      "POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
  };
  const auto statuses = [](const std::string& raw) {
    std::vector<std::string> out;
    // A status line: "HTTP/1.1 ddd " (an error body may say "HTTP/1.1 request").
    for (auto at = raw.find("HTTP/1.1 "); at != std::string::npos; at = raw.find("HTTP/1.1 ", at + 1)) {
      const auto code = raw.substr(at + 9, 4);
      if (code.size() == 4 && std::isdigit(static_cast<unsigned char>(code[0])) && code[3] == ' ') {
        out.push_back(code.substr(0, 3));
      }
    }
    return out;
  };
  for (const auto& in : inputs) {
    std::vector<std::string> local;
    for (const auto& r : serve_bytes(in, {}, echo_handler)) local.push_back(std::to_string(r.status));
    EXPECT_EQ(local, statuses(raw_exchange(server_.port(), in))) << in.substr(0, 80);
    EXPECT_FALSE(local.empty()) << in.substr(0, 80);
  }
}

}  // namespace
}  // namespace starling
