#pragma once
// `starling completion bash|zsh`: a completion script generated from the
// command line's own CLI11 tree (its subcommands and options), so it never
// drifts from the flags. CLI11 2.1 has no generator of its own.

#include <CLI/CLI.hpp>
#include <string>

namespace starling::cli {

/// A bash script defining `_<prog>` and registering it with `complete`.
/// Completes subcommands and options per position in the subcommand tree;
/// after an option that takes a value, and for positional arguments, files.
std::string bash_completion(const CLI::App& app, const std::string& prog);

/// The bash script under zsh's bashcompinit.
std::string zsh_completion(const CLI::App& app, const std::string& prog);

}  // namespace starling::cli
