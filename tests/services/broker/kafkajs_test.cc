// Integration test: KafkaJS (from the npm registry, version pinned in
// kafkajs/package-lock.json) produces to and consumes in a group from the real
// starling-broker process. The checks live in kafkajs/interop.js; this test
// installs it into the build tree, starts the broker and asserts on the
// script's exit status and summary line.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/npm_client.h"
#include "tests/services/broker/stored_log.h"

namespace starling::broker::testing {
namespace {

/// The pinned KafkaJS, installed into the build tree by `npm ci` (npm_client.h).
void install_kafkajs(const fs::path& work) {
  install_npm_client(KAFKAJS_SOURCE_DIR, work, {"interop.js", "compression.js", "admin.js", "groups.js"},
                     "node_modules/kafkajs/package.json");
}

TEST(KafkaJs, ProducesWithKeysAndHeadersAndConsumesInAGroupFromTheCommittedOffsets) {
  const fs::path work = KAFKAJS_WORK_DIR;
  ASSERT_NO_FATAL_FAILURE(install_kafkajs(work));
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--auto-create", "false"});

  // Given 2000 messages produced by an idempotent KafkaJS producer, when a
  // KafkaJS consumer group reads them and a second member resumes, then the
  // script has checked every key, value, header, partition and offset.
  auto r = run_command(
      "cd " + work.string() + " && KAFKAJS_NO_PARTITIONER_WARNING=1 node interop.js " + broker.bootstrap() + " 2000",
      60);
  EXPECT_EQ(r.exit_code, 0) << r.output << "\nbroker log:\n" << broker.log();
  EXPECT_NE(r.output.find("OK produced 2100 consumed 2000+100 partitions 3"), std::string::npos) << r.output;
  EXPECT_TRUE(broker.alive()) << broker.log();
}

// KafkaJS compresses by itself (it does not look at the ApiVersions ranges),
// so this guards the broker's side: a gzip batch is stored as it came,
// compressed, and served back.
TEST(KafkaJs, GzipBatchesAreStoredCompressedAndReadBack) {
  const fs::path work = KAFKAJS_WORK_DIR;
  ASSERT_NO_FATAL_FAILURE(install_kafkajs(work));
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--auto-create", "false"});
  auto r = run_command("cd " + work.string() + " && node compression.js " + broker.bootstrap() + " kjs-gzip 2000", 60);
  ASSERT_EQ(r.exit_code, 0) << r.output << "\nbroker log:\n" << broker.log();
  const std::string ok = "OK produced 2000 consumed 2000 value bytes ";
  const auto at = r.output.find(ok);
  ASSERT_NE(at, std::string::npos) << r.output;
  const uint64_t input = std::stoull(r.output.substr(at + ok.size()));
  StoredLog log = read_stored_log(dir.path(), "kjs-gzip", 0);
  ASSERT_FALSE(log.codecs.empty());
  int records = 0;
  for (size_t i = 0; i < log.codecs.size(); ++i) {
    EXPECT_EQ(log.codecs[i], codec_id("gzip")) << "batch " << i;
    records += log.record_counts[i];
  }
  EXPECT_EQ(records, 2000);
  EXPECT_LT(log.bytes, input);
}

// KafkaJS's admin client: createPartitions, deleteTopicRecords, describeConfigs
// and alterConfigs (the checks are in kafkajs/admin.js).
TEST(KafkaJs, AdminGrowsATopicDeletesRecordsAndDescribesAndAltersConfigs) {
  const fs::path work = KAFKAJS_WORK_DIR;
  ASSERT_NO_FATAL_FAILURE(install_kafkajs(work));
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--auto-create", "false"});
  auto r = run_command("cd " + work.string() + " && node admin.js " + broker.bootstrap() + " kjs-admin", 60);
  EXPECT_EQ(r.exit_code, 0) << r.output << "\nbroker log:\n" << broker.log();
  EXPECT_NE(r.output.find("OK admin"), std::string::npos) << r.output;
  EXPECT_TRUE(broker.alive()) << broker.log();
}

// KafkaJS's admin describes a live group (the member's subscription and
// assignment decoded by its AssignerProtocol) and deletes it once empty.
TEST(KafkaJs, AdminDescribesAGroupWithDecodedMemberBytesAndDeletesItOnceEmpty) {
  const fs::path work = KAFKAJS_WORK_DIR;
  ASSERT_NO_FATAL_FAILURE(install_kafkajs(work));
  TempDir dir;
  BrokerProcess broker(dir.path(), {"--auto-create", "false"});
  auto r = run_command("cd " + work.string() + " && node groups.js " + broker.bootstrap(), 90);
  EXPECT_EQ(r.exit_code, 0) << r.output << "\nbroker log:\n" << broker.log();
  EXPECT_NE(
      r.output.find("OK describeGroups members 1 partitions 0,1 deleteGroups NON_EMPTY_GROUP NONE GROUP_ID_NOT_FOUND"),
      std::string::npos)
      << r.output;
  EXPECT_TRUE(broker.alive()) << broker.log();
}

}  // namespace
}  // namespace starling::broker::testing
