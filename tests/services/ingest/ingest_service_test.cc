// The front door's request handling, against a fake producer: every error
// path answers with its status and names the field that was wrong.
#include "services/ingest/ingest_service.h"

#include <gtest/gtest.h>

#include <future>
#include <nlohmann/json.hpp>

#include "services/common/metrics.h"
#include "starling/v1/ecowheels.pb.h"
#include "starling/v1/envelope.pb.h"
#include "starling/v1/ingest.pb.h"
#include "starling/v1/saga.pb.h"
#include "tests/support/temp_dir.h"

namespace starling::ingest {
namespace {

using nlohmann::json;

// Resolves every message with a chosen status, as a delivery report would;
// with `hold`, keeps the callbacks until release().
class FakeProducer : public kafka::Producer {
 public:
  kafka::DeliveryStatus status = kafka::DeliveryStatus::kPersisted;
  bool hold = false;
  std::vector<kafka::OutMessage> sent;
  std::vector<kafka::DeliveryCallback> held;
  void produce(const kafka::OutMessage& msg, kafka::DeliveryCallback done) override {
    sent.push_back(msg);
    if (hold) {
      held.push_back(std::move(done));
      return;
    }
    resolve(done);
  }
  void release() {
    auto cbs = std::move(held);
    held.clear();
    for (auto& cb : cbs) resolve(cb);
  }
  Status flush(std::chrono::milliseconds) override { return {}; }

 private:
  void resolve(const kafka::DeliveryCallback& done) {
    done({status, 0, static_cast<int64_t>(sent.size()),
          status == kafka::DeliveryStatus::kPersisted ? "" : "broker down"});
  }
};

std::string hash_hex(const std::string& key) {
  const auto h = sha256(key);
  return hex(h.data(), h.size());
}

struct Post {
  std::string pipeline = "ecowheels";
  std::string body;
  std::map<std::string, std::string> headers;
  std::map<std::string, std::string> query;
};

class IngestServiceTest : public ::testing::Test {
 protected:
  IngestServiceTest() { make_service({}); }

  void make_service(IngestOptions options) {
    auto p = load_pipeline(testing::source_path("pipelines/ecowheels.yaml"));
    service_ = std::make_unique<IngestService>(std::map<std::string, PipelineConfig>{{"ecowheels", p}}, producer_,
                                               "ingest-test", std::move(options));
  }

  // Answers may come later (held deliveries): the future says when.
  std::future<HttpResponse> send(const Post& post, const std::string& method = "POST", const std::string& path = {}) {
    HttpRequest req;
    req.method = method;
    req.path = path.empty() ? "/v1/pipelines/" + post.pipeline + "/events" : path;
    req.body = post.body;
    req.headers = post.headers;
    req.query = post.query;
    auto answer = std::make_shared<std::promise<HttpResponse>>();
    auto fut = answer->get_future();
    service_->handle(req, [answer](HttpResponse r) { answer->set_value(std::move(r)); });
    return fut;
  }
  HttpResponse post(const Post& p) { return send(p).get(); }
  HttpResponse post(const std::string& pipeline, const std::string& body) { return post(Post{pipeline, body}); }

  // Posts `p` while the broker refuses it (503), then again once it accepts
  // it (202): the retry must produce the very same saga, seqs and event ids.
  // Returns the 202.
  HttpResponse retry_after_503(const Post& p) {
    producer_.status = kafka::DeliveryStatus::kNotPersisted;
    EXPECT_EQ(post(p).status, 503);
    const auto failed = producer_.sent;
    producer_.sent.clear();
    producer_.status = kafka::DeliveryStatus::kPersisted;
    auto ok = post(p);
    EXPECT_EQ(ok.status, 202);
    EXPECT_EQ(producer_.sent.size(), failed.size());
    for (std::size_t i = 0; i + 1 < std::min(failed.size(), producer_.sent.size()); ++i) {
      v1::Envelope a, b;
      EXPECT_TRUE(a.ParseFromString(failed[i].value));
      EXPECT_TRUE(b.ParseFromString(producer_.sent[i].value));
      EXPECT_EQ(a.saga_id(), b.saga_id());
      EXPECT_EQ(a.event_id(), b.event_id());
      EXPECT_EQ(a.seq(), b.seq());
    }
    return ok;
  }

