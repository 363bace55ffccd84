// Interop: each compression codec, produced by each librdkafka-based client
// (the C API, kcat, Python's confluent-kafka), is really compressed on the
// wire and in the log (librdkafka <= 2.0.2 decides from the broker's
// ApiVersions whether it may compress, see README "APIs"), and reads back
// exactly. The proof is on disk: the codec bits of every stored batch, and a
// log smaller than what was produced.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/rdkafka_helpers.h"
#include "tests/services/broker/stored_log.h"

namespace starling::broker::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kRecords = 2000;

/// Compressible, like the pipeline's JSON readings, and about 400 bytes:
/// each compresses even alone. A client sends a batch uncompressed when
/// compressing makes it larger, which a batch of one short record can be
/// (librdkafka's first batch often holds only the record that waited for
/// metadata), and then its codec bits are rightly 0.
std::string reading(int i) {
  std::string samples;
  for (int k = 0; k < 60; ++k) samples += std::to_string(20 + (i + k / 20) % 3) + ".5,";
  samples.pop_back();
  return "{\"device\":\"sensor-" + std::to_string(1000 + i % 50) +
         "\",\"unit\":\"celsius\",\"site\":\"north-field\",\"samples\":[" + samples + "],\"seq\":" + std::to_string(i) +
         "}";
}

size_t input_bytes(int count) {
  size_t n = 0;
  for (int i = 0; i < count; ++i) n += reading(i).size();
  return n;
}

/// Every stored batch carries `codec`, and the log is smaller than the input.
void expect_compressed_on_disk(const fs::path& dir, const std::string& topic, const std::string& codec, size_t input) {
  StoredLog log = read_stored_log(dir, topic, 0);
  ASSERT_FALSE(log.codecs.empty()) << "nothing stored for " << topic;
  int records = 0;
  for (size_t i = 0; i < log.codecs.size(); ++i) {
    EXPECT_EQ(log.codecs[i], codec_id(codec)) << codec << ": batch " << i << " of " << log.codecs.size();
    records += log.record_counts[i];
  }
  EXPECT_EQ(records, kRecords);
  EXPECT_LT(log.bytes, input) << codec << ": the log holds " << log.bytes << " bytes for " << input
                              << " bytes of values";
}

class Codec : public ::testing::TestWithParam<std::string> {};

std::string codec_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

TEST_P(Codec, LibrdkafkaProducerCompressesWhatTheBrokerStoresAndAConsumerReadsItBack) {
  const std::string codec = GetParam();
  TempDir dir;
  BrokerProcess broker(dir.path());
  const std::string topic = "c-" + codec;
  {
    Producer producer(broker.bootstrap(), {{"compression.codec", codec}, {"linger.ms", "20"}, {"acks", "all"}});
    for (int i = 0; i < kRecords; ++i) producer.produce(topic, reading(i), 0);
    ASSERT_TRUE(producer.flush()) << broker.log();
    ASSERT_EQ(producer.deliveries().size(), static_cast<size_t>(kRecords));
    for (const auto& d : producer.deliveries()) ASSERT_EQ(d.err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(d.err);
  }
  expect_compressed_on_disk(dir.path(), topic, codec, input_bytes(kRecords));

  Consumer consumer(broker.bootstrap(), {{"group.id", "reader"}, {"enable.auto.commit", "false"}});
  consumer.assign(topic, 1);
  auto got = consumer.consume(kRecords, 30s);
  ASSERT_EQ(got.size(), static_cast<size_t>(kRecords));
  for (int i = 0; i < kRecords; ++i) {
    EXPECT_EQ(got[static_cast<size_t>(i)].offset, i);
    EXPECT_EQ(got[static_cast<size_t>(i)].value, reading(i));
  }
}

TEST_P(Codec, KcatProducerCompressesWhatTheBrokerStoresAndKcatReadsItBack) {
  const std::string codec = GetParam();
  TempDir dir;
  BrokerProcess broker(dir.path());
  const std::string topic = "k-" + codec;
  const fs::path input = dir.path() / "input.txt";
  {
    std::ofstream f(input);
    for (int i = 0; i < kRecords; ++i) f << reading(i) << '\n';
  }
  auto produced = run_command("kcat -b " + broker.bootstrap() + " -P -t " + topic + " -p 0 -z " + codec +
                                  " -X linger.ms=20 < " + input.string(),
                              60);
  ASSERT_EQ(produced.exit_code, 0) << produced.output << broker.log();
  expect_compressed_on_disk(dir.path(), topic, codec, input_bytes(kRecords));

  auto consumed = run_command("kcat -b " + broker.bootstrap() + " -C -t " + topic + " -p 0 -o beginning -e -q", 60);
  ASSERT_EQ(consumed.exit_code, 0) << consumed.output;
  auto got = lines(consumed.output);
  ASSERT_EQ(got.size(), static_cast<size_t>(kRecords));
  for (int i = 0; i < kRecords; ++i) EXPECT_EQ(got[static_cast<size_t>(i)], reading(i));
}

// The Python script produces its own readings (its value_of) and checks them
// as it reads them back; here we check what the broker stored.
TEST_P(Codec, PythonConfluentKafkaProducerCompressesWhatTheBrokerStoresAndReadsItBack) {
  const std::string codec = GetParam();
  const std::string python = "/usr/bin/python3";
  ASSERT_EQ(run_command(python + " -c \"import confluent_kafka\"", 30).exit_code, 0)
      << "python3-confluent-kafka is not installed; run tools/setup";
  TempDir dir;
  BrokerProcess broker(dir.path());
  const std::string topic = "py-" + codec;
  const std::string script =
      std::string(STARLING_SOURCE_DIR) + "/tests/services/broker/python/compression_roundtrip.py";
  auto r = run_command(
      python + " " + script + " " + broker.bootstrap() + " " + topic + " " + codec + " " + std::to_string(kRecords),
      90);
  ASSERT_EQ(r.exit_code, 0) << r.output << "\nbroker log:\n" << broker.log();
  const std::string ok = "OK produced 2000 consumed 2000 value bytes ";
  const auto at = r.output.find(ok);
  ASSERT_NE(at, std::string::npos) << r.output;
  expect_compressed_on_disk(dir.path(), topic, codec, std::stoul(r.output.substr(at + ok.size())));
}

INSTANTIATE_TEST_SUITE_P(Compression, Codec, ::testing::Values("gzip", "snappy", "lz4", "zstd"), codec_name);

}  // namespace
}  // namespace starling::broker::testing
