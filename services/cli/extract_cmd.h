#pragma once
// `starling extract backfill`: a past range of a pipeline's source pulled as
// one REPLAY saga (services/extract/backfill.h), with a progress bar, and its
// status, pause, resume and cancel from another terminal.

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "services/extract/backfill.h"

namespace starling::cli {

struct ExtractArgs {
  extract::BackfillOptions opts;
  std::string from;
  std::string to;
  std::string command;  // "" (run), status, pause, resume, cancel
  std::string id;
  bool as_json = false;
  std::vector<std::string> kafka_property_flags;
  std::string kafka_properties_file;
  CLI::App* extract = nullptr;
  CLI::App* backfill = nullptr;
  std::vector<CLI::App*> controls;
};

/// Adds `extract backfill [status|pause|resume|cancel ID]` to `app`.
void add_extract_command(CLI::App& app, ExtractArgs& args);

/// Runs it once parsed; the exit code (2: bad input, 1: the run failed).
int cmd_extract(ExtractArgs& args);

}  // namespace starling::cli
