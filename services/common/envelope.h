#pragma once
// What a front door writes for an accepted saga: one Envelope per record on
// <p>.raw and the saga's INGESTED fact on starling.saga. starling-ingest
// (pushed records) and starling-extract (pulled ones) both build them here,
// so a pulled record travels exactly as a pushed one.

#include <google/protobuf/message.h>

#include <cstdint>
#include <string>

#include "services/common/pipeline.h"
#include "starling/v1/envelope.pb.h"
#include "starling/v1/saga.pb.h"

namespace starling {

/// The envelope of `record`, seq `seq` of saga `saga_id`. Its event id is
/// the record's own (keys.event_id), else `fallback_event_id`; its event
/// time the record's keys.event_time, else `ingest_ms`.
v1::Envelope make_envelope(const PipelineConfig& p, const google::protobuf::Message& record, const std::string& saga_id,
                           uint32_t seq, const std::string& fallback_event_id, const std::string& trace_id,
                           int64_t ingest_ms);

/// The Kafka key of an envelope: its device id (one device's events stay in
/// order), else its event id.
inline const std::string& envelope_key(const v1::Envelope& env) {
  return env.device_id().empty() ? env.event_id() : env.device_id();
}

/// The fact that opens a saga of `total` (> 0) seqs, 0..total-1.
v1::ProgressFact ingested_fact(const PipelineConfig& p, const std::string& saga_id, uint32_t total,
                               const std::string& source, int64_t time_ms);

}  // namespace starling
