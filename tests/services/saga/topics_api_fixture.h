#pragma once
// What the topic-reading endpoints' tests put in the topics, made the way the
// stages make it: ingest's envelopes (make_envelope, record_from_json), the
// real clean stage's outputs (clean::Cleaner over a MemoryCleanState), the
// loader's dead letters, and the saga records the coordinator would hold.

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "broker-adapters/kafka/kafka.h"
#include "services/clean/cleaner.h"
#include "services/clean/rule_config.h"
#include "services/clean/state.h"
#include "services/common/envelope.h"
#include "services/common/records.h"
#include "services/common/time.h"
#include "services/saga/saga_state.h"
#include "services/saga/saga_store.h"
#include "starling/v1/envelope.pb.h"
#include "tests/support/temp_dir.h"

namespace starling::saga::testing {

// 2026-11-23T10:00:00Z
inline constexpr int64_t kT0 = 1'795'428'000'000;
inline constexpr const char* kXss = "<img src=x onerror=alert(1)>";

inline PipelineConfig ecowheels() {
  return clean::load_checked_pipeline(starling::testing::source_path("pipelines/ecowheels.yaml"));
}

// One reading of a bike: what a device posts.
inline nlohmann::json reading(const std::string& event_id, const std::string& device, double speed,
                              int64_t event_ms = kT0) {
  return {{"event_id", event_id}, {"device_id", device}, {"battery_pct", 80.04},
          {"speed_kmh", speed},   {"status", "RIDING"},  {"event_time", rfc3339_trimmed(event_ms)}};
}

// The messages one event becomes on each topic.
struct Produced {
  kafka::OutMessage raw;
  kafka::OutMessage out;  // on <p>.clean or <p>.rejected
  bool clean = false;
  v1::Envelope envelope;
};

/// Ingest's envelope of `record` (seq `seq` of `saga`), then the clean
/// stage's verdict on it.
class Stages {
 public:
  explicit Stages(const PipelineConfig& p) : p_(p), cleaner_(p, "clean-test") {}

  Produced event(const nlohmann::json& record, const std::string& saga, uint32_t seq, int64_t ingest_ms = kT0) {
    auto rec = record_from_json(p_, record);
    EXPECT_TRUE(rec.has_value()) << (rec ? "" : rec.error().reason);
    Produced out;
    out.envelope = make_envelope(p_, **rec, saga, seq, saga + "-" + std::to_string(seq), "trace-" + saga, ingest_ms);
    out.raw = {p_.raw_topic(), envelope_key(out.envelope), out.envelope.SerializeAsString(), {}};
    auto res = cleaner_.clean(out.raw.value, 0, state_, ingest_ms);
    out.clean = res.clean;
    out.out = res.clean ? kafka::OutMessage{p_.clean_topic(), out.raw.key, res.envelope.SerializeAsString(), {}}
                        : kafka::OutMessage{p_.rejected_topic(), out.raw.key, res.rejected.SerializeAsString(), {}};
    return out;
  }

  /// The loader's dead letter for a clean envelope the sink refused
  /// (services/load/load_service.cc).
  kafka::OutMessage dead_letter(const Produced& e, const std::string& why, int64_t t) const {
    v1::Envelope clean;
    EXPECT_TRUE(clean.ParseFromString(e.out.value));
    v1::RejectedRecord dead;
    *dead.mutable_envelope() = clean;
    auto* r = dead.add_reasons();
    r->set_rule("sink");
    r->set_field("");
    r->set_value("");
    r->set_expected(why);
    dead.set_stage("load");
    dead.set_rejected_time_ms(t);
    return {p_.dlq_topic(), clean.device_id(), dead.SerializeAsString(), {}};
  }

 private:
  const PipelineConfig& p_;
  clean::Cleaner cleaner_;
  clean::MemoryCleanState state_;
};

/// A saga record as the coordinator holds it: `total` seqs, each with the
/// step bits given.
struct SagaBits {
  std::vector<uint32_t> cleaned, rejected, loaded, rejected_at_load;
};
inline v1::SagaRecord saga_record(const std::string& id, const std::string& pipeline, uint32_t total, int64_t created,
                                  const SagaBits& bits) {
  v1::SagaRecord r;
  r.set_saga_id(id);
  r.set_pipeline(pipeline);
  r.set_state(v1::SAGA_STATE_IN_FLIGHT);
  r.set_total(total);
  r.set_ingested(true);
  r.set_created_ms(created);
  r.set_updated_ms(created);
  for (auto s : bits.cleaned) set_bit(*r.mutable_cleaned(), s);
  for (auto s : bits.rejected) set_bit(*r.mutable_rejected(), s);
  for (auto s : bits.loaded) set_bit(*r.mutable_loaded(), s);
  for (auto s : bits.rejected_at_load) set_bit(*r.mutable_rejected_at_load(), s);
  return r;
}

inline void store_sagas(SagaStore& store, const std::vector<v1::SagaRecord>& records) {
  SagaCommit c;
  for (const auto& r : records) c.sagas.push_back({r, 0});
  ASSERT_TRUE(store.commit(c).has_value());
}

}  // namespace starling::saga::testing
