// The user's librdkafka properties carry a real TLS connection to Kafka.
// starling-broker speaks plain Kafka, so a TLS terminator (socat, mutual TLS:
// a client certificate from our CA is required) stands in front of it, and
// the broker advertises the terminator's port: every client must then reach
// Kafka through TLS, as against a secured cluster. The whole stack runs
// through it with --kafka-property settings; the wrong CA, or no client
// certificate, is refused with the reason.

#include <gmock/gmock.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <fstream>
#include <thread>

#include "services/common/process.h"
#include "tests/e2e/pipeline_e2e.h"
#include "tests/services/broker/broker_process.h"
#include "tests/support/free_port.h"
#include "tests/support/test_certs.h"

namespace starling::e2e {
namespace {

using broker::testing::run_command;
using ::testing::AnyOf;
using ::testing::HasSubstr;

bool accepts(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

class SecuredKafkaE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = testing::TestCerts::make(dir_.path());
    ASSERT_TRUE(certs_.ok()) << certs_.error;
    // The terminator's port must be known before the broker starts (it
    // advertises it); a port taken meanwhile is tried again with another.
    for (int attempt = 0; attempt < 3 && bootstrap_.empty(); ++attempt) start(attempt);
    ASSERT_FALSE(bootstrap_.empty()) << "could not start starling-broker behind socat; see " << dir_.path();
  }

  void start(int attempt) {
    const auto port = testing::free_port();
    const auto d = dir_.path() + "/broker-" + std::to_string(attempt);
    std::filesystem::create_directories(d);
    auto b = ChildProcess::spawn({std::string(STARLING_BIN_DIR) + "/starling-broker", "--listen", "127.0.0.1:0",
                                  "--data-dir", d + "/data", "--port-file", d + "/port", "--advertised-port",
                                  std::to_string(port), "--group-initial-rebalance-delay-ms", "0", "--partitions", "3"},
                                 d + "/broker.log");
    ASSERT_TRUE(b.has_value()) << b.error().message;
    std::string plain;
    for (int i = 0; i < 200 && plain.empty(); ++i) {
      std::ifstream f(d + "/port");
      std::getline(f, plain);
      if (plain.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_FALSE(plain.empty()) << "starling-broker wrote no port file";
    // verify=1 with a cafile: the client must present a certificate our CA signed.
    auto t =
        ChildProcess::spawn({"/usr/bin/socat",
                             fmt::format("OPENSSL-LISTEN:{},bind=127.0.0.1,reuseaddr,fork,cert={},key={},cafile={},"
                                         "verify=1",
                                         port, certs_.server_cert, certs_.server_key, certs_.ca),
                             "TCP:" + plain},
                            d + "/socat.log");
    ASSERT_TRUE(t.has_value()) << t.error().message;
    for (int i = 0; i < 100 && t->running() && !accepts(port); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!t->running() || !accepts(port)) return;  // the port was taken: try another
    broker_ = std::move(*b);
    tls_ = std::move(*t);
    bootstrap_ = fmt::format("127.0.0.1:{}", port);
  }

  std::vector<std::string> tls_properties(const std::string& ca, bool client_cert = true) const {
    std::vector<std::string> p = {"security.protocol=ssl", "ssl.ca.location=" + ca};
    if (client_cert) {
      p.push_back("ssl.certificate.location=" + certs_.client_cert);
      p.push_back("ssl.key.location=" + certs_.client_key);
    }
    return p;
  }

  /// `starling groups` through the terminator with these properties.
  broker::testing::CommandResult groups(const std::vector<std::string>& properties) const {
    std::string cmd = std::string(STARLING_BIN_DIR) + "/starling groups --kafka " + bootstrap_ + " --pipeline " +
                      testing::source_path("pipelines/ecowheels.yaml");
    for (const auto& p : properties) cmd += " --kafka-property '" + p + "'";
    return run_command(cmd + " 2>&1", 60);
  }

  testing::TempDir dir_;
  testing::TestCerts certs_;
  ChildProcess broker_;
  ChildProcess tls_;
  std::string bootstrap_;
};

TEST_F(SecuredKafkaE2E, TheWholeStackRunsOverMutualTlsGivenOnlyByKafkaProperties) {
  StackOptions o;
  o.bin_dir = STARLING_BIN_DIR;
  o.data_dir = dir_.path() + "/stack";
  o.kafka = bootstrap_;
  o.kafka_properties = tls_properties(certs_.ca);
  o.pipeline_files = {testing::source_path("pipelines/ecowheels.yaml")};
  Stack stack(o);
  auto st = stack.start();
  ASSERT_TRUE(st.has_value()) << st.error().message;

  SimOptions s;
  s.url = stack.ingest_url();
  s.events = 400;
  s.rate = 0;
  s.batch = 20;
  s.fault_rate = 0.05;
  auto res = simulate(s);
  ASSERT_TRUE(res.has_value()) << res.error().message;
  auto totals = wait_until_settled(stack.saga_url(), "ecowheels", res->saga_ids.size(), 120s);
  ASSERT_TRUE(totals.has_value()) << totals.error().message;
  EXPECT_EQ(totals->loaded, res->valid_ids.size());
  EXPECT_EQ(totals->rejected, res->faulty_ids.size());
  const auto ids = loaded_ids(stack.db_path("ecowheels"), "ride_telemetry");
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()),
            std::set<std::string>(res->valid_ids.begin(), res->valid_ids.end()));
  EXPECT_EQ(ids.size(), res->valid_ids.size());
  stack.stop();

  // The same through plain Kafka is refused: the port only speaks TLS.
  auto plain = groups({});
  EXPECT_NE(plain.exit_code, 0) << plain.output;
}

TEST_F(SecuredKafkaE2E, TheWrongCaOrNoClientCertificateIsRefusedWithTheReason) {
  auto good = groups(tls_properties(certs_.ca));
  EXPECT_EQ(good.exit_code, 0) << good.output;

  // The broker's certificate is not signed by the CA we trust.
  auto wrong_ca = groups(tls_properties(certs_.other_ca));
  EXPECT_EQ(wrong_ca.exit_code, 1) << wrong_ca.output;
  EXPECT_THAT(wrong_ca.output, AnyOf(HasSubstr("certificate verify failed"), HasSubstr("SSL handshake failed")));

  // Mutual TLS: without a client certificate the terminator hangs up.
  auto no_cert = groups(tls_properties(certs_.ca, /*client_cert=*/false));
  EXPECT_EQ(no_cert.exit_code, 1) << no_cert.output;

  // A client certificate from another CA is refused too.
  auto other =
      groups({"security.protocol=ssl", "ssl.ca.location=" + certs_.ca,
              "ssl.certificate.location=" + certs_.other_client_cert, "ssl.key.location=" + certs_.other_client_key});
  EXPECT_EQ(other.exit_code, 1) << other.output;
}

}  // namespace
}  // namespace starling::e2e
