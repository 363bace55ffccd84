// HTTPS on the shared HTTP layer (services/common/http.h), with certificates
// that `openssl` makes for each test: a client must trust the server's CA,
// a plain client gets nothing, mutual TLS refuses clients without a
// certificate of the right CA, and a bad file is a startup error naming it.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <fstream>
#include <string>
#include <utility>  // before Boost.Asio, whose awaitable.hpp uses std::exchange
#include <vector>

#include "services/common/http.h"
#include "services/common/tls.h"
#include "tests/support/raw_http.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_certs.h"

namespace starling {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class HttpsServer : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = testing::TestCerts::make(dir_.path());
    ASSERT_TRUE(certs_.ok()) << certs_.error;
  }

  // A server on a free loopback port that counts the requests it handled.
  std::unique_ptr<HttpServer> serve(TlsOptions tls, std::size_t max_connections = 1024) {
    HttpServerOptions o;
    o.tls = std::move(tls);
    o.read_timeout_s = 5;
    o.max_connections = max_connections;
    auto server = std::make_unique<HttpServer>(o, [this](const HttpRequest& r, const HttpResponder& done) {
      ++handled_;
      done({200, R"({"path":")" + r.path + R"("})"});
    });
    server->start();
    return server;
  }
  TlsOptions server_tls(bool mutual = false) const {
    return {certs_.server_cert, certs_.server_key, mutual ? certs_.ca : std::string()};
  }
  static std::string url(const HttpServer& s, const std::string& path = "/ok") {
    return "https://127.0.0.1:" + std::to_string(s.port()) + path;
  }

  testing::TempDir dir_;
  testing::TestCerts certs_;
  std::atomic<int> handled_{0};
};

TEST_F(HttpsServer, AClientTrustingTheServersCaIsAnswered) {
  // Every listener is loopback unless told otherwise, TLS or not.
  EXPECT_EQ(HttpServerOptions{}.address, "127.0.0.1");
  auto server = serve(server_tls());
  auto r = http_call("GET", url(*server, "/hello"), {}, {}, HttpClientOptions{.ca_file = certs_.ca});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, R"({"path":"/hello"})");
  // The certificate names localhost too, and the client checks the name it dialled.
  r = http_call("GET", "https://localhost:" + std::to_string(server->port()) + "/x", {}, {},
                HttpClientOptions{.ca_file = certs_.ca});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(handled_, 2);
}