  static json error(const HttpResponse& r) { return json::parse(r.body)["error"]; }
  static std::string header(const HttpResponse& r, const std::string& name) {
    for (const auto& [k, v] : r.headers) {
      if (k == name) return v;
    }
    return {};
  }

  FakeProducer producer_;
  std::unique_ptr<IngestService> service_;
};

constexpr const char* kTwoEvents =
    R"([{"event_id":"a","device_id":"bike-1","battery_pct":50,"event_time":"2026-11-23T10:00:00Z"},
                       {"event_id":"b","device_id":"bike-2","battery_pct":60}])";

TEST_F(IngestServiceTest, PersistedBatchGets202WithReceiptAndOneSagaFact) {
  const auto resp = post("ecowheels", kTwoEvents);
  ASSERT_EQ(resp.status, 202) << resp.body;
  const auto receipt = json::parse(resp.body);
  EXPECT_EQ(receipt["accepted"], 2);
  EXPECT_EQ(receipt["saga_id"].get<std::string>().size(), 32u);
  ASSERT_EQ(producer_.sent.size(), 3u);
  v1::Envelope env;
  ASSERT_TRUE(env.ParseFromString(producer_.sent[0].value));
  EXPECT_EQ(producer_.sent[0].topic, "ecowheels.raw");
  EXPECT_EQ(producer_.sent[0].key, "bike-1");
  EXPECT_EQ(env.event_id(), "a");
  EXPECT_EQ(env.seq(), 0u);
  EXPECT_EQ(env.saga_id(), receipt["saga_id"].get<std::string>());
  EXPECT_EQ(env.event_time_ms(), 1795428000000);
  EXPECT_EQ(env.schema_name(), "starling.v1.RideTelemetry");
  ASSERT_EQ(producer_.sent[0].headers.size(), 1u);
  EXPECT_EQ(producer_.sent[0].headers[0].key, "trace-id");
  EXPECT_EQ(producer_.sent[0].headers[0].value, env.trace_id());
  v1::ProgressFact fact;
  ASSERT_TRUE(fact.ParseFromString(producer_.sent[2].value));
  EXPECT_EQ(producer_.sent[2].topic, "starling.saga");
  EXPECT_EQ(fact.step(), v1::STEP_INGESTED);
  EXPECT_EQ(fact.total(), 2u);
  EXPECT_NE(metrics().render().find("starling_ingest_produce_seconds_count"), std::string::npos);
}

TEST_F(IngestServiceTest, UnpersistedDeliveryGets503WithRetryAfterNot202) {
  producer_.status = kafka::DeliveryStatus::kPossiblyPersisted;
  const auto resp = post("ecowheels", kTwoEvents);
  EXPECT_EQ(resp.status, 503);
  EXPECT_EQ(header(resp, "Retry-After"), "1");
  EXPECT_EQ(error(resp)["code"], "broker_unavailable");
}

TEST_F(IngestServiceTest, UnknownPipelineIs404NamingThePipelineField) {
  const auto resp = post("nope", kTwoEvents);
  EXPECT_EQ(resp.status, 404);
  EXPECT_EQ(error(resp)["field"], "pipeline");
  EXPECT_TRUE(producer_.sent.empty());
}

TEST_F(IngestServiceTest, WrongMethodIs405AndUnknownRouteIs404) {
  EXPECT_EQ(send(Post{"ecowheels", kTwoEvents}, "GET").get().status, 405);
  EXPECT_EQ(send(Post{}, "GET", "/v2/nothing").get().status, 404);
}

TEST_F(IngestServiceTest, MalformedJsonIs400WithLineAndColumn) {
  const auto resp = post("ecowheels", "[{\"device_id\": \"a\"},\n {\"device_id\": }]");
  EXPECT_EQ(resp.status, 400);
  const auto err = error(resp);
  EXPECT_EQ(err["code"], "invalid_body");
  EXPECT_EQ(err["field"], "body");
  EXPECT_NE(err["message"].get<std::string>().find("line 2, column 16"), std::string::npos) << err["message"];
}

TEST_F(IngestServiceTest, NumberBeyondADoubleIs400NotACrash) {  // found by ingest_fuzz_decode
  EXPECT_EQ(error(post("ecowheels", R"({"lat":5e308})"))["field"], "body");
  const auto nd =
      post(Post{"ecowheels", "{\"lat\":5e308}\n{\"device_id\":\"a\"}", {{"content-type", "application/x-ndjson"}}});
  ASSERT_EQ(nd.status, 202) << nd.body;
  EXPECT_EQ(json::parse(nd.body)["refused"][0]["index"], 0);
}

