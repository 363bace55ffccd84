// Ingest's front door (IngestService, against a fake producer) under bodies,
// paths, queries and headers no honest device sends: each is refused with its
// reason or accepted without storing client bytes raw, every answer is valid
// JSON, and nothing throws.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <nlohmann/json.hpp>
#include <string>

#include "services/common/text.h"
#include "services/ingest/ingest_service.h"
#include "starling/v1/ecowheels.pb.h"
#include "starling/v1/envelope.pb.h"
#include "starling/v1/ingest.pb.h"
#include "tests/support/fake_kafka.h"
#include "tests/support/temp_dir.h"

namespace starling::ingest {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

class HostileIngest : public ::testing::Test {
 protected:
  HostileIngest() {
    auto p = load_pipeline(testing::source_path("pipelines/ecowheels.yaml"));
    service_ = std::make_unique<IngestService>(std::map<std::string, PipelineConfig>{{"ecowheels", p}}, producer_,
                                               "hostile-test");
  }

  HttpResponse send(const std::string& path, const std::string& body, std::map<std::string, std::string> headers = {},
                    std::map<std::string, std::string> query = {}) {
    HttpRequest req;
    req.method = "POST";
    req.path = path;
    req.body = body;
    req.headers = std::move(headers);
    req.query = std::move(query);
    std::promise<HttpResponse> answer;
    service_->handle(req, [&](HttpResponse r) { answer.set_value(std::move(r)); });
    auto resp = answer.get_future().get();
    EXPECT_TRUE(is_utf8(resp.body)) << resp.body;
    return resp;
  }
  HttpResponse post(const std::string& body, std::map<std::string, std::string> headers = {}) {
    return send("/v1/pipelines/ecowheels/events", body, std::move(headers));
  }
  static json error(const HttpResponse& r) { return json::parse(r.body)["error"]; }

  std::vector<v1::Envelope> envelopes() const {
    std::vector<v1::Envelope> out;
    for (const auto& m : producer_.produced()) {
      if (m.topic != "ecowheels.raw") continue;
      v1::Envelope e;
      EXPECT_TRUE(e.ParseFromString(m.value));
      for (const auto& h : m.headers) EXPECT_TRUE(is_utf8(h.value)) << h.key;
      out.push_back(e);
    }
    return out;
  }

  testing::FakeProducer producer_;
  std::unique_ptr<IngestService> service_;
};

TEST_F(HostileIngest, AStringThatIsNotUtf8Is400NamingTheBody) {
  const auto r = post("[\"\xff\"]");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error(r)["field"], "body");
  EXPECT_THAT(error(r)["message"].get<std::string>(), HasSubstr("invalid JSON"));
  EXPECT_TRUE(producer_.produced().empty());
}

