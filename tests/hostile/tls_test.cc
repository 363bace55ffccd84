// The HTTPS handshake under bytes no TLS client sends: garbage, a ClientHello
// cut short, a handshake left half done, a flood of failed ones. No exception
// ends the process, each bad connection is closed on its own, and the next
// honest client is served.

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>  // before Boost.Asio, whose awaitable.hpp uses std::exchange
#include <vector>

#include "services/common/http.h"
#include "tests/support/raw_http.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_certs.h"

namespace starling {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// The first bytes of a TLS 1.2 ClientHello record: handshake (0x16), version
// 3.1, a length that promises far more than follows.
constexpr std::string_view kClientHelloStart("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);

class HostileTls : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = testing::TestCerts::make(dir_.path());
    ASSERT_TRUE(certs_.ok()) << certs_.error;
    HttpServerOptions o;
    o.tls = {certs_.server_cert, certs_.server_key, {}};
    o.read_timeout_s = 2;
    server_ = std::make_unique<HttpServer>(o, [this](const HttpRequest&, const HttpResponder& done) {
      ++handled_;
      done({200, R"({"ok":true})"});
    });
    server_->start();
  }
  void serves_on() {
    auto r = http_call("GET", "https://127.0.0.1:" + std::to_string(server_->port()) + "/ok", {}, {},
                       HttpClientOptions{.ca_file = certs_.ca});
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->status, 200);
  }

  testing::TempDir dir_;
  testing::TestCerts certs_;
  std::unique_ptr<HttpServer> server_;
  std::atomic<int> handled_{0};
};

TEST_F(HostileTls, GarbageAndTruncatedHandshakesAreClosedAndTheNextClientIsServed) {
  std::mt19937 rng(7);
  std::vector<std::string> inputs = {
      std::string(kClientHelloStart),                  // cut short, then the client half-closes
      std::string("\x16\x03\x01\x00\x00", 5),          // an empty handshake record
      std::string("\x16\x03\x03\xff\xff", 5),          // a record longer than TLS allows
      std::string("\x15\x03\x03\x00\x02\x02\x28", 7),  // an alert before any hello
      std::string(5000, '\x16'),
      std::string("\x80\x2e\x01\x00\x02\x00\x15", 7),  // an SSLv2-style hello
  };
  for (int i = 0; i < 20; ++i) {
    std::string noise(1 + rng() % 3000, '\0');
    for (auto& c : noise) c = static_cast<char>(rng());
    inputs.push_back(std::string(kClientHelloStart) + noise.substr(0, rng() % 200));
    inputs.push_back(std::move(noise));
  }
  for (const auto& in : inputs) {
    const auto out = testing::raw_exchange(server_->port(), in);
    EXPECT_EQ(out.find("HTTP/1.1"), std::string::npos);
  }
  EXPECT_EQ(handled_, 0);
  serves_on();
}

TEST_F(HostileTls, AHandshakeLeftHalfDoneIsClosedWithinTheReadTimeout) {
  asio::io_context ioc;
  asio::ip::tcp::socket s(ioc);
  s.connect({asio::ip::make_address("127.0.0.1"), server_->port()});
  asio::write(s, asio::buffer(kClientHelloStart.data(), kClientHelloStart.size()));
  // Then silence: the server must not wait for the rest forever.
  const auto t0 = std::chrono::steady_clock::now();
  char buf[256];
  boost::system::error_code ec;
  while (!ec) (void)s.read_some(asio::buffer(buf), ec);
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(waited, 10s);
  EXPECT_GE(waited, 1s);
  serves_on();
}

TEST_F(HostileTls, ManyConnectionsFailingTheHandshakeAtOnceLeaveTheServerServing) {
  asio::io_context ioc;
  std::vector<asio::ip::tcp::socket> socks;
  for (int i = 0; i < 200; ++i) {
    socks.emplace_back(ioc);
    socks.back().connect({asio::ip::make_address("127.0.0.1"), server_->port()});
    const std::string_view bytes = i % 2 ? kClientHelloStart : std::string_view("GET / HTTP/1.1\r\n\r\n");
    asio::write(socks.back(), asio::buffer(bytes.data(), bytes.size()));
  }
  serves_on();
  for (auto& s : socks) {
    boost::system::error_code ec;
    (void)s.close(ec);
  }
  serves_on();
  EXPECT_EQ(handled_, 2);
}

}  // namespace
}  // namespace starling
