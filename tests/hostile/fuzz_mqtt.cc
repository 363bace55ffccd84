// Fuzz target over the MQTT bridge's handling of one message (MqttIngest):
// the topic and the payload a device publishes, decoded into records of the
// topic's pipeline and handed to a producer that persists or fails. The
// first byte picks the QoS, dup/retain, the producer's answer and small
// limits; the next is the topic's length; then the topic, then the payload.
// Besides "no crash, no hang, no sanitizer report": the bridge answers
// exactly once, and `redeliver` only when the producer did not persist.
//   mqtt_fuzz_message [iterations] [seed] [corpus...]   (tests/support/fuzz_main.h)
//   tools/fuzz mqtt [SECONDS]                          (AFL++, coverage-guided)
#include <google/protobuf/stubs/logging.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "services/ingest/ingestor.h"
#include "services/ingest/mqtt_bridge.h"
#include "tests/support/fake_kafka.h"
#include "tests/support/fuzz_main.h"

namespace {

using starling::ingest::MqttAck;

struct Bridge {
  std::map<std::string, starling::PipelineConfig> pipelines;
  starling::testing::NullProducer producer;
  starling::ingest::Ingestor ingestor{producer, "fuzz"};
  starling::ingest::MqttIngest roomy{pipelines, ingestor};
  starling::ingest::MqttIngest tight{pipelines, ingestor, starling::ingest::RecordLimits{256, 32}};

  Bridge() {
    spdlog::set_level(spdlog::level::off);
    google::protobuf::SetLogHandler(nullptr);
    for (const char* name : {"ecowheels", "weather"}) {
      auto p = starling::load_pipeline(std::string(STARLING_SOURCE_DIR) + "/pipelines/" + name + ".yaml");
      pipelines.emplace(p.name, std::move(p));
    }
  }
};

Bridge& bridge() {
  static Bridge b;
  return b;
}

std::vector<uint8_t> input(uint8_t selector, const std::string& topic, const std::string& payload) {
  std::vector<uint8_t> out{selector, static_cast<uint8_t>(topic.size())};
  out.insert(out.end(), topic.begin(), topic.end());
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

std::vector<std::vector<uint8_t>> seeds() {
  const std::string ride =
      R"({"event_id":"e-1","speed_kmh":18.5,"status":"RIDING","event_time":"2026-11-23T10:00:00Z"})";
  return {
      input(1, "starling/ecowheels/bike-0001/events", ride),
      input(1, "starling/ecowheels/bike-0002/events", "[" + ride + "," + ride + ",{\"speed_kmh\":\"x\"}]"),
      input(0x11, "starling/weather/KBOS/events", R"({"station_id":"KBOS","temperature_c":-4.5})"),
      input(0x21, "starling/ecowheels/bike-0003/events", "[{\"device_id\":\"other\"}]"),
      input(0x41, "starling/ecowheels/bike-0004/events", ride),
      input(2, "starling/nope/\xff/events", "{}"),
      input(1, "starling/ecowheels//events", std::string(80, '[')),
      input(1, "starling/ecowheels/bike/events/extra", "null"),
  };
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  auto& b = bridge();
  const uint8_t pick = data[0];
  const std::size_t topic_len = std::min<std::size_t>(data[1], size - 2);
  starling::ingest::MqttMessage m;
  m.qos = pick & 0x03 ? 1 : 0;
  m.dup = (pick & 0x04) != 0;
  m.retain = (pick & 0x08) != 0;
  m.topic.assign(reinterpret_cast<const char*>(data + 2), topic_len);
  m.payload.assign(reinterpret_cast<const char*>(data + 2 + topic_len), size - 2 - topic_len);
  const int mode = (pick >> 4) % 3;
  b.producer.mode = mode;
  int answers = 0;
  MqttAck answer = MqttAck::kAck;
  (pick & 0x40 ? b.tight : b.roomy).handle(m, [&](MqttAck a) {
    answer = a;
    ++answers;
  });
  if (answers != 1) std::abort();
  // A persisted message is never sent again; a failure may be.
  if (mode == 0 && answer == MqttAck::kRedeliver) std::abort();
  return 0;
}

#ifndef STARLING_LIBFUZZER
int main(int argc, char** argv) { return starling::testing::fuzz_main(argc, argv, seeds(), "messages"); }
#endif
