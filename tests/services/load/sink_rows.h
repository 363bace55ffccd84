#pragma once
// The rows both sink test suites load.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "services/load/sink.h"
#include "starling/v1/ecowheels.pb.h"

namespace starling::load {

/// The pipeline both sink suites and the load stage's test load into.
inline constexpr const char* kPipeline = R"(pipeline: t
schema: {message: starling.v1.RideTelemetry}
load:
  table: rides
  columns:
    device_id: device_id
    speed_kmh: speed_kmh
    status: status
    event_time: event_time
)";

inline Row ride_row(const std::string& id, double speed, const std::string& saga, const std::string& device) {
  Row r;
  r.envelope.set_event_id(id);
  r.envelope.set_saga_id(saga);
  r.envelope.set_seq(1);
  r.envelope.set_device_id(device);
  auto rec = std::make_unique<v1::RideTelemetry>();
  rec->set_device_id(device);
  rec->set_speed_kmh(speed);
  rec->set_status(v1::RideTelemetry::RIDING);
  rec->mutable_event_time()->set_seconds(1'700'000'000);
  r.record = std::move(rec);
  return r;
}

/// Loads e1 (speed 10) and e2 (11) in saga s1; then a replay saga,
/// "replay-1", writes e1 unchanged and e2 with speed 99. Returns the
/// replay's row results (the caller checks the table).
inline std::vector<RowResult> load_then_replay(Sink& sink) {
  SinkBatch first;
  first.rows.push_back(ride_row("e1", 10, "s1", "bike-1"));
  first.rows.push_back(ride_row("e2", 11, "s1", "bike-1"));
  EXPECT_TRUE(sink.write(first, {}).has_value());
  SinkBatch replay;
  replay.rows.push_back(ride_row("e1", 10, "replay-1", "bike-1"));
  replay.rows.push_back(ride_row("e2", 99, "replay-1", "bike-1"));
  std::vector<RowResult> results;
  EXPECT_TRUE(sink.write(replay,
                         [&](const std::vector<RowResult>& r) {
                           results = r;
                           return std::vector<kafka::OutMessage>{};
                         })
                  .has_value());
  return results;
}

/// e1 (speed 10) is loaded for bike-1; then a batch from bike-2 carries e1
/// (speed 66: another tenant's event id, or an Idempotency-Key reused after
/// ingest forgot it, which derives the same ids) and its own e3. Returns the
/// second batch's row results; e1 must still be bike-1's.
inline std::vector<RowResult> load_then_rewrite_from_another_device(Sink& sink) {
  SinkBatch first;
  first.rows.push_back(ride_row("e1", 10, "s1", "bike-1"));
  EXPECT_TRUE(sink.write(first, {}).has_value());
  SinkBatch second;
  second.rows.push_back(ride_row("e1", 66, "s9", "bike-2"));
  second.rows.push_back(ride_row("e3", 30, "s9", "bike-2"));
  std::vector<RowResult> results;
  EXPECT_TRUE(sink.write(second,
                         [&](const std::vector<RowResult>& r) {
                           results = r;
                           return std::vector<kafka::OutMessage>{};
                         })
                  .has_value());
  return results;
}

}  // namespace starling::load
