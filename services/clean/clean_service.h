#pragma once
// The cleaning stage's loop: <p>.raw → rules → <p>.clean or <p>.rejected,
// plus CLEANED/REJECTED progress facts on starling.saga.

#include <string>

#include "broker-adapters/kafka/kafka.h"
#include "services/clean/rules.h"
#include "services/common/pipeline.h"

namespace starling::clean {

struct CleanOptions {
  std::size_t batch_max = 1000;
  std::chrono::milliseconds batch_wait{100};
};

/// At-least-once: a batch's outputs and facts are PERSISTED before its input
/// offsets are committed to the group, so a crash re-cleans at most one batch.
/// Duplicates are harmless downstream (upsert by event id, seq bitmaps).
class CleanService {
 public:
  CleanService(const PipelineConfig& pipeline, kafka::KafkaOptions kafka, std::string instance,
               CleanOptions options = {});
  /// Runs until shutdown_requested(). Returns non-zero on a fatal error.
  int run();

 private:
  const PipelineConfig& pipeline_;
  kafka::KafkaOptions kafka_;
  std::string instance_;
  CleanOptions options_;
  RuleEngine rules_;
};

}  // namespace starling::clean
