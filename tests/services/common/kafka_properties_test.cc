// The user's librdkafka properties: file, environment and flags, in that
// order of precedence; errors that say where; the guarantees' own settings
// refused; secrets never shown.

#include "services/common/kafka_properties.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "tests/support/temp_dir.h"

namespace starling {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string write(const testing::TempDir& dir, const std::string& text) {
  const auto path = dir.path() + "/client.properties";
  std::ofstream(path) << text;
  return path;
}

TEST(KafkaProperties, FileThenEnvironmentThenFlagsEachOverridingTheEarlier) {
  testing::TempDir dir;
  const auto file = write(dir,
                          "# a secured cluster\n"
                          "security.protocol = SASL_SSL\n"
                          "\n"
                          "! also a comment\n"
                          "sasl.mechanism=PLAIN\n"
                          "sasl.username=file-user\n"
                          "ssl.ca.location=/etc/ca.pem\n");
  auto p = collect_kafka_properties(file, {{"sasl.mechanism", "SCRAM-SHA-512"}, {"sasl.username", "env-user"}},
                                    {"sasl.username=flag-user", "client.rack=r1"});
  ASSERT_TRUE(p.has_value()) << p.error().message;
  EXPECT_EQ(p->values.at("security.protocol"), "SASL_SSL");  // trimmed
  EXPECT_EQ(p->values.at("ssl.ca.location"), "/etc/ca.pem");
  EXPECT_EQ(p->values.at("sasl.mechanism"), "SCRAM-SHA-512");
  EXPECT_EQ(p->values.at("sasl.username"), "flag-user");
  EXPECT_EQ(p->values.at("client.rack"), "r1");
  EXPECT_EQ(p->origins.at("security.protocol"), file + ":2");
  EXPECT_EQ(p->origins.at("sasl.mechanism"), "STARLING_KAFKA_SASL_MECHANISM");
  EXPECT_EQ(p->origins.at("sasl.username"), "--kafka-property");
}

TEST(KafkaProperties, EnvironmentVariablesMapToPropertiesButNotTheBootstrapOrTheFile) {
  std::string a = "STARLING_KAFKA_SASL_MECHANISM=PLAIN";
  std::string b = "STARLING_KAFKA_BOOTSTRAP=127.0.0.1:9092";
  std::string c = "STARLING_KAFKA_PROPERTIES_FILE=/x";
  std::string d = "STARLING_KAFKA_SSL_KEY_PASSWORD=a=b";  // '=' in a value
  std::string e = "STARLING_LISTEN=127.0.0.1:0";
  std::string f = "STARLING_KAFKA_=nothing";
  char* env[] = {a.data(), b.data(), c.data(), d.data(), e.data(), f.data(), nullptr};
  const auto m = kafka_properties_from_env(env);
  EXPECT_EQ(m, (std::map<std::string, std::string>{{"sasl.mechanism", "PLAIN"}, {"ssl.key.password", "a=b"}}));
}

TEST(KafkaProperties, AFileLineThatIsNotKeyValueIsNamedWithItsLine) {
  testing::TempDir dir;
  const auto file = write(dir, "security.protocol=SSL\nssl.ca.location /etc/ca.pem\n");
  auto p = collect_kafka_properties(file, {}, {});
  ASSERT_FALSE(p.has_value());
  EXPECT_THAT(p.error().message, HasSubstr(file + ":2: expected key=value, got 'ssl.ca.location /etc/ca.pem'"));

  auto empty_key = collect_kafka_properties("", {}, {"=1"});
  ASSERT_FALSE(empty_key.has_value());
  EXPECT_THAT(empty_key.error().message, HasSubstr("--kafka-property: expected key=value, the key is empty"));

  auto missing = collect_kafka_properties(dir.path() + "/nope.properties", {}, {});
  ASSERT_FALSE(missing.has_value());
  EXPECT_THAT(missing.error().message, HasSubstr("nope.properties: cannot be read"));
}

TEST(KafkaProperties, SettingsTheGuaranteesDependOnAreRefusedWithTheReason) {
  for (const char* flag : {"acks=1", "enable.idempotence=false", "enable.auto.commit=true", "group.id=mine",
                           "bootstrap.servers=elsewhere:9092", "auto.offset.reset=latest",
                           "partition.assignment.strategy=cooperative-sticky"}) {
    auto p = collect_kafka_properties("", {}, {flag});
    ASSERT_FALSE(p.has_value()) << flag;
    EXPECT_THAT(p.error().message, HasSubstr("is set by Starling itself")) << flag;
  }
  auto env = collect_kafka_properties("", {{"acks", "0"}}, {});
  ASSERT_FALSE(env.has_value());
  EXPECT_THAT(env.error().message, HasSubstr("STARLING_KAFKA_ACKS: acks is set by Starling itself"));
}

TEST(KafkaProperties, SecretsAreNeverShown) {
  for (const char* key : {"sasl.password", "ssl.key.password", "ssl.keystore.password",
                          "sasl.oauthbearer.client.secret", "ssl.key.pem", "sasl.oauthbearer.config"}) {
    EXPECT_TRUE(secret_kafka_property(key)) << key;
    EXPECT_EQ(shown_kafka_value(key, "hunter2"), "<redacted>") << key;
  }
  for (const char* key : {"sasl.username", "security.protocol", "ssl.ca.location"}) {
    EXPECT_FALSE(secret_kafka_property(key)) << key;
    EXPECT_THAT(shown_kafka_value(key, "hunter2"), Not(HasSubstr("redacted")));
  }
}

}  // namespace
}  // namespace starling
