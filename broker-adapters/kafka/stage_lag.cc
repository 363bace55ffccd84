#include "broker-adapters/kafka/stage_lag.h"

#include "services/common/pipeline.h"

namespace starling::kafka {
namespace {

Result<StageLag> one_stage(const KafkaOptions& options, std::string pipeline, std::string stage, std::string group,
                           const std::vector<std::string>& topics, std::chrono::milliseconds timeout) {
  auto parts = group_lag(options, group, topics, timeout);
  if (!parts) return std::unexpected(parts.error());
  StageLag s{std::move(pipeline), std::move(stage), std::move(group), std::move(*parts), 0, std::nullopt};
  for (const auto& p : s.partitions) {
    s.lag += p.lag;
    if (p.oldest_unprocessed_ms && (!s.oldest_unprocessed_ms || *p.oldest_unprocessed_ms < *s.oldest_unprocessed_ms))
      s.oldest_unprocessed_ms = p.oldest_unprocessed_ms;
  }
  return s;
}

}  // namespace

Result<std::vector<StageLag>> stage_lags(const KafkaOptions& options, const std::vector<std::string>& pipelines,
                                         std::chrono::milliseconds timeout) {
  std::vector<StageLag> out;
  for (const auto& name : pipelines) {
    PipelineConfig p;
    p.name = name;
    for (const auto& [stage, group, topics] : {std::tuple{"clean", p.clean_group(), p.clean_inputs()},
                                               std::tuple{"load", p.load_group(), p.load_inputs()}}) {
      auto s = one_stage(options, name, stage, group, topics, timeout);
      if (!s) return std::unexpected(s.error());
      out.push_back(std::move(*s));
    }
  }
  auto saga = one_stage(options, "*", "saga", kSagaGroup, {kSagaTopic}, timeout);
  if (!saga) return std::unexpected(saga.error());
  out.push_back(std::move(*saga));
  return out;
}

}  // namespace starling::kafka
