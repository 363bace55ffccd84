#pragma once

namespace starling::cli {

/// The `starling` command line: up, demo, simulate, sagas, check.
int run(int argc, char** argv);

}  // namespace starling::cli