TEST_F(IngestServiceTest, EmptyArrayAndAScalarBodyAre400) {
  EXPECT_EQ(error(post("ecowheels", "[]"))["field"], "body");
  const auto scalar = post("ecowheels", "42");
  EXPECT_EQ(scalar.status, 400);
  EXPECT_EQ(error(scalar)["field"], "body");
}

TEST_F(IngestServiceTest, UnsupportedContentTypeIs415NamingIt) {
  const auto resp = post(Post{"ecowheels", kTwoEvents, {{"content-type", "text/csv"}}});
  EXPECT_EQ(resp.status, 415);
  EXPECT_EQ(error(resp)["field"], "content-type");
  EXPECT_NE(error(resp)["message"].get<std::string>().find("application/x-ndjson"), std::string::npos);
}

TEST_F(IngestServiceTest, BadRecordsAreListedWithIndexAndFieldAndTheRestAccepted) {
  const auto resp =
      post("ecowheels", R"([{"device_id":"ok","battery_pct":5},{"device_id":"x","speed_kmh":"fast"},{"nope":1},)"
                        R"({"device_id":"y","status":"FLYING"},{"device_id":"z","event_time":"yesterday"}])");
  ASSERT_EQ(resp.status, 202) << resp.body;
  const auto receipt = json::parse(resp.body);
  EXPECT_EQ(receipt["accepted"], 1);
  const auto& refused = receipt["refused"];
  ASSERT_EQ(refused.size(), 4u);
  EXPECT_EQ(refused[0]["index"], 1);
  EXPECT_EQ(refused[0]["field"], "speed_kmh");
  EXPECT_NE(refused[0]["reason"].get<std::string>().find("expected a number, got \"fast\""), std::string::npos);
  EXPECT_EQ(refused[1]["index"], 2);
  EXPECT_EQ(refused[1]["field"], "nope");
  EXPECT_NE(refused[1]["reason"].get<std::string>().find("battery_pct"), std::string::npos);  // lists the real fields
  EXPECT_EQ(refused[2]["field"], "status");
  EXPECT_NE(refused[2]["reason"].get<std::string>().find("RIDING"), std::string::npos);
  EXPECT_EQ(refused[3]["field"], "event_time");
  EXPECT_EQ(producer_.sent.size(), 2u);  // one envelope, one fact
}

TEST_F(IngestServiceTest, NoConvertibleRecordIs422NamingTheFirstBadFieldAndNothingIsProduced) {
  const auto resp = post("ecowheels", R"([{"speed_kmh":"fast"}])");
  EXPECT_EQ(resp.status, 422);
  EXPECT_EQ(error(resp)["code"], "no_valid_records");
  EXPECT_EQ(error(resp)["field"], "records[0].speed_kmh");
  EXPECT_EQ(json::parse(resp.body)["refused"].size(), 1u);
  EXPECT_TRUE(producer_.sent.empty());
}

