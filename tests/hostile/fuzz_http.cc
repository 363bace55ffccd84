// Fuzz target over the HTTP request path as a client's bytes meet it: one
// connection's stream through the server's parser and limits (serve_bytes,
// the same code as a socket session), the probes' router (service_routes),
// and then ingest's front door (API keys, rate limits, Idempotency-Key,
// traceparent, every body format, a producer that persists or fails) or the
// saga API over a real RocksDB store. The first byte picks the service and
// the options; the rest is the stream.
// Besides "no crash, no hang, no sanitizer report": every answer has a status
// in 100..599, its body is valid UTF-8, and a JSON answer parses.
//   http_fuzz_request [iterations] [seed] [corpus...]   (tests/support/fuzz_main.h)
//   tools/fuzz http [SECONDS]                          (AFL++, coverage-guided)
#include <fmt/format.h>
#include <google/protobuf/stubs/logging.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "services/common/api_keys.h"
#include "services/common/http.h"
#include "services/common/service_main.h"
#include "services/common/text.h"
#include "services/ingest/ingest_service.h"
#include "services/saga/saga_api.h"
#include "services/saga/saga_store.h"
#include "tests/support/fake_kafka.h"
#include "tests/support/fuzz_main.h"

namespace {

using starling::HttpHandler;
using starling::HttpServerOptions;

std::map<std::string, starling::PipelineConfig> pipelines() {
  std::map<std::string, starling::PipelineConfig> out;
  for (const char* name : {"ecowheels", "weather"}) {
    auto p = starling::load_pipeline(std::string(STARLING_SOURCE_DIR) + "/pipelines/" + name + ".yaml");
    out.emplace(p.name, std::move(p));
  }
  return out;
}

struct Services {
  starling::testing::NullProducer producer;
  std::unique_ptr<starling::ingest::IngestService> open;   // no API keys
  std::unique_ptr<starling::ingest::IngestService> keyed;  // keys "fleet-secret" and "other-secret"
  std::filesystem::path dir;
  std::unique_ptr<starling::saga::RocksSagaStore> store;
  std::vector<HttpHandler> handlers;

  Services() {
    spdlog::set_level(spdlog::level::off);
    google::protobuf::SetLogHandler(nullptr);
    open = std::make_unique<starling::ingest::IngestService>(pipelines(), producer, "fuzz");
    starling::ingest::IngestOptions o;
    const auto hash = [](const std::string& k) {
      const auto h = starling::sha256(k);
      return starling::hex(h.data(), h.size());
    };
    auto keys = starling::KeyStore::parse(fmt::format(R"(keys:
  - name: fleet
    sha256: {}
    pipelines: [ecowheels]
    devices: "bike-0*"
    rate: {{events_per_s: 5, burst: 10}}
  - name: other
    sha256: {}
    pipelines: [weather]
)",
                                                      hash("fleet-secret"), hash("other-secret")),
                                          "fuzz-keys.yaml");
    if (!keys) std::abort();
    o.keys = std::move(*keys);
    o.device_rate = {50, 100};
    o.max_records = 50;
    keyed = std::make_unique<starling::ingest::IngestService>(pipelines(), producer, "fuzz", std::move(o));
    open->set_ready(true);
    dir = std::filesystem::temp_directory_path() / fmt::format("http-fuzz-{}", ::getpid());
    std::filesystem::create_directories(dir);
    store = std::make_unique<starling::saga::RocksSagaStore>(dir / "saga");
    const starling::Readiness ready = [] { return starling::Status{}; };
    handlers.push_back(starling::service_routes(ready, [this](starling::HttpRequest r, starling::HttpResponder d) {
      open->handle(std::move(r), std::move(d));
    }));
    handlers.push_back(starling::service_routes(ready, [this](starling::HttpRequest r, starling::HttpResponder d) {
      keyed->handle(std::move(r), std::move(d));
    }));
    handlers.push_back(
        starling::service_routes(ready, [this](const starling::HttpRequest& r, const starling::HttpResponder& d) {
          d(starling::saga::handle_saga_api(*store, r, [] { return int64_t{1'795'428'000'000}; }));
        }));
  }
  ~Services() {
    store.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  Services(const Services&) = delete;
  Services& operator=(const Services&) = delete;
};

Services& services() {
  static Services s;
  return s;
}

std::vector<uint8_t> input(uint8_t selector, const std::string& stream) {
  std::vector<uint8_t> out{selector};
  out.insert(out.end(), stream.begin(), stream.end());
  return out;
}

std::string post(const std::string& path, const std::string& body, const std::string& headers = {}) {
  return fmt::format("POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n{}\r\n{}", path, body.size(), headers, body);
}

std::vector<std::vector<uint8_t>> seeds() {
  const std::string ride =
      R"({"event_id":"e-1","device_id":"bike-0001","speed_kmh":18.5,"status":"RIDING","event_time":"2026-11-23T10:00:00Z"})";
  return {
      input(0, post("/v1/pipelines/ecowheels/events", ride, "Content-Type: application/json\r\n")),
      input(0,
            post("/v1/pipelines/ecowheels/events", "[" + ride + ",{\"device_id\":\"\\u0000\"}]",
                 "Idempotency-Key: k-1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n")),
      input(3, post("/v1/pipelines/ecowheels/events", ride + "\n" + ride + "\n",
                    "Content-Type: application/x-ndjson\r\nIdempotency-Key: \xff\r\n")),
      input(1, post("/v1/pipelines/ecowheels/events", ride, "Authorization: Bearer fleet-secret\r\n") +
                   post("/v1/pipelines/weather/events", R"({"station_id":"KBOS"})", "X-Api-Key: fleet-secret\r\n")),
      input(4,
            "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\n\r\nGET /openapi.json HTTP/1.1\r\n\r\n"
            "GET /v1/sagas/abc HTTP/1.1\r\nConnection: close\r\n\r\n"),
      input(2,
            "GET /v1/sagas?state=%FF&pipeline=ecowheels&limit=99999999999 HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /v1/sagas/replay-x HTTP/1.1\r\n\r\nGET /v1/pipelines/ecowheels/report HTTP/1.1\r\n\r\n"),
      input(5, "GET /v1/pipelines/ecowheels/summary?since=-1 HTTP/1.1\r\n\r\nDELETE /v1/sagas/x HTTP/1.1\r\n\r\n"),
      input(6,
            "POST /v1/pipelines/ecowheels/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5\r\n[{}]\n\r\n0\r\n\r\n"),
      input(7, "GET /\xff\xfe?\xc3=%zz HTTP/1.1\r\nHost: \x01\r\n\r\n"),
      input(9, post("/v1/pipelines/ecowheels/events", std::string(70, '[') + std::string(70, ']'))),
  };
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  auto& s = services();
  const uint8_t pick = data[0];
  s.producer.mode = (pick >> 4) % 3;
  HttpServerOptions opts;
  if (pick & 0x08) {  // small limits, so the 413 and 431 paths are reached
    opts.body_limit = 256;
    opts.header_limit = 256;
  }
  const auto& handler = s.handlers[(pick & 0x07) % s.handlers.size()];
  const std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);
  for (const auto& r : starling::serve_bytes(stream, opts, handler)) {
    if (r.status < 100 || r.status > 599) std::abort();
    if (!starling::is_utf8(r.body)) std::abort();
    if (r.content_type == "application/json" && !nlohmann::json::accept(r.body)) std::abort();
  }
  return 0;
}

#ifndef STARLING_LIBFUZZER
int main(int argc, char** argv) { return starling::testing::fuzz_main(argc, argv, seeds(), "streams"); }
#endif
