#pragma once
// `starling extract backfill`: a past range of a pipeline's source pulled as
// one saga of kind REPLAY, beside the live starling-extract (which keeps its
// own cursor). The run is a process of its own, like `starling replay`: its
// cursor and seqs live in RocksDB under <state-dir>/<id>/cursor (so a run
// killed anywhere goes on from its last window when started again with the
// same --id), its progress in <state-dir>/<id>.json (replaced atomically
// after every window), and status/pause/resume/cancel from another terminal
// go through <state-dir>/<id>.control.

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "services/common/error.h"
#include "services/common/http.h"
#include "services/common/kafka_properties.h"
#include "services/extract/extractor.h"

namespace starling::extract {

struct BackfillOptions {
  std::string pipeline_file;  // a YAML file with a source: http_poll: block
  std::string id;             // "" makes one: backfill-<random>
  int64_t from_ms = 0;
  int64_t to_ms = 0;  // exclusive
  std::string state_dir = "starling-data/backfills";
  std::string kafka = "127.0.0.1:9092";
  KafkaProperties kafka_properties;
  HttpClientOptions tls;  // https:// APIs: ca_file ("" : the system's CAs)
  ExtractOptions extract;
};

struct BackfillStatus {
  std::string id;
  std::string pipeline;
  int64_t from_ms = 0;
  int64_t to_ms = 0;
  int64_t since_ms = 0;  // the next window starts here
  std::string state;     // running, paused, done, cancelled, failed
  std::string error;
  int64_t pid = 0;
  int64_t started_ms = 0;
  int64_t updated_ms = 0;
  int64_t pages = 0;
  int64_t records = 0;
  int64_t rejected = 0;
  int64_t windows = 0;
  int64_t failed_polls = 0;
  /// How much of the range is done, 0 to 1.
  double fraction() const;
};

/// The status as its state file holds it (times as Unix ms and RFC 3339).
nlohmann::json backfill_json(const BackfillStatus& s);

/// Checks the options (the error names the flag) before anything starts.
Status check_backfill_options(const BackfillOptions& o);

/// Runs (or goes on with) a backfill until its end, a cancel, or `stop`
/// (Ctrl-C: the window in flight is redone by the next run). A window that
/// fails (the API down) is retried after the client's back-off, forever: a
/// backfill is the operator's, and they can cancel it. `progress` is called
/// after every window and while paused.
Result<BackfillStatus> run_backfill(const BackfillOptions& o,
                                    const std::function<void(const BackfillStatus&)>& progress,
                                    const std::function<bool()>& stop);

/// pause, resume or cancel a running backfill (taken between windows).
Status control_backfill(const std::string& state_dir, const std::string& id, const std::string& command);

Result<BackfillStatus> read_backfill_status(const std::string& state_dir, const std::string& id);

/// Whether the process that runs it is alive.
bool backfill_process_alive(const BackfillStatus& s);

}  // namespace starling::extract
