// Ingest over TLS, with certificates `openssl` makes for each test: the HTTPS
// front door (in process against a fake producer, then starling-ingest with
// --tls-* against starling-broker), and the MQTT bridge to a mosquitto TLS
// listener. A client or bridge that trusts another CA gets nothing in.

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <csignal>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/http.h"
#include "services/common/pipeline.h"
#include "services/common/process.h"
#include "services/ingest/ingest_service.h"
#include "services/ingest/mqtt_client.h"
#include "starling/v1/envelope.pb.h"
#include "tests/services/broker/broker_process.h"
#include "tests/support/ingest_argv.h"
#include "tests/support/mosquitto_server.h"
#include "tests/support/mqtt_publisher.h"
#include "tests/support/prometheus_sample.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_certs.h"

namespace starling::ingest {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// Every message persisted at once, as a broker that is up would.
class RecordingProducer : public kafka::Producer {
 public:
  void produce(const kafka::OutMessage& msg, kafka::DeliveryCallback done) override {
    {
      std::lock_guard lock(mu_);
      sent_.push_back(msg);
    }
    done({kafka::DeliveryStatus::kPersisted, 0, 0, ""});
  }
  Status flush(std::chrono::milliseconds) override { return {}; }
  std::size_t sent_to(const std::string& topic) const {
    std::lock_guard lock(mu_);
    return static_cast<std::size_t>(
        std::count_if(sent_.begin(), sent_.end(), [&](const kafka::OutMessage& m) { return m.topic == topic; }));
  }

 private:
  mutable std::mutex mu_;
  std::vector<kafka::OutMessage> sent_;
};

constexpr const char* kBatch = R"([{"ride_id":"r-1","device_id":"bike-1"},{"ride_id":"r-2","device_id":"bike-2"}])";

class IngestOverHttps : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = testing::TestCerts::make(dir_.path());
    ASSERT_TRUE(certs_.ok()) << certs_.error;
    auto p = load_pipeline(testing::source_path("pipelines/ecowheels.yaml"));
    service_ = std::make_unique<IngestService>(std::map<std::string, PipelineConfig>{{"ecowheels", p}}, producer_,
                                               "ingest-tls-test", IngestOptions{});
  }
  void serve(bool mutual) {
    HttpServerOptions o;
    o.tls = {certs_.server_cert, certs_.server_key, mutual ? certs_.ca : std::string()};
    server_ = std::make_unique<HttpServer>(
        o, [this](HttpRequest r, HttpResponder done) { service_->handle(std::move(r), std::move(done)); });
    server_->start();
  }
  Result<HttpResponse> post(const HttpClientOptions& client) {
    return http_call("POST", fmt::format("https://127.0.0.1:{}/v1/pipelines/ecowheels/events", server_->port()), kBatch,
                     {}, client);
  }

  testing::TempDir dir_;
  testing::TestCerts certs_;
  RecordingProducer producer_;
  std::unique_ptr<IngestService> service_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(IngestOverHttps, ABatchPostedOverHttpsIsAcceptedAndProduced) {
  serve(/*mutual=*/false);
  auto r = post({.ca_file = certs_.ca});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 202) << r->body;
  EXPECT_EQ(producer_.sent_to("ecowheels.raw"), 2u);
}

TEST_F(IngestOverHttps, AClientTrustingAnotherCaHasNothingAccepted) {
  serve(/*mutual=*/false);
  auto r = post({.ca_file = certs_.other_ca});
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("certificate verify failed"));
  EXPECT_EQ(producer_.sent_to("ecowheels.raw"), 0u);
}

TEST_F(IngestOverHttps, WithAClientCaOnlyAClientCertificateOfThatCaGetsIn) {
  serve(/*mutual=*/true);
  auto r = post({.ca_file = certs_.ca});
  EXPECT_FALSE(r && r->status == 202) << "no client certificate";
  r = post({.ca_file = certs_.ca, .cert_file = certs_.other_client_cert, .key_file = certs_.other_client_key});
  EXPECT_FALSE(r && r->status == 202) << "a client certificate of another CA";
  EXPECT_EQ(producer_.sent_to("ecowheels.raw"), 0u);
  r = post({.ca_file = certs_.ca, .cert_file = certs_.client_cert, .key_file = certs_.client_key});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 202) << r->body;
  EXPECT_EQ(producer_.sent_to("ecowheels.raw"), 2u);
}

