#pragma once
// What the console's overview shows of the last minute, per pipeline: events
// per second at each step (from the progress facts the coordinator folds),
// rejects by rule and field, ingest→loaded latency, consumer-group lag, and
// sagas by state. In memory, per instance: a restart starts from zero, and
// with several coordinators each sees the facts of its own partitions.
//
// Memory is constant: 60 one-second buckets per pipeline and step, a
// histogram of 64 buckets per second for latency (each bucket 2^(1/4) wider
// than the last, from 1 ms: a percentile is reported as its bucket's upper
// bound, at most 19% high), at most kRuleKeys rule/field keys per second (the
// rest are counted under rule "other"), and at most kPipelines pipelines.
//
// Threading: the consumer loop records; the HTTP threads read. One mutex.

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "starling/v1/saga.pb.h"

namespace starling::saga {

class Activity {
 public:
  static constexpr int kSeconds = 60;      // the window the overview shows
  static constexpr int kRateSeconds = 10;  // `rate` is the mean over this many seconds
  static constexpr int kLatencyBuckets = 64;
  static constexpr std::size_t kRuleKeys = 200;    // rule/field pairs kept per pipeline
  static constexpr std::size_t kPipelines = 1000;  // pipelines kept (a fact names any it likes)

  /// A folded fact: its events at its step; for LOADED, ingest→loaded
  /// latency from the saga's creation (ingest's time) to the fact's time.
  void record(const v1::ProgressFact& fact, int64_t saga_created_ms, int64_t now_ms);
  /// Consumer-group lag of a stage ("clean", "load"; "saga" with pipeline "").
  void set_lag(const std::string& pipeline, const std::string& stage, std::optional<int64_t> lag);
  /// Sagas by (pipeline, state), as the coordinator counts them.
  void set_states(const std::map<std::pair<std::string, v1::SagaState>, int64_t>& counts);

  /// The overview of every pipeline seen, as
  /// GET /v1/overview returns it; `allowed` filters what a key may see.
  nlohmann::json overview(int64_t now_ms, const std::function<bool(const std::string&)>& allowed) const;
  /// When overview() was last asked for (0: never): the lag is read from
  /// Kafka only while someone is looking.
  int64_t last_viewed_ms() const { return last_viewed_ms_.load(); }

  /// The latency bucket of `ms` and the upper bound of a bucket (tests).
  static int latency_bucket(double ms);
  static double bucket_upper_ms(int bucket);

 private:
  struct Second {
    int64_t second = -1;              // Unix seconds this slot holds; -1: empty
    std::array<uint64_t, 6> steps{};  // by v1::Step (INGESTED..REJECTED_AT_LOAD)
    std::array<uint64_t, kLatencyBuckets> latency{};
    std::map<std::string, uint64_t> rejects;  // "rule\0field" -> events
  };
  struct Pipeline {
    std::array<Second, kSeconds> seconds;
    std::map<std::string, std::optional<int64_t>> lag;
    std::map<std::string, int64_t> states;
  };
  Second& slot(Pipeline& p, int64_t second);
  Pipeline* pipeline(const std::string& name);

  mutable std::atomic<int64_t> last_viewed_ms_{0};
  mutable std::mutex mu_;
  std::map<std::string, Pipeline> pipelines_;
  std::optional<int64_t> saga_lag_;
};

}  // namespace starling::saga
