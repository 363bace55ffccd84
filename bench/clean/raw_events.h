#pragma once
// The raw events both clean benchmarks push through: the simulator's e-bike
// fleet (200 bikes, 5% faulty readings), enveloped as ingest writes them, 20
// events per saga.

#include <fmt/format.h>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/pipeline.h"
#include "services/common/records.h"
#include "services/simulator/simulate.h"
#include "starling/v1/envelope.pb.h"

namespace starling::bench {

inline Result<std::vector<kafka::OutMessage>> raw_events(const PipelineConfig& p, int events) {
  simulator::SimOptions sim;
  sim.events = events;
  sim.bikes = 200;
  std::vector<kafka::OutMessage> raw;
  raw.reserve(static_cast<std::size_t>(events));
  int seq = 0;
  for (const auto& e : simulator::generate_events(sim)) {
    auto rec = record_from_json(p, e.record);
    if (!rec) return fail(Errc::kInvalidArgument, rec.error().field + ": " + rec.error().reason);
    v1::Envelope env;
    env.set_event_id(e.event_id);
    env.set_saga_id(fmt::format("{:032x}", seq / 20));
    env.set_seq(static_cast<uint32_t>(seq % 20));
    env.set_pipeline(p.name);
    if (p.device_id_field) env.set_device_id(field_text(**rec, p.device_id_field));
    env.set_event_time_ms(p.event_time_field ? timestamp_ms(**rec, p.event_time_field) : 0);
    env.set_ingest_time_ms(env.event_time_ms() + 500);
    env.set_schema_name(p.message_type);
    (*rec)->SerializeToString(env.mutable_payload());
    raw.push_back({p.raw_topic(), env.device_id(), env.SerializeAsString(), {}});
    ++seq;
  }
  return raw;
}

}  // namespace starling::bench