TEST_F(IngestServiceTest, AtomicRequestWithOneBadRecordIsRefusedWhole) {
  const auto resp =
      post(Post{"ecowheels", R"([{"device_id":"a"},{"device_id":"b","lat":true}])", {}, {{"atomic", "true"}}});
  EXPECT_EQ(resp.status, 422);
  EXPECT_EQ(error(resp)["code"], "invalid_records");
  EXPECT_EQ(error(resp)["field"], "records[1].lat");
  EXPECT_TRUE(producer_.sent.empty());
  const auto bad = post(Post{"ecowheels", kTwoEvents, {}, {{"atomic", "yes"}}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(error(bad)["field"], "atomic");
}

TEST_F(IngestServiceTest, NdjsonLinesAreRecordsAndABrokenLineIsRefusedByItsLineNumber) {
  const auto body =
      "{\"device_id\":\"bike-1\",\"battery_pct\":1}\n\n{\"device_id\": nope}\r\n{\"deviceId\":\"bike-3\"}\n";
  const auto resp = post(Post{"ecowheels", body, {{"content-type", "application/x-ndjson"}}});
  ASSERT_EQ(resp.status, 202) << resp.body;
  const auto receipt = json::parse(resp.body);
  EXPECT_EQ(receipt["accepted"], 2);
  ASSERT_EQ(receipt["refused"].size(), 1u);
  EXPECT_EQ(receipt["refused"][0]["index"], 2);  // the third line
  EXPECT_NE(receipt["refused"][0]["reason"].get<std::string>().find("line 3"), std::string::npos);
  v1::Envelope env;
  ASSERT_TRUE(env.ParseFromString(producer_.sent[1].value));
  EXPECT_EQ(env.device_id(), "bike-3");  // the lowerCamel JSON name works too
}

TEST_F(IngestServiceTest, ProtobufEventBatchIsDecodedAndAForeignRecordRefused) {
  v1::RideTelemetry r;
  r.set_event_id("pb-1");
  r.set_device_id("bike-7");
  r.set_battery_pct(42);
  v1::EventBatch batch;
  batch.add_records(r.SerializeAsString());
  v1::Envelope not_a_ride;  // its fields 3 and 7 have other wire types in RideTelemetry
  not_a_ride.set_seq(3);
  not_a_ride.set_ingest_time_ms(5);
  batch.add_records(not_a_ride.SerializeAsString());
  batch.add_records("\xff\xff\xff");
  const auto resp = post(Post{"ecowheels", batch.SerializeAsString(), {{"content-type", "application/x-protobuf"}}});
  ASSERT_EQ(resp.status, 202) << resp.body;
  const auto receipt = json::parse(resp.body);
  EXPECT_EQ(receipt["accepted"], 1);
  ASSERT_EQ(receipt["refused"].size(), 2u);
  EXPECT_EQ(receipt["refused"][0]["index"], 1);
  EXPECT_NE(receipt["refused"][0]["reason"].get<std::string>().find("is not a field of"), std::string::npos);
  EXPECT_EQ(receipt["refused"][1]["index"], 2);
  v1::Envelope env;
  ASSERT_TRUE(env.ParseFromString(producer_.sent[0].value));
  EXPECT_EQ(env.event_id(), "pb-1");
  const auto garbage = post(Post{"ecowheels", "\x0a\xff", {{"content-type", "application/x-protobuf"}}});
  EXPECT_EQ(garbage.status, 400);
  EXPECT_EQ(error(garbage)["field"], "body");
}

TEST_F(IngestServiceTest, TooManyRecordsIs413) {
  IngestOptions o;
  o.max_records = 2;
  make_service(std::move(o));
  const auto resp = post("ecowheels", R"([{"device_id":"a"},{"device_id":"b"},{"device_id":"c"}])");
  EXPECT_EQ(resp.status, 413);
  EXPECT_EQ(error(resp)["field"], "body");
}

TEST_F(IngestServiceTest, EventWithoutIdGetsOneDerivedFromSagaAndSeq) {
  ASSERT_EQ(post("ecowheels", R"([{"device_id":"d","battery_pct":1}])").status, 202);
  v1::Envelope env;
  ASSERT_TRUE(env.ParseFromString(producer_.sent[0].value));
  EXPECT_EQ(env.event_id(), env.saga_id() + "-0");
}

// --- API keys -------------------------------------------------------------

class KeyedIngestTest : public IngestServiceTest {
 protected:
  KeyedIngestTest() {
    const auto yaml = fmt::format(R"(keys:
  - name: fleet
    sha256: {}
    pipelines: [ecowheels]
    devices: "bike-0*"
    rate: {{events_per_s: 1, burst: 3}}
  - name: other
    sha256: {}
    pipelines: [weather]
  - name: console
    sha256: {}
    pipelines: ["*"]
    scopes: [read, admin]
)",
                                  hash_hex("fleet-secret"), hash_hex("other-secret"), hash_hex("console-secret"));
    auto keys = KeyStore::parse(yaml, "keys.yaml");
    EXPECT_TRUE(keys) << keys.error().message;
    IngestOptions o;
    o.keys = std::move(*keys);
    make_service(std::move(o));
  }
  Post as(const std::string& key, const std::string& body) {
    return Post{"ecowheels", body, {{"authorization", "Bearer " + key}}};
  }
};

TEST_F(KeyedIngestTest, MissingKeyIs401NamingAuthorization) {
  const auto resp = post("ecowheels", kTwoEvents);
  EXPECT_EQ(resp.status, 401);
  EXPECT_EQ(error(resp)["code"], "missing_api_key");
  EXPECT_EQ(error(resp)["field"], "authorization");
  EXPECT_EQ(header(resp, "WWW-Authenticate"), "Bearer");
}

TEST_F(KeyedIngestTest, UnknownKeyIs401AndUnknownPipelineIsNotRevealedToIt) {
  const auto resp = post(Post{"nope", kTwoEvents, {{"x-api-key", "guess"}}});
  EXPECT_EQ(resp.status, 401);
  EXPECT_EQ(error(resp)["code"], "invalid_api_key");
  EXPECT_EQ(error(resp)["field"], "authorization");
  EXPECT_TRUE(producer_.sent.empty());
}

TEST_F(KeyedIngestTest, KeyOfAnotherPipelineIs403NamingPipeline) {
  const auto resp = post(as("other-secret", R"({"device_id":"bike-01"})"));
  EXPECT_EQ(resp.status, 403);
  EXPECT_EQ(error(resp)["code"], "pipeline_not_allowed");
  EXPECT_EQ(error(resp)["field"], "pipeline");
}

TEST_F(KeyedIngestTest, AConsoleKeyWithoutTheIngestScopeCannotSendEvents) {
  const auto resp = post(as("console-secret", R"({"device_id":"bike-01"})"));
  EXPECT_EQ(resp.status, 403);
  EXPECT_EQ(error(resp)["code"], "scope_not_allowed");
  EXPECT_NE(error(resp)["message"].get<std::string>().find("read, admin"), std::string::npos);
  EXPECT_TRUE(producer_.sent.empty());
}

TEST_F(KeyedIngestTest, DeviceOutsideTheKeysPatternIs403NamingTheRecord) {
  const auto resp = post(as("fleet-secret", R"([{"device_id":"bike-01"},{"device_id":"car-9"}])"));
  EXPECT_EQ(resp.status, 403);
  EXPECT_EQ(error(resp)["code"], "device_not_allowed");
  EXPECT_EQ(error(resp)["field"], "records[1].device_id");
  EXPECT_TRUE(producer_.sent.empty());
}

TEST_F(KeyedIngestTest, KeyOverItsRateIs429WithRetryAfter) {
  ASSERT_EQ(post(as("fleet-secret", R"([{"device_id":"bike-01"},{"device_id":"bike-02"}])")).status, 202);
  const auto resp = post(as("fleet-secret", R"([{"device_id":"bike-01"},{"device_id":"bike-02"}])"));
  EXPECT_EQ(resp.status, 429);
  EXPECT_EQ(error(resp)["code"], "rate_limited");
  EXPECT_EQ(error(resp)["field"], "authorization");
  EXPECT_GE(std::stoi(header(resp, "Retry-After")), 1);
}

TEST_F(IngestServiceTest, DeviceOverItsRateIs429NamingDeviceIdWhileOthersPass) {
  IngestOptions o;
  o.device_rate = {0.5, 2};
  make_service(std::move(o));
  ASSERT_EQ(post("ecowheels", R"([{"device_id":"a"},{"device_id":"a"}])").status, 202);
  const auto resp = post("ecowheels", R"({"device_id":"a"})");
  EXPECT_EQ(resp.status, 429);
  EXPECT_EQ(error(resp)["field"], "device_id");
  EXPECT_NE(error(resp)["message"].get<std::string>().find("'a'"), std::string::npos);
  EXPECT_EQ(header(resp, "Retry-After"), "2");
  EXPECT_EQ(post("ecowheels", R"({"device_id":"b"})").status, 202);
}

TEST(KeyStore, ErrorsNameFileLineAndField) {
  auto bad_hash = KeyStore::parse("keys:\n  - name: a\n    sha256: abc\n    pipelines: [x]\n", "k.yaml");
  ASSERT_FALSE(bad_hash);
  EXPECT_EQ(bad_hash.error().message.rfind("k.yaml:3:13: keys[0].sha256: expected 64 hex digits", 0), 0u)
      << bad_hash.error().message;
  auto unknown = KeyStore::parse("keys:\n  - name: a\n    pipeline: [x]\n", "k.yaml");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("keys[0].pipeline: unknown key"), std::string::npos)
      << unknown.error().message;
  auto ok =
      KeyStore::parse(fmt::format("keys:\n  - name: a\n    sha256: {}\n    pipelines: ['*']\n", hash_hex("k")), "k");
  ASSERT_TRUE(ok) << ok.error().message;
  ASSERT_NE(ok->find("k"), nullptr);
  EXPECT_TRUE(ok->find("k")->allows_pipeline("anything"));
  EXPECT_EQ(ok->find("K"), nullptr);
  EXPECT_EQ(ok->find(""), nullptr);
  // Without scopes a key is an ingest key, as every keys file before scopes.
  EXPECT_TRUE(ok->find("k")->has_scope("ingest"));
  EXPECT_FALSE(ok->find("k")->has_scope("read"));
}

