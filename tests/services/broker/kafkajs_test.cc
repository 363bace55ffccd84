// Integration test: KafkaJS (from the npm registry, version pinned in
// kafkajs/package-lock.json) produces to and consumes in a group from the real
// starling-broker process. The checks live in kafkajs/interop.js; this test
// installs it into the build tree, starts the broker and asserts on the
// script's exit status and summary line.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "tests/services/broker/broker_process.h"
#include "tests/services/broker/stored_log.h"

namespace starling::broker::testing {
namespace {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

/// Runs `cmd` under sh, killed after `timeout_s` seconds.
CommandResult run_command(const std::string& cmd, int timeout_s) {
  std::string full = "timeout -s KILL " + std::to_string(timeout_s) + " sh -c '" + cmd + "' 2>&1";
  CommandResult r;
  FILE* p = ::popen(full.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

/// Installs the pinned KafkaJS into the build tree (never the source tree)
/// with `npm ci`, once per lock file: a copy of the lock file that was
/// installed is kept beside node_modules and compared on the next run.
void install_kafkajs(const fs::path& work) {
  const fs::path src = KAFKAJS_SOURCE_DIR;
  fs::create_directories(work);
  for (const char* script : {"interop.js", "compression.js", "admin.js", "groups.js"}) {
    fs::copy_file(src / script, work / script, fs::copy_options::overwrite_existing);
  }
  const std::string lock = read_file(src / "package-lock.json");
  ASSERT_FALSE(lock.empty()) << "missing " << (src / "package-lock.json");
  if (read_file(work / "installed-lock.json") == lock && fs::exists(work / "node_modules/kafkajs/package.json")) {
    return;
  }
  fs::copy_file(src / "package.json", work / "package.json", fs::copy_options::overwrite_existing);
  fs::copy_file(src / "package-lock.json", work / "package-lock.json", fs::copy_options::overwrite_existing);
  ASSERT_EQ(run_command("command -v npm", 5).exit_code, 0) << "npm is not installed; run tools/setup";
  auto r = run_command("cd " + work.string() + " && npm ci --no-audit --no-fund --prefer-offline", 180);
  ASSERT_EQ(r.exit_code, 0) << "npm ci failed:\n" << r.output;
  fs::copy_file(src / "package-lock.json", work / "installed-lock.json", fs::copy_options::overwrite_existing);
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
