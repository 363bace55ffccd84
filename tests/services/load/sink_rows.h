#pragma once
// The rows both sink test suites load.

#include <memory>
#include <string>

#include "services/load/sink.h"
#include "starling/v1/ecowheels.pb.h"

namespace starling::load {

inline Row ride_row(const std::string& id, double speed, const std::string& saga, const std::string& device) {
  Row r;
  r.envelope.set_event_id(id);
  r.envelope.set_saga_id(saga);
  r.envelope.set_seq(1);
  auto rec = std::make_unique<v1::RideTelemetry>();
  rec->set_device_id(device);
  rec->set_speed_kmh(speed);
  rec->set_status(v1::RideTelemetry::RIDING);
  rec->mutable_event_time()->set_seconds(1'700'000'000);
  r.record = std::move(rec);
  return r;
}

}  // namespace starling::load