TEST(MqttClientTls, ABadCaFileIsAStartupErrorNamingIt) {
  testing::TempDir dir;
  MqttClientOptions o;
  o.ca_file = dir / "missing-ca.pem";
  try {
    MqttClient client(o, [](const MqttMessage&, const MqttAckFn&) {});
    ADD_FAILURE() << "constructed with a missing CA file";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr(dir / "missing-ca.pem"));
  }
}

// starling-ingest as a child process; killed with the test.
class IngestProcess {
 public:
  IngestProcess(std::string dir, std::vector<std::string> args) : dir_(std::move(dir)), args_(std::move(args)) {}

  /// Starts it and waits for its port file.
  ::testing::AssertionResult start() {
    if (auto started = spawn(); !started) return started;
    auto port = wait_for_file(port_file(), 60s);
    if (!port) return ::testing::AssertionFailure() << "starling-ingest did not start; see " << log_path();
    port_ = *port;
    return ::testing::AssertionSuccess();
  }
  /// Starts it only.
  ::testing::AssertionResult spawn() {
    const auto port_file = this->port_file();
    std::filesystem::remove(port_file);
    const auto argv = testing::ingest_argv(dir_ + "/ingest", port_file, args_);
    auto p = ChildProcess::spawn(argv, log_path());
    if (!p) return ::testing::AssertionFailure() << p.error().message;
    proc_ = std::move(*p);
    return ::testing::AssertionSuccess();
  }
  std::string port_file() const { return dir_ + "/ingest.port"; }
  std::string log_path() const { return dir_ + "/ingest.log"; }
  std::string url(const std::string& scheme, const std::string& path) const {
    return scheme + "://127.0.0.1:" + port_ + path;
  }
  ChildProcess& process() { return proc_; }

 private:
  std::string dir_;
  std::vector<std::string> args_;
  std::string port_;
  ChildProcess proc_;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Reads `topic` from the start until `want` records came or the bound passed.
std::size_t count_records(const std::string& bootstrap, const std::string& topic, std::size_t want,
                          std::chrono::seconds bound) {
  auto reader = kafka::TopicReader::create({bootstrap, "tls-test", {}});
  EXPECT_TRUE(reader.has_value());
  if (!reader) return 0;
  auto parts = (*reader)->partitions(topic);
  EXPECT_TRUE(parts.has_value());
  if (!parts) return 0;
  std::map<kafka::TopicPartition, int64_t> starts;
  for (int i = 0; i < *parts; ++i) starts[{topic, i}] = 0;
  EXPECT_TRUE((*reader)->assign(starts).has_value());
  std::size_t got = 0;
  const auto end = std::chrono::steady_clock::now() + bound;
  while (got < want && std::chrono::steady_clock::now() < end) {
    if (auto batch = (*reader)->poll_batch(1000, 200ms)) got += batch->size();
  }
  return got;
}

// A sample of /metrics; -1 when unreadable, 0 when the series is not there.
double metric(const std::string& url, const HttpClientOptions& client, const std::string& series) {
  auto r = http_call("GET", url, {}, {}, client);
  if (!r || r->status != 200) return -1;
  return testing::prometheus_sample(r->body, series).value_or(0);
}

class IngestTlsProcess : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = testing::TestCerts::make(dir_.path());
    ASSERT_TRUE(certs_.ok()) << certs_.error;
    broker_ = std::make_unique<broker::testing::BrokerProcess>(std::filesystem::path(dir_ / "broker"));
    auto st = kafka::create_topics({broker_->bootstrap(), "tls-test", {}}, {{"ecowheels.raw", 2}, {kSagaTopic, 2}});
    ASSERT_TRUE(st.has_value()) << st.error().message;
  }
  std::unique_ptr<IngestProcess> ingest(std::vector<std::string> args) {
    args.insert(args.begin(), {"--kafka", broker_->bootstrap()});
    return std::make_unique<IngestProcess>(dir_.path(), std::move(args));
  }
  // Polls /readyz over HTTPS (bounded); the last answer's status and body.
  static HttpResponse wait_ready(const IngestProcess& in, const HttpClientOptions& client, std::chrono::seconds bound) {
    const auto end = std::chrono::steady_clock::now() + bound;
    HttpResponse last{0, {}, {}, {}};
    while (std::chrono::steady_clock::now() < end) {
      if (auto r = http_call("GET", in.url("https", "/readyz"), {}, {}, client)) {
        last = *r;
        if (r->status == 200) break;
      }
      std::this_thread::sleep_for(100ms);
    }
    return last;
  }

  testing::TempDir dir_;
  testing::TestCerts certs_;
  std::unique_ptr<broker::testing::BrokerProcess> broker_;
};

