#pragma once
// How far each stage's consumer group is behind, read from Kafka as any lag
// tool reads it (the committed offsets every stage also commits to its group). `starling groups` prints it;
// starling-saga's console shows it.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/error.h"

namespace starling::kafka {

struct StageLag {
  std::string pipeline;  // "*" for the saga stage, which serves every pipeline
  std::string stage;     // clean | load | saga
  std::string group;
  std::vector<PartitionLag> partitions;
  int64_t lag = 0;  // summed over the partitions
  /// The oldest first-unprocessed record's timestamp over the partitions.
  std::optional<int64_t> oldest_unprocessed_ms;
};

/// The stages of these pipelines (by name), then the saga stage's. Each
/// stage's read waits at most `timeout`.
Result<std::vector<StageLag>> stage_lags(const KafkaOptions& options, const std::vector<std::string>& pipelines,
                                         std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace starling::kafka
