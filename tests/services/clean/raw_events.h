#pragma once
// The pipeline and raw messages the clean stage's unit tests feed it: ride
// telemetry whose temperature is filled from the device's last known value.

#include <optional>
#include <string>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/pipeline.h"
#include "starling/v1/ecowheels.pb.h"
#include "starling/v1/envelope.pb.h"

namespace starling::clean {

inline constexpr int64_t kT0 = 1'700'000'000'000;

inline PipelineConfig pipeline() {
  return parse_pipeline(R"(pipeline: t
schema: {message: starling.v1.RideTelemetry}
keys: {device_id: device_id, event_id: event_id}
clean:
  dedupe: {window: 10m}
  rules:
    - field: temperature_c
      fill_last_known: {max_age: 5m}
      required: true
load: {table: x, columns: {s: speed_kmh}}
)",
                        "t.yaml");
}

// A raw message as ingest writes it.
inline kafka::InMessage raw(int64_t offset, const std::string& id, const std::string& device, int64_t t,
                            std::optional<double> temperature, int32_t partition = 0) {
  v1::RideTelemetry r;
  r.set_event_id(id);
  r.set_device_id(device);
  if (temperature) r.set_temperature_c(*temperature);
  v1::Envelope env;
  env.set_event_id(id);
  env.set_saga_id("s1");
  env.set_seq(static_cast<uint32_t>(offset));
  env.set_pipeline("t");
  env.set_device_id(device);
  env.set_event_time_ms(t);
  env.set_ingest_time_ms(t);
  env.set_payload(r.SerializeAsString());
  return {"t.raw", partition, offset, t, device, env.SerializeAsString(), {}};
}

}  // namespace starling::clean
