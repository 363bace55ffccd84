#pragma once
// A temporary folder for one test, removed when the test passed and kept
// (with its logs) when it failed, so a failure can be read afterwards.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace starling::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "starling-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    if (!::testing::Test::HasFailure()) {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    } else {
      std::fprintf(stderr, "kept %s for inspection\n", path_.c_str());
    }
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }

 private:
  std::string path_;
};

inline std::string source_path(const std::string& rel) { return std::string(STARLING_SOURCE_DIR) + "/" + rel; }

}  // namespace starling::testing
