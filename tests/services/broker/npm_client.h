#pragma once
// Clients from the npm registry for interop tests: each lives in a folder of
// this source tree with its package.json, its pinned package-lock.json and its
// scripts, and is installed with `npm ci` into the build tree (never the
// source tree), once per lock file.

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/services/broker/broker_process.h"

namespace starling::broker::testing {

/// Copies `scripts` from `src` to `work` and runs `npm ci` there when the lock
/// file differs from the one installed last (kept as installed-lock.json) or
/// `installed_marker` (a path under work) is missing. `env` prefixes the npm
/// command (for a package that builds native code).
inline void install_npm_client(const std::filesystem::path& src, const std::filesystem::path& work,
                               const std::vector<std::string>& scripts, const std::string& installed_marker,
                               const std::string& env = {}, int timeout_s = 180) {
  namespace fs = std::filesystem;
  fs::create_directories(work);
  for (const auto& script : scripts) fs::copy_file(src / script, work / script, fs::copy_options::overwrite_existing);
  const std::string lock = read_file(src / "package-lock.json");
  ASSERT_FALSE(lock.empty()) << "missing " << (src / "package-lock.json");
  if (read_file(work / "installed-lock.json") == lock && fs::exists(work / installed_marker)) return;
  fs::copy_file(src / "package.json", work / "package.json", fs::copy_options::overwrite_existing);
  fs::copy_file(src / "package-lock.json", work / "package-lock.json", fs::copy_options::overwrite_existing);
  ASSERT_EQ(run_command("command -v npm", 5).exit_code, 0) << "npm is not installed; run tools/setup";
  auto r =
      run_command("cd " + work.string() + " && " + env + " npm ci --no-audit --no-fund --prefer-offline", timeout_s);
  ASSERT_EQ(r.exit_code, 0) << "npm ci failed:\n" << r.output;
  ASSERT_TRUE(fs::exists(work / installed_marker)) << "npm ci did not produce " << installed_marker << ":\n"
                                                   << r.output;
  fs::copy_file(src / "package-lock.json", work / "installed-lock.json", fs::copy_options::overwrite_existing);
}

}  // namespace starling::broker::testing
