// Fuzz target over ingest's body decoders: the bytes a device sends, as JSON,
// NDJSON or a Protobuf EventBatch, into records of a shipped pipeline's type.
// The first byte picks the format and the pipeline; the rest is the body.
// Besides "no crash, no sanitizer report", every converted record must
// serialize and parse back to an equal message.
//   ingest_fuzz_decode [iterations] [seed] [corpus...]   (tests/support/fuzz_main.h)
//   tools/fuzz ingest [SECONDS]                          (AFL++, coverage-guided)
#include <google/protobuf/stubs/logging.h>
#include <spdlog/spdlog.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "services/common/pipeline.h"
#include "services/ingest/decode.h"
#include "starling/v1/ecowheels.pb.h"
#include "starling/v1/ingest.pb.h"
#include "tests/support/fuzz_main.h"

namespace {

using starling::ingest::BodyFormat;

const std::vector<starling::PipelineConfig>& pipelines() {
  static const auto all = [] {
    spdlog::set_level(spdlog::level::off);
    google::protobuf::SetLogHandler(nullptr);  // invalid UTF-8 in a string field is logged, then refused
    std::vector<starling::PipelineConfig> out;
    for (const char* name : {"ecowheels", "weather"}) {
      out.push_back(starling::load_pipeline(std::string(STARLING_SOURCE_DIR) + "/pipelines/" + name + ".yaml"));
    }
    return out;
  }();
  return all;
}

std::vector<uint8_t> input(uint8_t selector, const std::string& body) {
  std::vector<uint8_t> out{selector};
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::vector<std::vector<uint8_t>> seeds() {
  starling::v1::RideTelemetry r;
  r.set_event_id("e-1");
  r.set_device_id("bike-0001");
  r.set_speed_kmh(18.5);
  r.set_status(starling::v1::RideTelemetry::RIDING);
  r.mutable_event_time()->set_seconds(1795428000);
  starling::v1::EventBatch batch;
  batch.add_records(r.SerializeAsString());
  batch.add_records("\x08\x01");
  return {
      input(0, R"({"event_id":"a","device_id":"bike-0001","battery_pct":50.5,"event_time":"2026-11-23T10:00:00Z"})"),
      input(
          0,
          R"([{"deviceId":"bike-1","speedKmh":"NaN","status":"RIDING"},{"lat":1e308,"lon":-0.0,"status":3},{"x":null}])"),
      input(0, R"([{"odometer_km":"12"},{"event_time":"2026-02-30T25:61:00Z"},[],"s",{"ride_id":{"a":1}}])"),
      input(1, "{\"device_id\":\"bike-1\"}\n\n{\"battery_pct\": tru}\r\n{\"temperature_c\":-40}\n"),
      input(2, batch.SerializeAsString()),
      input(3, R"({"station_id":"KBOS","observed_at":"2026-11-24T00:00:00.5+01:00","sky":"RAIN","pressure":29.9})"),
      input(4, "{\"station_id\":\"KBOS\",\"humidity_pct\":101}\n{\"sky\":99}\n"),
  };
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto& all = pipelines();
  const auto& p = all[(data[0] / 3) % all.size()];
  const auto format = static_cast<BodyFormat>(data[0] % 3);
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  auto decoded = starling::ingest::decode_body(p, format, body);
  if (!decoded) return 0;
  for (const auto& rec : decoded->records) {
    std::string bytes;
    if (!rec.message->SerializeToString(&bytes)) std::abort();
    std::unique_ptr<google::protobuf::Message> back(rec.message->New());
    if (!back->ParseFromString(bytes)) std::abort();
    // NaN != NaN, so compare the wire form, not the values.
    if (back->SerializeAsString() != bytes) std::abort();
  }
  for (const auto& err : decoded->refused) {
    if (err.reason.empty() || err.index >= decoded->count() + body.size() + 1) std::abort();
  }
  return 0;
}

#ifndef STARLING_LIBFUZZER
int main(int argc, char** argv) { return starling::testing::fuzz_main(argc, argv, seeds(), "bodies"); }
#endif
