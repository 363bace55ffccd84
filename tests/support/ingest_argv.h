#pragma once
// The command line tests start starling-ingest with: the ecowheels pipeline,
// a free loopback port written to `port_file`, state under `data_dir`, then
// the test's own flags.

#include <string>
#include <vector>

#include "tests/support/temp_dir.h"

namespace starling::testing {

inline std::vector<std::string> ingest_argv(const std::string& data_dir, const std::string& port_file,
                                            const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {std::string(STARLING_BIN_DIR) + "/starling-ingest",
                                   "--pipeline",
                                   source_path("pipelines/ecowheels.yaml"),
                                   "--listen",
                                   "127.0.0.1:0",
                                   "--port-file",
                                   port_file,
                                   "--data-dir",
                                   data_dir};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

}  // namespace starling::testing