TEST_F(IngestTlsProcess, StarlingIngestWithTlsFlagsAnswers202OverHttpsAndTheEventsReachKafka) {
  // Given starling-ingest with --tls-cert, --tls-key and --tls-client-ca
  auto in = ingest({"--tls-cert", certs_.server_cert, "--tls-key", certs_.server_key, "--tls-client-ca", certs_.ca});
  ASSERT_TRUE(in->start());
  const HttpClientOptions good{.ca_file = certs_.ca, .cert_file = certs_.client_cert, .key_file = certs_.client_key};
  ASSERT_EQ(wait_ready(*in, good, 60s).status, 200);
  // When a client trusting another CA, a client without a certificate and a
  // plain-HTTP client post, then a good one
  auto r = http_call("POST", in->url("https", "/v1/pipelines/ecowheels/events"), kBatch, {},
                     HttpClientOptions{.ca_file = certs_.other_ca});
  EXPECT_FALSE(r);
  r = http_call("POST", in->url("https", "/v1/pipelines/ecowheels/events"), kBatch, {},
                HttpClientOptions{.ca_file = certs_.ca});
  EXPECT_FALSE(r && r->status == 202);
  r = http_call("POST", in->url("http", "/v1/pipelines/ecowheels/events"), kBatch);
  EXPECT_FALSE(r && r->status == 202);
  r = http_call("POST", in->url("https", "/v1/pipelines/ecowheels/events"), kBatch, {}, good);
  ASSERT_TRUE(r) << r.error().message;
  // Then only the good one's two events are in Kafka
  EXPECT_EQ(r->status, 202) << r->body;
  EXPECT_EQ(count_records(broker_->bootstrap(), "ecowheels.raw", 3, 10s), 2u);
  EXPECT_THAT(read_text(in->log_path()), HasSubstr("https listening on port"));
  EXPECT_TRUE(in->process().running());
}

TEST_F(IngestTlsProcess, ABadTlsFileIsExitCode2NamingTheFile) {
  const auto missing = dir_ / "no-such-cert.pem";
  struct Case {
    std::vector<std::string> args;
    std::string named;
  };
  const std::vector<Case> cases = {
      {{"--tls-cert", missing, "--tls-key", certs_.server_key}, missing},
      {{"--tls-cert", certs_.server_cert, "--tls-key", certs_.client_key}, certs_.client_key},
      {{"--tls-client-ca", certs_.ca}, "certificate"},
      {{"--mqtt", "127.0.0.1:1", "--mqtt-ca-file", missing}, missing},
  };
  for (const auto& c : cases) {
    std::filesystem::remove(dir_ / "ingest.log");
    auto in = ingest(c.args);
    ASSERT_TRUE(in->spawn());
    const auto st = in->process().wait(30s);
    ASSERT_TRUE(st.has_value()) << "still running with " << c.args[1];
    const auto log = read_text(in->log_path());
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 2) << log;
    EXPECT_THAT(log, HasSubstr(c.named));
    EXPECT_FALSE(std::filesystem::exists(in->port_file())) << "it listened";
  }
}