TEST(KeyStore, ScopesAreIngestReadOrAdminAndAdminImpliesRead) {
  auto bad = KeyStore::parse(
      fmt::format("keys:\n  - name: a\n    sha256: {}\n    pipelines: ['*']\n    scopes: [read, root]\n",
                  hash_hex("k")),
      "k.yaml");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message.rfind("k.yaml:5:20: keys[0].scopes: 'root' is not a scope", 0), 0u)
      << bad.error().message;
  auto empty = KeyStore::parse(
      fmt::format("keys:\n  - name: a\n    sha256: {}\n    pipelines: ['*']\n    scopes: []\n", hash_hex("k")), "k");
  ASSERT_FALSE(empty);
  auto admin = KeyStore::parse(
      fmt::format("keys:\n  - name: a\n    sha256: {}\n    pipelines: ['*']\n    scopes: [admin]\n", hash_hex("k")),
      "k");
  ASSERT_TRUE(admin) << admin.error().message;
  EXPECT_TRUE(admin->find("k")->has_scope("read"));
  EXPECT_TRUE(admin->find("k")->has_scope("admin"));
  EXPECT_FALSE(admin->find("k")->has_scope("ingest"));
}

// --- Idempotency-Key -------------------------------------------------------

TEST_F(IngestServiceTest, RetryWithTheSameIdempotencyKeyGetsTheSameReceiptWithoutProducingAgain) {
  const Post p{"ecowheels", kTwoEvents, {{"idempotency-key", "req-1"}}};
  const auto first = post(p);
  ASSERT_EQ(first.status, 202);
  const auto produced = producer_.sent.size();
  const auto again = post(p);
  EXPECT_EQ(again.status, 202);
  EXPECT_EQ(again.body, first.body);
  EXPECT_EQ(header(again, "Idempotent-Replayed"), "true");
  EXPECT_EQ(producer_.sent.size(), produced);
  // The same key with another body is a client bug, not a retry.
  const auto other = post(Post{"ecowheels", R"({"device_id":"x"})", {{"idempotency-key", "req-1"}}});
  EXPECT_EQ(other.status, 422);
  EXPECT_EQ(error(other)["field"], "idempotency-key");
}

