#pragma once
// The rule engine: the pipeline's cleaning rules applied through Protobuf
// reflection. Each failed rule yields a machine-readable Reason.

#include <vector>

#include <google/protobuf/message.h>

#include "services/common/pipeline.h"
#include "starling/v1/envelope.pb.h"

namespace starling::clean {

class RuleEngine {
 public:
  explicit RuleEngine(const PipelineConfig& pipeline);

  /// Every rule the record breaks, in the pipeline's rule order; empty when
  /// the record is clean. Thread-compatible (no mutable state).
  std::vector<v1::Reason> check(const google::protobuf::Message& record) const;

 private:
  const PipelineConfig& pipeline_;
};

}  // namespace starling::clean