TEST_F(HttpsServer, AClientTrustingAnotherCaFailsTheHandshakeAndNoRequestIsHandled) {
  auto server = serve(server_tls());
  auto r = http_call("POST", url(*server), "{}", {}, HttpClientOptions{.ca_file = certs_.other_ca});
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("certificate verify failed"));
  // Without a CA file the system's CAs are used, and they do not know ours either.
  r = http_call("POST", url(*server), "{}", {}, HttpClientOptions{});
  EXPECT_FALSE(r);
  EXPECT_EQ(handled_, 0);
  // The server serves on.
  r = http_call("GET", url(*server), {}, {}, HttpClientOptions{.ca_file = certs_.ca});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpsServer, APlainHttpClientOnTheTlsPortGetsNoHttpAnswer) {
  auto server = serve(server_tls());
  const auto raw = testing::raw_exchange(server->port(), "GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(raw, Not(HasSubstr("HTTP/1.1")));
  auto r = http_call("GET", "http://127.0.0.1:" + std::to_string(server->port()) + "/ok");
  EXPECT_FALSE(r && r->status >= 200 && r->status < 300);
  EXPECT_EQ(handled_, 0);
}

TEST_F(HttpsServer, ACertificateThatDoesNotNameTheHostIsRefusedByTheClient) {
  // The client certificate is signed by the same CA but names no host.
  auto server = serve({certs_.client_cert, certs_.client_key, {}});
  auto r = http_call("GET", url(*server), {}, {}, HttpClientOptions{.ca_file = certs_.ca});
  EXPECT_FALSE(r);
  EXPECT_EQ(handled_, 0);
}

TEST_F(HttpsServer, MutualTlsRefusesClientsWithoutACertificateOrWithOneOfAnotherCa) {
  auto server = serve(server_tls(/*mutual=*/true));
  // no client certificate
  auto r = http_call("GET", url(*server), {}, {}, HttpClientOptions{.ca_file = certs_.ca});
  EXPECT_FALSE(r && r->status == 200);
  // a client certificate signed by another CA
  r = http_call("GET", url(*server), {}, {},
                HttpClientOptions{
                    .ca_file = certs_.ca, .cert_file = certs_.other_client_cert, .key_file = certs_.other_client_key});
  EXPECT_FALSE(r && r->status == 200);
  EXPECT_EQ(handled_, 0);
  // the right one
  r = http_call(
      "GET", url(*server), {}, {},
      HttpClientOptions{.ca_file = certs_.ca, .cert_file = certs_.client_cert, .key_file = certs_.client_key});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(handled_, 1);
}

TEST_F(HttpsServer, AClientOfferingOnlyTls11IsRefused) {
  auto server = serve(server_tls());
  namespace asio = boost::asio;
  asio::io_context ioc;
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  // Our OpenSSL would not offer TLS 1.1 at its default security level; level
  // 0 lets it, so that only the server can be the one that refuses.
  SSL_CTX_set_cipher_list(ctx.native_handle(), "DEFAULT:@SECLEVEL=0");
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_1_VERSION);
  SSL_CTX_set_max_proto_version(ctx.native_handle(), TLS1_1_VERSION);
  ctx.load_verify_file(certs_.ca);
  ctx.set_verify_mode(asio::ssl::verify_peer);
  asio::ssl::stream<asio::ip::tcp::socket> s(ioc, ctx);
  s.lowest_layer().connect({asio::ip::make_address("127.0.0.1"), server->port()});
  boost::system::error_code ec;
  (void)s.handshake(asio::ssl::stream_base::client, ec);
  EXPECT_TRUE(ec) << "a TLS 1.1 handshake succeeded";
  auto r = http_call("GET", url(*server), {}, {}, HttpClientOptions{.ca_file = certs_.ca});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpsServer, AConnectionOverTheLimitIsTold503OverTls) {
  auto server = serve(server_tls(), /*max_connections=*/1);
  namespace asio = boost::asio;
  asio::io_context ioc;
  asio::ip::tcp::socket held(ioc);  // holds the one place, mid-handshake
  held.connect({asio::ip::make_address("127.0.0.1"), server->port()});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto r = http_call("GET", url(*server), {}, {}, HttpClientOptions{.ca_file = certs_.ca});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 503);
  EXPECT_THAT(r->body, HasSubstr("too_many_connections"));
  EXPECT_EQ(handled_, 0);
}

// Each bad file is named; the server does not start.
TEST_F(HttpsServer, StartRefusesAMissingUnreadableOrMismatchedFileAndNamesIt) {
  const auto garbage = dir_ / "garbage.pem";
  std::ofstream(garbage) << "not a certificate\n";
  const auto missing = dir_ / "missing.pem";
  struct Case {
    TlsOptions tls;
    std::string named;
  };
  const std::vector<Case> cases = {
      {{missing, certs_.server_key, {}}, missing},
      {{certs_.server_cert, missing, {}}, missing},
      {{garbage, certs_.server_key, {}}, garbage},
      {{certs_.server_cert, garbage, {}}, garbage},
      {{certs_.server_cert, certs_.client_key, {}}, certs_.client_key},  // a key of another certificate
      {{certs_.server_cert, certs_.server_key, missing}, missing},
      {{certs_.server_cert, certs_.server_key, garbage}, garbage},
      {{{}, {}, certs_.ca}, "certificate"},  // a client CA without a certificate
  };
  for (const auto& c : cases) {
    HttpServerOptions o;
    o.tls = c.tls;
    HttpServer server(o, [](const HttpRequest&, const HttpResponder& done) { done({200, "{}"}); });
    try {
      server.start();
      ADD_FAILURE() << "started with cert '" << c.tls.cert_file << "' key '" << c.tls.key_file << "' client CA '"
                    << c.tls.client_ca_file << "'";
    } catch (const std::runtime_error& e) {
      EXPECT_THAT(e.what(), HasSubstr(c.named));
    }
    EXPECT_THROW(check_tls(c.tls), std::runtime_error);
  }
  EXPECT_NO_THROW(check_tls(server_tls(/*mutual=*/true)));
}

TEST_F(HttpsServer, TheClientNamesABadCaFileAndRefusesUnknownSchemes) {
  auto r = http_call("GET", "https://127.0.0.1:1/x", {}, {}, HttpClientOptions{.ca_file = dir_ / "missing.pem"});
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr(dir_ / "missing.pem"));
  r = http_call("GET", "ftp://127.0.0.1:1/x");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("http:// or https://"));
}

}  // namespace
}  // namespace starling
