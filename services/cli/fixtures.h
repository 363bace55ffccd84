#pragma once
// `starling test FILE.yaml`: runs the fixture cases in FILE.test.yaml beside
// the pipeline through the real rule engine and state (in memory), in order,
// so cases can build on each other (fill from last known, dedupe).

#include <string>
#include <vector>

namespace starling::cli {

/// Runs every pipeline's fixtures and prints PASS/FAIL per case with a diff.
/// Returns 0 when every case passed, 1 when one failed, 2 when a pipeline or
/// fixture file is invalid.
int run_fixture_files(const std::vector<std::string>& pipeline_files);

/// The fixture file of a pipeline: pipelines/x.yaml → pipelines/x.test.yaml.
std::string fixture_path(const std::string& pipeline_file);

}  // namespace starling::cli