TEST_F(HostileIngest, APipelineNameOrAQueryValueThatIsNotUtf8IsEchoedSafely) {
  auto r = send("/v1/pipelines/\xff\xfe/events", "{}");
  EXPECT_EQ(r.status, 404);
  EXPECT_THAT(error(r)["message"].get<std::string>(), HasSubstr("'\xEF\xBF\xBD\xEF\xBF\xBD'"));
  r = send("/v1/pipelines/ecowheels/events", R"({"device_id":"bike-1"})", {}, {{"atomic", "\xff"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error(r)["field"], "atomic");
}

TEST_F(HostileIngest, NestingPastTheLimitIs400NamingItBeforeAnyRecursion) {
  // As a whole body, and inside a field, where an error message once dumped
  // the value back recursively.
  const std::string deep = std::string(100'000, '[') + std::string(100'000, ']');
  auto r = post(deep);
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(error(r)["message"].get<std::string>(), HasSubstr("deeper than 64 levels"));
  r = post(R"({"device_id":"bike-1","battery_pct":)" + deep + "}");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(error(r)["message"].get<std::string>(), HasSubstr("line 1, column 100"));
  // 64 levels are fine as JSON; the record then says what the field expects.
  const std::string ok_depth = std::string(63, '[') + std::string(63, ']');
  r = post(R"({"device_id":"bike-1","battery_pct":)" + ok_depth + "}");
  EXPECT_EQ(r.status, 422);
  EXPECT_EQ(error(r)["field"], "records[0].battery_pct");
  EXPECT_TRUE(producer_.produced().empty());
}

TEST_F(HostileIngest, AnNdjsonLineNestedTooDeepIsRefusedAloneByItsLineNumber) {
  const auto r = post(R"({"device_id":"bike-1"})"
                      "\n" +
                          std::string(70, '[') + std::string(70, ']') + "\n" + R"({"device_id":"bike-2"})",
                      {{"content-type", "application/x-ndjson"}});
  ASSERT_EQ(r.status, 202) << r.body;
  const auto body = json::parse(r.body);
  EXPECT_EQ(body["accepted"], 2);
  ASSERT_EQ(body["refused"].size(), 1u);
  EXPECT_EQ(body["refused"][0]["index"], 1);
  EXPECT_THAT(body["refused"][0]["reason"].get<std::string>(), HasSubstr("line 2 nests deeper than 64 levels"));
}

TEST_F(HostileIngest, AnOverlongValueIsQuotedInPartNotEchoedWhole) {
  const auto r = post(R"({"device_id":"bike-1","battery_pct":")" + std::string(300'000, 'x') + "\"}");
  EXPECT_EQ(r.status, 422);
  EXPECT_LT(r.body.size(), 2'000u);
  EXPECT_THAT(error(r)["message"].get<std::string>(), HasSubstr("xxxx\u2026"));
}

TEST_F(HostileIngest, AFieldOverItsLimitIs413NamingTheFieldAndTheLimit) {
  // A 300 KB device id once got a 202, and then its rejection could not be
  // produced (over message.max.bytes): clean retried it forever.
  const auto r = post(R"([{"device_id":"bike-1"},{"device_id":")" + std::string(300'000, 'd') + "\"}]");
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(error(r)["code"], "record_too_large");
  EXPECT_EQ(error(r)["field"], "records[1].device_id");
  EXPECT_THAT(error(r)["message"].get<std::string>(), HasSubstr("300000 bytes; at most 16384"));
  EXPECT_TRUE(producer_.produced().empty());
}

TEST_F(HostileIngest, ARecordOverTheEventLimitIs413NamingIt) {
  IngestOptions small;
  small.limits.event_bytes = 64;
  service_ = std::make_unique<IngestService>(
      std::map<std::string, PipelineConfig>{
          {"ecowheels", load_pipeline(testing::source_path("pipelines/ecowheels.yaml"))}},
      producer_, "hostile-test", small);
  EXPECT_EQ(post(R"({"device_id":"bike-1"})").status, 202);
  const auto r = post(R"({"device_id":"bike-1","ride_id":")" + std::string(100, 'r') + "\"}");
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(error(r)["field"], "records[0]");
  EXPECT_THAT(error(r)["message"].get<std::string>(), HasSubstr("at most 64 (--max-event-bytes)"));
}

TEST_F(HostileIngest, NulInATextFieldRefusesTheRecordByItsFieldInEveryFormat) {
  // Issue 17, item 8: PostgreSQL's row fallback once cut such a value at NUL.
  auto r = post(R"([{"device_id":"bike-1"},{"device_id":"bike-2","ride_id":"a\u0000b"}])");
  ASSERT_EQ(r.status, 202) << r.body;
  auto body = json::parse(r.body);
  EXPECT_EQ(body["accepted"], 1);
  ASSERT_EQ(body["refused"].size(), 1u);
  EXPECT_EQ(body["refused"][0]["index"], 1);
  EXPECT_EQ(body["refused"][0]["field"], "ride_id");
  EXPECT_THAT(body["refused"][0]["reason"].get<std::string>(), HasSubstr("NUL character at byte 1"));
  // A Protobuf EventBatch carries the NUL raw.
  v1::RideTelemetry rec;
  rec.set_device_id(std::string("bike\0-3", 7));
  v1::EventBatch batch;
  batch.add_records(rec.SerializeAsString());
  r = post(batch.SerializeAsString(), {{"content-type", "application/x-protobuf"}});
  EXPECT_EQ(r.status, 422);
  EXPECT_EQ(error(r)["field"], "records[0].device_id");
  for (const auto& e : envelopes()) EXPECT_EQ(e.payload().find(std::string("a\0b", 3)), std::string::npos);
}

TEST_F(HostileIngest, ATraceparentThatDoesNotParseIsDroppedAndNeverStored) {
  for (const char* bad : {"00-\xff\xfe-bad", "garbage", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}) {
    const auto r = post(R"({"device_id":"bike-1"})", {{"traceparent", bad}});
    ASSERT_EQ(r.status, 202) << r.body;
    const auto trace = json::parse(r.body)["trace_id"].get<std::string>();
    EXPECT_EQ(trace.size(), 32u);
    EXPECT_EQ(trace.find_first_not_of("0123456789abcdef"), std::string::npos) << trace;
  }
  const auto stored = envelopes();
  ASSERT_EQ(stored.size(), 3u);
  for (const auto& e : stored) EXPECT_EQ(e.trace_id().size(), 32u) << e.trace_id();
}

TEST_F(HostileIngest, AWellFormedTraceparentLendsItsTraceId) {
  const auto r =
      post(R"({"device_id":"bike-1"})", {{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}});
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(json::parse(r.body)["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
  const auto stored = envelopes();
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
}

}  // namespace
}  // namespace starling::ingest
