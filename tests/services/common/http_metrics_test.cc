// HTTP metrics by route: the label is a route's template, never what the
// client sent, so no request can mint a series.

#include "services/common/http_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "services/common/metrics.h"
#include "tests/support/prometheus_sample.h"

namespace starling {
namespace {

std::optional<double> sample(const std::string& series) {
  return testing::prometheus_sample(metrics().render(), series);
}

std::size_t series_count(const std::string& name) {
  const auto page = metrics().render();
  std::size_t n = 0;
  for (auto at = page.find("\n" + name + "{"); at != std::string::npos; at = page.find("\n" + name + "{", at + 1)) ++n;
  return n;
}

const RouteTable routes_under_test({"/v1/pipelines/{pipeline}/events", "/v1/sagas/{saga_id}", "/v1/sagas",
                                    "/openapi.json"});

TEST(RouteTable, MatchesTemplatesSegmentBySegment) {
  EXPECT_EQ(routes_under_test.match("/v1/pipelines/ecowheels/events"), "/v1/pipelines/{pipeline}/events");
  EXPECT_EQ(routes_under_test.match("/v1/sagas/abc"), "/v1/sagas/{saga_id}");
  EXPECT_EQ(routes_under_test.match("/v1/sagas"), "/v1/sagas");
  EXPECT_EQ(routes_under_test.match("/openapi.json"), "/openapi.json");
  // A parameter is one non-empty segment; anything else is unmatched.
  EXPECT_EQ(routes_under_test.match("/v1/pipelines//events"), kUnmatchedRoute);
  EXPECT_EQ(routes_under_test.match("/v1/pipelines/a/b/events"), kUnmatchedRoute);
  EXPECT_EQ(routes_under_test.match("/v1/sagas/"), kUnmatchedRoute);
  EXPECT_EQ(routes_under_test.match("/v1/sagas/abc/"), kUnmatchedRoute);
  EXPECT_EQ(routes_under_test.match(""), kUnmatchedRoute);
  EXPECT_EQ(routes_under_test.match("/"), kUnmatchedRoute);
}

TEST(RouteTable, ReadsTheOpenApiDocumentsPaths) {
  const auto t = RouteTable::from_openapi(R"({"openapi":"3.1.0","paths":{"/a/{x}":{},"/b":{}}})");
  EXPECT_THAT(t.templates(), ::testing::UnorderedElementsAre("/a/{x}", "/b"));
  EXPECT_EQ(t.match("/a/1"), "/a/{x}");
  EXPECT_THROW(RouteTable::from_openapi("{"), std::invalid_argument);
  EXPECT_THROW(RouteTable::from_openapi(R"({"paths":[]})"), std::invalid_argument);
}

TEST(InstrumentHttp, CountsEachAnswerByRouteMethodAndStatusAndTimesItEvenWhenAnsweredLater) {
  HttpResponder later;
  auto handler = instrument_http(routes_under_test, [&](const HttpRequest& r, HttpResponder done) {
    if (r.path.ends_with("/events")) {
      later = std::move(done);  // answered after the handler returned, as ingest does
      return;
    }
    done({r.path == "/v1/sagas" ? 200 : 404, "{}"});
  });
  std::vector<int> answered;
  auto call = [&](std::string method, std::string path) {
    HttpRequest r;
    r.method = std::move(method);
    r.path = std::move(path);
    handler(std::move(r), [&](const HttpResponse& res) { answered.push_back(res.status); });
  };
  const std::string events_202 =
      R"(starling_http_requests_total{code="202",method="POST",route="/v1/pipelines/{pipeline}/events"})";
  const std::string events_count =
      R"(starling_http_request_duration_seconds_count{route="/v1/pipelines/{pipeline}/events"})";
  const double before = sample(events_202).value_or(0);
  call("POST", "/v1/pipelines/ecowheels/events");
  EXPECT_EQ(sample(events_202).value_or(0), before);  // not answered yet
  ASSERT_TRUE(later);
  later({202, "{}"});
  EXPECT_EQ(sample(events_202), before + 1);
  EXPECT_GE(sample(events_count).value_or(0), 1);

  call("GET", "/v1/sagas");
  EXPECT_GE(sample(R"(starling_http_requests_total{code="200",method="GET",route="/v1/sagas"})").value_or(0), 1);
  // Hostile paths and methods land in two fixed series, however many differ.
  const auto before_series = series_count("starling_http_requests_total");
  for (int i = 0; i < 50; ++i) {
    call(i % 2 == 0 ? "GET" : "X-EVIL-" + std::to_string(i), "/wp-admin/" + std::to_string(i) + "/\"}\n");
  }
  EXPECT_LE(series_count("starling_http_requests_total"), before_series + 2);
  EXPECT_GE(sample(R"(starling_http_requests_total{code="404",method="other",route="unmatched"})").value_or(0), 25);
  EXPECT_GE(sample(R"(starling_http_requests_total{code="404",method="GET",route="unmatched"})").value_or(0), 25);
  EXPECT_EQ(answered.size(), 52u);
}

}  // namespace
}  // namespace starling