class MqttOverTls : public IngestTlsProcess {
 protected:
  void SetUp() override {
    IngestTlsProcess::SetUp();
    if (HasFatalFailure()) return;
    mosquitto_ = std::make_unique<testing::MosquittoServer>(
        dir_.path(), testing::MosquittoTls{certs_.ca, certs_.server_cert, certs_.server_key,
                                           /*require_certificate=*/true});
    ASSERT_TRUE(mosquitto_->start()) << "mosquitto did not start; see " << mosquitto_->log_path();
  }
  std::unique_ptr<IngestProcess> bridge(std::vector<std::string> tls_args) {
    std::vector<std::string> args = {"--mqtt", mosquitto_->tls_address(), "--mqtt-client-id", "tls-bridge"};
    args.insert(args.end(), tls_args.begin(), tls_args.end());
    return ingest(std::move(args));
  }
  // Devices publish on mosquitto's plain listener; the bridge reads on its TLS one.
  void publish(int n) {
    testing::Publisher pub(mosquitto_->port());
    ASSERT_TRUE(pub.ok());
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(pub.publish(fmt::format("starling/ecowheels/bike-{}/events", i % 3),
                              fmt::format(R"({{"ride_id":"tls-{}"}})", i)));
    }
    ASSERT_TRUE(pub.wait_acked(60s));
  }

  std::unique_ptr<testing::MosquittoServer> mosquitto_;
};

TEST_F(MqttOverTls, TheBridgeTrustingTheCaWithAClientCertificateDeliversToKafka) {
  auto in = bridge({"--mqtt-ca-file", certs_.ca, "--mqtt-cert", certs_.client_cert, "--mqtt-key", certs_.client_key});
  ASSERT_TRUE(in->start());
  const auto ready = [&] {
    const auto end = std::chrono::steady_clock::now() + 60s;
    HttpResponse last{0, {}, {}, {}};
    while (std::chrono::steady_clock::now() < end) {
      if (auto r = http_call("GET", in->url("http", "/readyz"))) {
        last = *r;
        if (r->status == 200) break;
      }
      std::this_thread::sleep_for(100ms);
    }
    return last;
  }();
  ASSERT_EQ(ready.status, 200) << ready.body;
  publish(20);
  EXPECT_EQ(count_records(broker_->bootstrap(), "ecowheels.raw", 20, 60s), 20u);
  EXPECT_EQ(metric(in->url("http", "/metrics"), {}, "starling_ingest_mqtt_connected"), 1);
}

// mosquitto or the bridge ends each handshake (with TLS 1.3 mosquitto's
// refusal of a missing client certificate comes after the client's side of
// the handshake, on the first read), the bridge retries with backoff, and
// nothing gets through.
void never_connects(IngestProcess& in, const std::string& expected_reason, const std::function<void()>& publish) {
  ASSERT_TRUE(in.start());
  std::this_thread::sleep_for(3s);  // several attempts (backoff from 100 ms)
  auto r = http_call("GET", in.url("http", "/readyz"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 503);
  EXPECT_THAT(r->body, HasSubstr(expected_reason));
  publish();
  EXPECT_EQ(metric(in.url("http", "/metrics"), {}, "starling_ingest_mqtt_connected"), 0);
  EXPECT_EQ(metric(in.url("http", "/metrics"), {}, "starling_ingest_mqtt_connects_total"), 0);
  EXPECT_TRUE(in.process().running());
}

TEST_F(MqttOverTls, TheBridgeTrustingAnotherCaNeverConnectsAndNothingArrives) {
  auto in =
      bridge({"--mqtt-ca-file", certs_.other_ca, "--mqtt-cert", certs_.client_cert, "--mqtt-key", certs_.client_key});
  never_connects(*in, "certificate verify failed", [this] { publish(5); });
  EXPECT_EQ(count_records(broker_->bootstrap(), "ecowheels.raw", 1, 5s), 0u);
  EXPECT_THAT(read_text(in->log_path()), HasSubstr("TLS handshake with " + mosquitto_->tls_address()));
}

TEST_F(MqttOverTls, WithoutAClientCertificateMosquittoRefusesTheBridge) {
  auto in = bridge({"--mqtt-ca-file", certs_.ca});
  never_connects(*in, "not connected to MQTT", [this] { publish(5); });
  EXPECT_EQ(count_records(broker_->bootstrap(), "ecowheels.raw", 1, 5s), 0u);
}

}  // namespace
}  // namespace starling::ingest
