#include "services/common/envelope.h"

#include "services/common/records.h"

namespace starling {

v1::Envelope make_envelope(const PipelineConfig& p, const google::protobuf::Message& record, const std::string& saga_id,
                           uint32_t seq, const std::string& fallback_event_id, const std::string& trace_id,
                           int64_t ingest_ms) {
  v1::Envelope env;
  env.set_event_id(p.event_id_field ? field_text(record, p.event_id_field) : std::string{});
  if (env.event_id().empty()) env.set_event_id(fallback_event_id);
  env.set_saga_id(saga_id);
  env.set_seq(seq);
  env.set_pipeline(p.name);
  if (p.device_id_field) env.set_device_id(field_text(record, p.device_id_field));
  env.set_event_time_ms(p.event_time_field ? timestamp_ms(record, p.event_time_field) : ingest_ms);
  if (env.event_time_ms() == 0) env.set_event_time_ms(ingest_ms);
  env.set_ingest_time_ms(ingest_ms);
  env.set_schema_name(p.message_type);
  env.set_schema_version(p.schema_version);
  env.set_trace_id(trace_id);
  record.SerializeToString(env.mutable_payload());
  return env;
}

v1::ProgressFact ingested_fact(const PipelineConfig& p, const std::string& saga_id, uint32_t total,
                               const std::string& source, int64_t time_ms) {
  v1::ProgressFact fact;
  fact.set_saga_id(saga_id);
  fact.set_pipeline(p.name);
  fact.set_step(v1::STEP_INGESTED);
  fact.set_total(total);
  auto* range = fact.add_seqs();
  range->set_first(0);
  range->set_last(total - 1);
  fact.set_source(source);
  fact.set_time_ms(time_ms);
  return fact;
}

}  // namespace starling
