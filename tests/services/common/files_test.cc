#include "services/common/files.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "tests/support/temp_dir.h"

namespace starling {
namespace {

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Files in the folder but `path` itself: a temporary file left behind.
std::size_t others(const std::string& dir, const std::string& path) {
  std::size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) n += e.path() != path;
  return n;
}

TEST(Files, WriteFileAtomicallyCreatesAndReplacesAFileLeavingNothingElse) {
  testing::TempDir dir;
  const auto path = dir / "ingest.port";
  ASSERT_TRUE(write_file_atomically(path, "8080\n").has_value());
  EXPECT_EQ(read(path), "8080\n");
  ASSERT_TRUE(write_file_atomically(path, "9").has_value());
  EXPECT_EQ(read(path), "9") << "replaced whole, not overwritten in place";
  ASSERT_TRUE(write_file_atomically(path, "").has_value());
  EXPECT_EQ(read(path), "");
  EXPECT_EQ(others(dir.path(), path), 0u);
}

TEST(Files, WriteFileAtomicallyFailsNamingThePathAndLeavesTheOldContent) {
  testing::TempDir dir;
  auto missing = write_file_atomically(dir / "no/such/folder/x.json", "{}");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, Errc::kIo);
  EXPECT_NE(missing.error().message.find("no/such/folder/x.json"), std::string::npos) << missing.error().message;

  // A folder cannot be renamed over: the rename fails after the write.
  const auto busy = dir / "busy";
  std::filesystem::create_directories(busy + "/inside");
  auto over_dir = write_file_atomically(busy, "x");
  ASSERT_FALSE(over_dir.has_value());
  EXPECT_NE(over_dir.error().message.find(busy), std::string::npos) << over_dir.error().message;
  EXPECT_TRUE(std::filesystem::is_directory(busy + "/inside"));
  EXPECT_EQ(others(dir.path(), busy), 0u) << "the temporary file is removed";
}

// What the port files and a replay's state file are for: another process
// polls them while they are replaced.
TEST(Files, AReaderNeverSeesATornFile) {
  testing::TempDir dir;
  const auto path = dir / "replay.json";
  const std::string a(64 * 1024, 'a');
  const std::string b(96 * 1024, 'b');
  ASSERT_TRUE(write_file_atomically(path, a).has_value());
  std::atomic<bool> done{false};
  std::atomic<int> torn{0};
  std::atomic<int> reads{0};
  std::thread reader([&] {
    while (!done) {
      const auto got = read(path);
      if (got != a && got != b) ++torn;
      ++reads;
    }
  });
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(write_file_atomically(path, i % 2 ? a : b).has_value());
  done = true;
  reader.join();
  EXPECT_EQ(torn.load(), 0) << "of " << reads.load() << " reads";
  EXPECT_GT(reads.load(), 0);
}

}  // namespace
}  // namespace starling