TEST_F(IngestServiceTest, RetryAfter503WithTheSameKeyReproducesTheSameSagaAndEnvelopes) {
  const auto ok = retry_after_503(
      Post{"ecowheels", R"([{"device_id":"bike-1"},{"device_id":"bike-2"}])", {{"idempotency-key", "k-503"}}});
  EXPECT_EQ(json::parse(ok.body)["saga_id"], derived_saga_id("", "ecowheels", "k-503"));
}

TEST_F(IngestServiceTest, RetryAfter503WithoutAKeyReproducesTheSameSagaAndEnvelopes) {
  // Issue 17, item 6: a body retried after a 503 once became a second saga
  // with other event ids, and the warehouse held each reading twice.
  const auto ok = retry_after_503(Post{"ecowheels", R"([{"device_id":"bike-1"},{"device_id":"bike-2"}])"});
  // Another body is another saga.
  const auto other = post(Post{"ecowheels", R"([{"device_id":"bike-1","battery_pct":1}])"});
  ASSERT_EQ(other.status, 202);
  EXPECT_NE(json::parse(other.body)["saga_id"], json::parse(ok.body)["saga_id"]);
}

TEST_F(IngestServiceTest, ConcurrentDuplicateOfAnIdempotentRequestIs409) {
  producer_.hold = true;
  const Post p{"ecowheels", kTwoEvents, {{"idempotency-key", "slow"}}};
  auto first = send(p);
  const auto dup = post(p);
  EXPECT_EQ(dup.status, 409);
  EXPECT_EQ(error(dup)["field"], "idempotency-key");
  EXPECT_EQ(header(dup, "Retry-After"), "1");
  producer_.release();
  EXPECT_EQ(first.get().status, 202);
  const auto bad = post(Post{"ecowheels", kTwoEvents, {{"idempotency-key", "has space"}}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(error(bad)["field"], "idempotency-key");
}

// --- Saga lookups and the API document -------------------------------------

TEST_F(KeyedIngestTest, SagaLookupIsProxiedAndScopedToTheKeysPipelines) {
  HttpServer saga({}, [](const HttpRequest& r, const HttpResponder& done) {
    if (r.path == "/v1/sagas/aa") return done({200, R"({"saga_id":"aa","pipeline":"ecowheels","state":"COMPLETED"})"});
    if (r.path == "/v1/sagas/bb") return done({200, R"({"saga_id":"bb","pipeline":"weather","state":"COMPLETED"})"});
    if (r.path == "/v1/sagas/replay-0a1b") {
      return done({200, R"({"saga_id":"replay-0a1b","pipeline":"ecowheels","state":"COMPLETED"})"});
    }
    done(json_error(404, "unknown_saga", "no such saga"));
  });
  saga.start();
  IngestOptions o;
  o.keys = KeyStore::parse(
               fmt::format("keys:\n  - name: a\n    sha256: {}\n    pipelines: [ecowheels]\n", hash_hex("s")), "k")
               .value();
  o.saga_url = fmt::format("http://127.0.0.1:{}", saga.port());
  make_service(std::move(o));
  Post auth{"", "", {{"x-api-key", "s"}}};
  const auto mine = send(auth, "GET", "/v1/sagas/aa").get();
  EXPECT_EQ(mine.status, 200);
  EXPECT_EQ(json::parse(mine.body)["state"], "COMPLETED");
  EXPECT_EQ(send(auth, "GET", "/v1/sagas/bb").get().status, 404);  // another pipeline's saga
  EXPECT_EQ(send(auth, "GET", "/v1/sagas/cc").get().status, 404);
  EXPECT_EQ(send(auth, "GET", "/v1/sagas/replay-0a1b").get().status, 200);  // a replay's saga
  for (const std::string& id : std::vector<std::string>{"not*hex", "%2e%2e", std::string(129, 'a')}) {
    const auto bad = send(auth, "GET", "/v1/sagas/" + id).get();
    EXPECT_EQ(bad.status, 400) << id;
    EXPECT_EQ(error(bad)["field"], "saga_id");
  }
  // Only /v1/sagas/{saga_id} is proxied: a deeper path (the saga API's
  // /v1/sagas/{id}/events) is no route of ingest's.
  for (const std::string& path : {"/v1/sagas/a/b", "/v1/sagas/aa/events"}) {
    const auto deeper = send(auth, "GET", path).get();
    EXPECT_EQ(deeper.status, 404) << path;
    EXPECT_EQ(error(deeper)["code"], "not_found") << path;
  }
  EXPECT_EQ(send(Post{}, "GET", "/v1/sagas/aa").get().status, 401);
  saga.stop();
}

TEST_F(IngestServiceTest, OpenApiDocumentIsServedAndDescribesEveryRoute) {
  const auto resp = send(Post{}, "GET", "/openapi.json").get();
  ASSERT_EQ(resp.status, 200);
  const auto doc = json::parse(resp.body);
  EXPECT_EQ(doc["openapi"].get<std::string>().substr(0, 2), "3.");
  for (const auto* path :
       {"/v1/pipelines/{pipeline}/events", "/v1/sagas/{saga_id}", "/healthz", "/readyz", "/metrics"}) {
    EXPECT_TRUE(doc["paths"].contains(path)) << path;
  }
  for (const auto* code : {"202", "400", "401", "403", "404", "409", "413", "415", "422", "429", "431", "503"}) {
    EXPECT_TRUE(doc["paths"]["/v1/pipelines/{pipeline}/events"]["post"]["responses"].contains(code)) << code;
  }
}

// --- The decoder on its own ------------------------------------------------

TEST(Decode, ContentTypesMapToFormats) {
  EXPECT_EQ(*body_format(""), BodyFormat::kJson);
  EXPECT_EQ(*body_format("application/json; charset=utf-8"), BodyFormat::kJson);
  EXPECT_EQ(*body_format("Application/X-NDJSON"), BodyFormat::kNdjson);
  EXPECT_EQ(*body_format("application/x-protobuf"), BodyFormat::kProtobuf);
  EXPECT_FALSE(body_format("text/plain"));
}

}  // namespace
}  // namespace starling::ingest
