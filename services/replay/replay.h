#pragma once
// `starling replay`: re-publishes a range of a stage's input topic into that
// stage's replay topic (<p>.raw.replay for clean, <p>.clean.replay for load),
// which the stage consumes beside its live topic. The replayed events form
// one new saga of kind REPLAY (the parent; one child per input partition),
// linked to the originals through Envelope.origin_saga_id/origin_seq. No
// consumer group is stopped or touched: the range is read with assign().
//
// Control state lives in a small JSON file per replay, <state-dir>/<id>.json,
// replaced atomically (write, fsync, rename) after every published batch, so
// `starling replay status ID` works from another terminal and survives a crash
// of either side. pause/resume/cancel write <state-dir>/<id>.control the same
// way; the running replay reads it between batches.

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/error.h"
#include "services/common/kafka_properties.h"

namespace starling::replay {

struct ReplayOptions {
  std::string kafka;                 // bootstrap servers
  KafkaProperties kafka_properties;  // the user's librdkafka properties
  std::string pipeline;              // pipeline name
  std::string stage = "clean";       // clean: <p>.raw → <p>.raw.replay; load: <p>.clean → <p>.clean.replay
  std::string from;                  // time (RFC 3339 or Unix ms), "beginning", "end", "@N" or "P@N,P@N"
  std::string to;
  std::string saga;  // only this saga's events
  // Only these events (a re-drive of rejected records from the console); empty: every event.
  std::set<std::string> event_ids;
  bool dry_run = false;
  double rate = 0;           // events per second; 0: as fast as the broker takes them
  std::string state_dir;     // where <id>.json and <id>.control live
  std::string id;            // the replay saga id; empty: a new "replay-<random>"
  std::size_t batch = 1000;  // events per produce round (smaller under --rate)
  // --stage clean: the events ingested this long before the range's first
  // one are sent first, marked warm_up, so the clean stage starts the range
  // with the device state the original run had (fill_last_known). 0: none.
  int64_t warm_up_ms = 0;
};

/// One partition of the range: offsets [from, to).
struct PartitionRange {
  int32_t partition = 0;
  int64_t from = 0;
  int64_t to = 0;
};

/// Per partition, what the replay did so far.
struct PartitionProgress {
  int32_t partition = 0;
  int64_t from = 0;
  int64_t to = 0;
  int64_t next = 0;        // next offset to read
  int64_t warm_from = 0;   // warm-up offsets [warm_from, from): state only, no seqs
  uint32_t warmed = 0;     // warm-up events sent
  uint32_t first_seq = 0;  // seqs [first_seq, first_seq + published) of the replay saga
  uint32_t published = 0;
  uint32_t duplicates = 0;  // repeated event ids, replayed once
  uint32_t filtered = 0;    // other sagas' events (with --saga), not replayed
  uint32_t unreadable = 0;  // not an Envelope: nothing to replay
  int64_t min_time_ms = 0;  // message timestamps actually covered; 0: none yet
  int64_t max_time_ms = 0;
};

/// What <state-dir>/<id>.json holds.
struct ReplayStatus {
  std::string id;
  std::string pipeline;
  std::string stage;
  std::string source_topic;
  std::string replay_topic;
  std::string range;  // "from..to" as given
  std::string saga;   // --saga filter
  std::string kafka;
  std::string state;  // running, paused, cancelled, published (every event is out), failed, dry-run
  std::string error;  // when failed
  int pid = 0;
  double rate = 0;
  bool dry_run = false;
  int64_t started_ms = 0;
  int64_t updated_ms = 0;
  std::vector<PartitionProgress> partitions;

  uint64_t offsets_total() const;
  uint64_t offsets_read() const;
  uint64_t published() const;
  uint64_t duplicates() const;
};

nlohmann::json to_json(const ReplayStatus& s);
ReplayStatus status_from_json(const nlohmann::json& j);

/// Resolves --from/--to into offsets per partition. Errors name the flag
/// and say what was expected.
Result<std::vector<PartitionRange>> plan_replay(kafka::TopicReader& reader, const std::string& topic,
                                                const std::string& from, const std::string& to);

/// Validates the options (which flag, what was expected) without the broker.
Status check_replay_options(const ReplayOptions& options);

/// Runs a replay (or a dry run: reads and counts, publishes nothing) to its
/// end, a cancel, or an error. `progress` is called after every batch and on
/// pause/resume. Returns the final status (also in the state file).
Result<ReplayStatus> run_replay(const ReplayOptions& options,
                                const std::function<void(const ReplayStatus&)>& progress = {});

/// The state file of a replay.
Result<ReplayStatus> read_replay_status(const std::string& state_dir, const std::string& id);

/// "pause", "resume" or "cancel" for the running replay `id`. A replay whose
/// process is gone (crashed, killed) is cancelled here: its saga gets its
/// total from the state file, so it can complete.
Status control_replay(const std::string& state_dir, const std::string& id, const std::string& action);

/// True while the process that runs the replay exists.
bool replay_process_alive(const ReplayStatus& s);

}  // namespace starling::replay
