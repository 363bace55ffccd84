// Integration test: the newer librdkafka generation, as bundled by
// @confluentinc/kafka-javascript (npm, pinned in confluent-js/package-lock.json
// and built from the package's own source), against a starling-broker process:
// admin, idempotent produce with every codec, a group that reads and commits.
// The stored batches on disk must carry the codec the client chose.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/metrics_page.h"
#include "tests/services/broker/npm_client.h"
#include "tests/services/broker/stored_log.h"

namespace starling::broker::testing {
namespace {

/// npm ci of @confluentinc/kafka-javascript, building its native part from the
/// source the npm package carries: node-pre-gyp would otherwise download a
/// prebuilt binary from GitHub, and the bundled librdkafka's configure would
/// download OpenSSL, zstd and others (--install-deps). CKJS_LINKING=dynamic
/// builds the bundled librdkafka against Debian's libraries instead.
void install() {
  const std::string nodedir = run_command("dirname \"$(dirname \"$(readlink -f \"$(command -v node)\")\")\"", 5).output;
  const std::string dir = nodedir.substr(0, nodedir.find('\n'));
  ASSERT_TRUE(fs::exists(dir + "/include/node/node.h"))
      << "Node.js headers not found under " << dir << "/include/node; run tools/setup";
  install_npm_client(CONFLUENT_JS_SOURCE_DIR, CONFLUENT_JS_WORK_DIR, {"interop.js"},
                     "node_modules/@confluentinc/kafka-javascript/build/Release/confluent-kafka-javascript.node",
                     "CKJS_LINKING=dynamic npm_config_build_from_source=true npm_config_nodedir=" + dir, 1500);
}

TEST(ConfluentJs, EveryCodecIdempotentProduceAndAGroupThatCommitsWithTheNewerLibrdkafka) {
  ASSERT_NO_FATAL_FAILURE(install());
  TempDir dir;
  const auto port_file = dir.path() / "metrics-port";
  BrokerProcess broker(dir.path(), {"--auto-create", "false", "--metrics-listen", "127.0.0.1:0", "--metrics-port-file",
                                    port_file.string()});
  const auto address = metrics_address(port_file);
  ASSERT_FALSE(address.empty()) << broker.log();
  auto r = run_command(
      std::string("cd ") + CONFLUENT_JS_WORK_DIR + " && node interop.js " + broker.bootstrap() + " 600", 240);
  ASSERT_EQ(r.exit_code, 0) << r.output << "\nbroker log:\n" << broker.log();
  const std::string ok = "OK librdkafka ";
  const auto at = r.output.find(ok);
  ASSERT_NE(at, std::string::npos) << r.output;
  std::printf("%s\n", r.output.substr(at).c_str());
  EXPECT_NE(r.output.find("codecs 5 records 3000 "), std::string::npos) << r.output;
  // A newer generation than Debian's 2.0.2.
  const std::string version = r.output.substr(at + ok.size(), r.output.find(' ', at + ok.size()) - at - ok.size());
  EXPECT_NE(version.rfind("2.0.", 0), 0u) << version;
  for (const std::string codec : {"none", "gzip", "snappy", "lz4", "zstd"}) {
    uint64_t bytes = 0;
    int records = 0;
    for (int p = 0; p < 3; ++p) {
      StoredLog log = read_stored_log(dir.path(), "cjs-" + codec, p);
      bytes += log.bytes;
      for (size_t i = 0; i < log.codecs.size(); ++i) {
        EXPECT_EQ(log.codecs[i], codec_id(codec)) << codec << " partition " << p << " batch " << i;
        records += log.record_counts[i];
      }
    }
    EXPECT_EQ(records, 600) << codec;
    // 600 values of 400 bytes: compressed logs are smaller than that.
    if (codec != "none") {
      EXPECT_LT(bytes, 600u * 400u) << codec;
    }
  }
  // The newer client took the flexible versions (KIP-482) the broker offers:
  // the highest each side has. Fetch stops at v12 (no topic ids here).
  const std::string page = scrape(address);
  for (const auto& [api, version] : std::vector<std::pair<std::string, int>>{{"ApiVersions", 3},
                                                                             {"Metadata", 12},
                                                                             {"InitProducerId", 2},
                                                                             {"Produce", 9},
                                                                             {"Fetch", 12},
                                                                             {"OffsetCommit", 8},
                                                                             {"OffsetFetch", 7}}) {
    const std::string series =
        "starling_broker_requests_total{api=\"" + api + "\",version=\"" + std::to_string(version) + "\"}";
    EXPECT_GT(sample(page, series), 0) << series << " not served; the page's requests:\n"
                                       << [&] {
                                            std::string lines;
                                            std::istringstream in(page);
                                            for (std::string l; std::getline(in, l);) {
                                              if (l.rfind("starling_broker_requests_total{", 0) == 0) lines += l + "\n";
                                            }
                                            return lines;
                                          }();
  }
  EXPECT_EQ(sample(page, "starling_broker_requests_total{api=\"Fetch\",version=\"other\"}"), -1);
  EXPECT_TRUE(broker.alive()) << broker.log();
}

}  // namespace
}  // namespace starling::broker::testing
