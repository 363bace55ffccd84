// The source block's other shapes, against a FakeWeatherApi on a loopback
// port and a fake producer: cron schedules, page and offset paging, each:
// fan-out, auth by query key and by OAuth2 client credentials, https with a
// private CA, ingest's record limits, and a backfill as one saga.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <thread>

#include "services/common/cron.h"
#include "services/extract/oauth2.h"
#include "services/extract/source.h"
#include "starling/v1/saga.pb.h"
#include "tests/services/extract/extractor_fixture.h"
#include "tests/support/test_certs.h"

namespace starling::extract {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

int64_t at(const char* rfc3339_text) { return *parse_time_ms(rfc3339_text); }

using starling::testing::problems_of;

// ---- cron ----

TEST(Cron, NextRunsFollowEachFieldInUtc) {
  auto hourly = parse_cron("5 * * * *");
  ASSERT_TRUE(hourly.has_value()) << hourly.error().message;
  EXPECT_EQ(hourly->next_after(at("2026-03-01T10:04:59Z")), at("2026-03-01T10:05:00Z"));
  EXPECT_EQ(hourly->next_after(at("2026-03-01T10:05:00Z")), at("2026-03-01T11:05:00Z"));  // strictly after
  EXPECT_EQ(hourly->next_after(at("2026-12-31T23:30:00Z")), at("2027-01-01T00:05:00Z"));

  auto office = parse_cron("*/15 9-17 * * MON-FRI");
  ASSERT_TRUE(office.has_value()) << office.error().message;
  // 2026-03-06 is a Friday: after 17:45 comes Monday 09:00.
  EXPECT_EQ(office->next_after(at("2026-03-06T17:45:00Z")), at("2026-03-09T09:00:00Z"));
  EXPECT_EQ(office->next_after(at("2026-03-09T09:01:00Z")), at("2026-03-09T09:15:00Z"));

  auto leap = parse_cron("0 0 29 feb *");
  ASSERT_TRUE(leap.has_value());
  EXPECT_EQ(leap->next_after(at("2026-03-01T00:00:00Z")), at("2028-02-29T00:00:00Z"));

  auto daily = parse_cron("@daily");
  ASSERT_TRUE(daily.has_value());
  EXPECT_EQ(daily->next_after(at("2026-03-01T00:00:00Z")), at("2026-03-02T00:00:00Z"));

  // Both day fields restricted: either runs (Vixie). 2026-03-02 is a Monday.
  auto either = parse_cron("0 12 15 * 1");
  ASSERT_TRUE(either.has_value());
  EXPECT_EQ(either->next_after(at("2026-03-01T00:00:00Z")), at("2026-03-02T12:00:00Z"));
  EXPECT_EQ(either->next_after(at("2026-03-14T00:00:00Z")), at("2026-03-15T12:00:00Z"));

  // 7 is Sunday as well as 0; 2026-03-01 is a Sunday.
  auto sunday = parse_cron("30 6 * * 7");
  ASSERT_TRUE(sunday.has_value());
  EXPECT_EQ(sunday->next_after(at("2026-02-28T00:00:00Z")), at("2026-03-01T06:30:00Z"));

  // A schedule that never fires says so.
  auto never = parse_cron("0 0 30 2 *");
  ASSERT_TRUE(never.has_value());
  EXPECT_FALSE(never->next_after(at("2026-01-01T00:00:00Z")).has_value());
}

TEST(Cron, ABadScheduleNamesTheFieldAndWhatWasExpected) {
  auto fields = parse_cron("* * *");
  ASSERT_FALSE(fields.has_value());
  EXPECT_THAT(fields.error().message, HasSubstr("expected five fields"));
  auto minute = parse_cron("61 * * * *");
  ASSERT_FALSE(minute.has_value());
  EXPECT_THAT(minute.error().message, HasSubstr("cron minute '61'"));
  EXPECT_THAT(minute.error().message, HasSubstr("0-59"));
  auto down = parse_cron("0 5-1 * * *");
  ASSERT_FALSE(down.has_value());
  EXPECT_THAT(down.error().message, HasSubstr("cron hour '5-1'"));
  auto step = parse_cron("*/0 * * * *");
  ASSERT_FALSE(step.has_value());
  EXPECT_THAT(step.error().message, HasSubstr("step"));
  auto name = parse_cron("0 0 * * FUNDAY");
  ASSERT_FALSE(name.has_value());
  EXPECT_THAT(name.error().message, HasSubstr("day of week"));
  EXPECT_FALSE(parse_cron("0 0 * * 1,,2").has_value());
}

// ---- the source block ----

std::string with_source(const std::string& lines) {
  return starling::testing::weather_yaml() + "\nsource:\n  http_poll:\n" + lines;
}

TEST(SourceBlock, CronEachAuthAndPagingAreReadWithTheirValues) {
  ::setenv("STARLING_TEST_KEY", "s3cr&t", 1);
  const auto p =
      parse_pipeline(with_source(R"(    url: http://api.test/obs?station=${station}&start=${since}&end=${until}
    cron: "5 * * * *"
    each: {station: [KSEA, KBFI]}
    auth:
      query: {api_key: "${STARLING_TEST_KEY}"}
      oauth2: {token_url: http://api.test/oauth/token, client_id: me, client_secret: "${STARLING_TEST_KEY}", scope: read}
    records: /features
    paginate: {page: page, size: 50, size_param: per_page, first: 0}
)"),
                     "w.yaml");
  ASSERT_TRUE(p.source.has_value());
  const auto& s = *p.source;
  ASSERT_TRUE(s.cron.has_value());
  EXPECT_EQ(s.cron->text, "5 * * * *");
  EXPECT_EQ(s.every_ms, 0);
  ASSERT_EQ(s.each.size(), 1u);
  EXPECT_EQ(s.each[0].first, "station");
  EXPECT_EQ(s.each[0].second, (std::vector<std::string>{"KSEA", "KBFI"}));
  EXPECT_THAT(s.url, HasSubstr("${station}"));  // kept for extract, not taken from the environment
  ASSERT_EQ(s.auth_query.size(), 1u);
  EXPECT_EQ(s.auth_query[0].second, "s3cr&t");
  ASSERT_TRUE(s.oauth2.has_value());
  EXPECT_EQ(s.oauth2->client_secret, "s3cr&t");
  EXPECT_EQ(s.oauth2->scope, "read");
  EXPECT_EQ(s.paging, HttpPollSource::Paging::kPage);
  EXPECT_EQ(s.page_param, "page");
  EXPECT_EQ(s.page_size, 50);
  EXPECT_EQ(s.size_param, "per_page");
  EXPECT_EQ(s.page_first, 0);

  // The url's values: each value percent-encoded; the key added and redacted.
  const auto url = window_url(s, kFirst, kFirst + kHour, {{"station", "K S"}});
  EXPECT_THAT(url, HasSubstr("station=K%20S&start=2026-01-01T00:00:00.000Z&end=2026-01-01T01:00:00.000Z"));
  const auto keyed = with_query(url, s.auth_query);
  EXPECT_THAT(keyed, HasSubstr("&api_key=s3cr%26t"));
  EXPECT_EQ(with_query(keyed, s.auth_query), keyed) << "a parameter already there is not added twice";
  EXPECT_THAT(redact(s, keyed), HasSubstr("api_key=***"));
  EXPECT_THAT(redact(s, keyed), Not(HasSubstr("s3cr")));
  EXPECT_THAT(paged_url(s, keyed, 3), HasSubstr("&page=3&per_page=50"));
  EXPECT_EQ(each_bindings(s).size(), 2u);
}

TEST(SourceBlock, EachProblemNamesItsLine) {
  const auto yaml = with_source(R"(    url: http://api.test/obs?start=${since}&end=${until}
    every: 1h
    cron: "61 * * * *"
    each: {station: [KSEA], region: []}
    auth: {oauth2: {token_url: ftp://x, client_id: me}, basic: {}}
    records: /features
    paginate: {page: page, next: /next}
)");
  const auto problems = problems_of(yaml);
  EXPECT_THAT(problems, HasSubstr("source.http_poll.cron: give every (a duration) or cron (a schedule), not both"));
  EXPECT_THAT(problems, HasSubstr("source.http_poll.each.station: the url has no ${station} to fill in"));
  EXPECT_THAT(problems, HasSubstr("source.http_poll.each.region: expected a non-empty list of values"));
  EXPECT_THAT(problems, HasSubstr("basic"));
  EXPECT_THAT(problems, HasSubstr("source.http_poll.paginate: expected one of next"));
  const auto cron_line =
      1 + std::count(yaml.begin(), yaml.begin() + static_cast<std::ptrdiff_t>(yaml.find("cron: \"61")), '\n');
  EXPECT_THAT(problems, HasSubstr(fmt::format("w.yaml:{}:", cron_line)));

  const auto no_size = problems_of(with_source(R"(    url: http://api.test/obs?start=${since}
    every: 1h
    records: /features
    paginate: {offset: offset}
)"));
  EXPECT_THAT(no_size, HasSubstr("source.http_poll.paginate.size: missing"));
  const auto bad_cron = problems_of(with_source(R"(    url: http://api.test/obs?start=${since}
    cron: "5 * * *"
    records: /features
)"));
  EXPECT_THAT(bad_cron, HasSubstr("source.http_poll.cron: cron '5 * * *': expected five fields"));
  const auto oauth = problems_of(with_source(R"(    url: http://api.test/obs?start=${since}
    every: 1h
    records: /features
    auth: {oauth2: {token_url: http://api.test/token, client_id: me}}
)"));
  EXPECT_THAT(oauth, HasSubstr("source.http_poll.auth.oauth2.client_secret: missing"));
  // 11 x 11 x 11 combinations is over the limit of 1000.
  std::string values = "[";
  for (int i = 0; i < 11; ++i) values += (i ? ", " : "") + std::string("v") + std::to_string(i);
  values += "]";
  const auto many =
      problems_of(with_source("    url: http://api.test/${a}/${b}/${c}?start=${since}\n    every: 1h\n"
                              "    records: /features\n    each: {a: " +
                              values + ", b: " + values + ", c: " + values + "}\n"));
  EXPECT_THAT(many, HasSubstr("more than 1000 combinations"));
}

// ---- paging, fan-out and auth against the fake API ----

class ExtractSources : public ExtractorTest {
 protected:
  // The weather source's GeoJSON block (every 1h, 6-hour windows, no
  // lookback, no paging) with `url_tail` and `lines` added.
  std::string source(const std::string& url_tail, const std::string& lines) const {
    starling::testing::SourceShape shape;
    shape.every = "1h";
    shape.lookback = "0s";
    shape.start = rfc3339(kFirst);
    shape.url_tail = url_tail;
    shape.paginate.clear();
    shape.extra = lines;
    return starling::testing::weather_with_source(api_->base_url(), shape);
  }
  std::set<std::pair<std::string, int64_t>> pulled_set() const {
    const auto all = pulled();
    return {all.begin(), all.end()};
  }
};

TEST_F(ExtractSources, PageNumbersEndAtTheFirstShortPage) {
  // Given 12 hours of 3 stations (36 observations), 6-hour windows of 18
  start_api({.stations = 3, .hours = 12, .page_size = 1000});
  // When paged by number, 5 a page, from 0
  make_from(source("", "    paginate: {page: page, first: 0, size: 5, size_param: per_page}\n"));
  poll_all(kFirst + 12 * kHour);
  // Then every observation arrived once, in pages of 5 (18 = 5+5+5+3 per window)
  EXPECT_EQ(pulled_set(), expected(kFirst, kFirst + 12 * kHour));
  EXPECT_EQ(pulled().size(), 36u);
  std::multiset<std::string> pages;
  for (const auto& r : api_->requests()) {
    pages.insert(r["query"].value("page", "") + "/" + r["query"].value("per_page", ""));
  }
  EXPECT_EQ(pages, (std::multiset<std::string>{"0/5", "0/5", "1/5", "1/5", "2/5", "2/5", "3/5", "3/5"}));
}

TEST_F(ExtractSources, OffsetsEndAtTheFirstShortOrEmptyPage) {
  start_api({.stations = 3, .hours = 12, .page_size = 1000});
  // 6 a page: a window of 18 is three full pages and an empty one
  make_from(source("", "    paginate: {offset: offset, size: 6, size_param: limit}\n"));
  poll_all(kFirst + 12 * kHour);
  EXPECT_EQ(pulled_set(), expected(kFirst, kFirst + 12 * kHour));
  EXPECT_EQ(pulled().size(), 36u);
  std::multiset<std::string> offsets;
  for (const auto& r : api_->requests()) offsets.insert(r["query"].value("offset", ""));
  EXPECT_EQ(offsets, (std::multiset<std::string>{"0", "0", "6", "6", "12", "12", "18", "18"}));
}

TEST_F(ExtractSources, EachStationIsItsOwnChainOfPagesAndItsOwnSagas) {
  start_api({.stations = 3, .hours = 6, .page_size = 4});
  make_from(
      source("&station=${station}", "    paginate: {next: /pagination/next}\n    each: {station: [KAAA, KAAC]}\n"));
  auto r = extractor_->poll(kFirst + 6 * kHour);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  // Only the two stations, every hour of each
  std::set<std::pair<std::string, int64_t>> want;
  for (const auto& o : api_->observations(kFirst, kFirst + 6 * kHour)) {
    if (o.station != "KAAB") want.emplace(o.station, o.time_ms);
  }
  EXPECT_EQ(pulled_set(), want);
  // asked station by station, 6 hours in pages of 4: 2 pages each
  std::map<std::string, int> asked;
  for (const auto& req : api_->requests()) ++asked[req["query"].value("station", "")];
  EXPECT_EQ(asked, (std::map<std::string, int>{{"KAAA", 2}, {"KAAC", 2}}));
  EXPECT_EQ(r->sagas, 4);
  // and a saga never mixes stations
  std::map<std::string, std::set<std::string>> stations_of;
  for (const auto& e : raw()) stations_of[e.saga_id()].insert(e.device_id());
  for (const auto& [saga, stations] : stations_of) EXPECT_EQ(stations.size(), 1u) << saga;
}

TEST_F(ExtractSources, AQueryKeyReachesTheApiAndNeverTheLogs) {
  ::setenv("STARLING_TEST_WEATHER_KEY", "k-123&x", 1);
  start_api({.stations = 1, .hours = 3, .page_size = 2, .api_key = "k-123&x"});
  make_from(source(
      "", "    paginate: {next: /pagination/next}\n    auth: {query: {api_key: \"${STARLING_TEST_WEATHER_KEY}\"}}\n"));
  auto ok = extractor_->poll(kFirst + 3 * kHour);
  ASSERT_TRUE(ok.has_value()) << ok.error().message;
  EXPECT_EQ(pulled().size(), 3u);
  EXPECT_EQ(ok->pages, 2) << "the next link got the key too";
}

TEST_F(ExtractSources, AWrongQueryKeyFailsThePollWithTheKeyShownAsStars) {
  ::setenv("STARLING_TEST_WEATHER_KEY", "wrong-key", 1);
  start_api({.stations = 1, .hours = 3, .api_key = "k-123&x"});
  make_from(source("", "    auth: {query: {api_key: \"${STARLING_TEST_WEATHER_KEY}\"}}\n"));
  auto refused = extractor_->poll(kFirst + 3 * kHour);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().kind, PollFailure::kHttp);
  EXPECT_THAT(refused.error().message, HasSubstr("HTTP 401"));
  EXPECT_THAT(refused.error().message, HasSubstr("api_key=***"));
  EXPECT_THAT(refused.error().message, Not(HasSubstr("wrong-key")));
  EXPECT_TRUE(producer_.produced().empty());
  EXPECT_FALSE((*store_->since("weather")).has_value()) << "the cursor stays";
}

TEST_F(ExtractSources, OAuth2TokensAreKeptRefreshedBeforeExpiryAndAskedAgainAfterA401) {
  start_api({.stations = 1,
             .hours = 24,
             .page_size = 100,
             .client_id = "starling",
             .client_secret = "p@ss:word",
             .token_ttl_s = 2});
  const auto oauth = fmt::format(
      "    auth: {{oauth2: {{token_url: {}/oauth/token, client_id: starling, client_secret: \"p@ss:word\"}}}}\n",
      api_->base_url());
  make_from(source("", oauth));
  // Two polls in a row share one token
  auto first = extractor_->poll(kFirst + 6 * kHour);
  ASSERT_TRUE(first.has_value()) << first.error().message;
  ASSERT_TRUE(extractor_->poll(kFirst + 12 * kHour).has_value());
  EXPECT_EQ(api_->tokens_issued(), 1);
  // A fifth of its 2 s life before it expires, a new one is asked for (the
  // API would refuse the old one from 2 s on)
  std::this_thread::sleep_for(std::chrono::milliseconds(1700));
  ASSERT_TRUE(extractor_->poll(kFirst + 18 * kHour).has_value());
  EXPECT_EQ(api_->tokens_issued(), 2);
  // A revoked token: the API's 401 gets a new token and the same page again
  api_->revoke_tokens();
  auto after = extractor_->poll(kFirst + 24 * kHour);
  ASSERT_TRUE(after.has_value()) << after.error().message;
  EXPECT_EQ(api_->tokens_issued(), 3);
  int unauthorized = 0;
  for (const auto& r : api_->requests()) unauthorized += r["status"] == 401 ? 1 : 0;
  EXPECT_EQ(unauthorized, 1);
  poll_all(kFirst + 24 * kHour);
  EXPECT_EQ(pulled_set(), expected(kFirst, kFirst + 24 * kHour));
}

TEST_F(ExtractSources, OAuth2WithAWrongSecretFailsThePollAndTheCursorStays) {
  start_api({.stations = 1, .hours = 6, .client_id = "starling", .client_secret = "right"});
  make_from(source("", fmt::format("    auth: {{oauth2: {{token_url: {}/oauth/token, client_id: starling, "
                                   "client_secret: wrong}}}}\n",
                                   api_->base_url())));
  auto r = extractor_->poll(kFirst + 6 * kHour);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, PollFailure::kHttp);
  EXPECT_THAT(r.error().message, HasSubstr("invalid_client"));
  EXPECT_EQ(api_->tokens_issued(), 0);
  EXPECT_TRUE(producer_.produced().empty());
  EXPECT_FALSE((*store_->since("weather")).has_value());
}

TEST_F(ExtractSources, HttpsWithAPrivateCaIsVerifiedAndAnUnknownCaRefused) {
  const auto certs = starling::testing::TestCerts::make(dir_.path());
  ASSERT_TRUE(certs.ok()) << certs.error;
  FakeApiOptions o{.stations = 2, .hours = 6, .page_size = 5};
  o.tls.cert_file = certs.server_cert;
  o.tls.key_file = certs.server_key;
  start_api(o);
  ASSERT_TRUE(api_->base_url().starts_with("https://127.0.0.1:"));
  // Not signed by a CA the system knows: refused, nothing produced, cursor stays
  make({}, {}, {});
  auto refused = extractor_->poll(kFirst + 6 * kHour);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().kind, PollFailure::kHttp);
  EXPECT_TRUE(producer_.produced().empty());
  EXPECT_FALSE((*store_->since("weather")).has_value());
  // Signed by the CA given: every observation, over TLS
  HttpClientOptions tls;
  tls.ca_file = certs.ca;
  make({}, {}, tls);
  auto ok = extractor_->poll(kFirst + 6 * kHour);
  ASSERT_TRUE(ok.has_value()) << ok.error().message;
  EXPECT_EQ(pulled_set(), expected(kFirst, kFirst + 6 * kHour));
}

TEST_F(ExtractSources, ARecordOverIngestsLimitsGoesToRejectedWithRuleLimits) {
  start_api({.stations = 2, .hours = 2});
  ExtractOptions o;
  o.limits.field_bytes = 3;  // station ids are 4 bytes
  make({}, o);
  auto r = extractor_->poll(kFirst + 2 * kHour);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->rejected, 4u);
  EXPECT_EQ(r->records, 0u);
  for (const auto& m : producer_.produced()) {
    if (m.topic != "weather.rejected") continue;
    v1::RejectedRecord rr;
    ASSERT_TRUE(rr.ParseFromString(m.value));
    EXPECT_EQ(rr.stage(), "extract");
    ASSERT_EQ(rr.reasons_size(), 1);
    EXPECT_EQ(rr.reasons(0).rule(), "limits");
    EXPECT_EQ(rr.reasons(0).field(), "station_id");
    EXPECT_THAT(rr.reasons(0).expected(), HasSubstr("4 bytes; at most 3"));
  }
}

TEST_F(ExtractSources, ACronSourceStartsOneIntervalBackAndPollsAtTheNextMinute) {
  start_api({.stations = 1, .hours = 48});
  auto yaml = source("", "");
  yaml.replace(yaml.find("    every: 1h\n"), 14, "    cron: \"5 * * * *\"\n");
  yaml.replace(yaml.find("    start: "), yaml.find('\n', yaml.find("    start: ")) - yaml.find("    start: ") + 1, "");
  make_from(yaml);
  const int64_t now = kFirst + 30 * kHour + int64_t{10} * 60'000;  // 06:10 the next day
  EXPECT_EQ(extractor_->next_poll_ms(now), kFirst + 31 * kHour + int64_t{5} * 60'000);
  auto r = extractor_->poll(now);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->since_ms, now - kHour) << "no start: one interval of the schedule back";
}

// ---- backfill ----

TEST_F(ExtractSources, ABackfillIsOneSagaWithSeqsInOrderAndOneIngestedFactAtItsEnd) {
  start_api({.stations = 2, .hours = 24, .page_size = 5});
  ExtractOptions o;
  o.backfill = BackfillRange{"bf-test", kFirst + 2 * kHour, kFirst + 20 * kHour};
  make({}, o);
  EXPECT_EQ(extractor_->cursor_key(), "backfill/bf-test");
  // The API is down during the second window: that poll fails, the cursor stays
  auto first = extractor_->poll(kFirst + 48 * kHour);
  ASSERT_TRUE(first.has_value()) << first.error().message;
  EXPECT_FALSE(first->done);
  EXPECT_EQ(first->since_ms, kFirst + 2 * kHour);
  EXPECT_EQ(first->until_ms, kFirst + 8 * kHour);
  api_->set_down(true);
  ASSERT_FALSE(extractor_->poll(kFirst + 48 * kHour).has_value());
  api_->set_down(false);
  // A new process picks up where the store says (a crash is the same)
  make({}, o);
  std::vector<PollResult> polls;
  for (int i = 0; i < 10; ++i) {
    auto r = extractor_->poll(kFirst + 48 * kHour);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    polls.push_back(*r);
    if (r->done) break;
  }
  ASSERT_TRUE(polls.back().done);
  // Every observation of the range, under the backfill's saga, seqs 0..n-1 once each
  const auto want = expected(kFirst + 2 * kHour, kFirst + 20 * kHour);
  EXPECT_EQ(pulled_set(), want);
  std::map<uint32_t, std::string> ids;
  for (const auto& e : raw()) {
    EXPECT_EQ(e.saga_id(), "bf-test");
    EXPECT_TRUE(ids.emplace(e.seq(), e.event_id()).second || ids[e.seq()] == e.event_id())
        << "seq " << e.seq() << " went to two records";
  }
  ASSERT_EQ(ids.size(), want.size());
  EXPECT_EQ(ids.rbegin()->first, want.size() - 1);
  // one INGESTED, of kind REPLAY, with the total and a child per window
  std::vector<v1::ProgressFact> ingested;
  for (const auto& m : producer_.produced()) {
    if (m.topic != "starling.saga") continue;
    v1::ProgressFact f;
    ASSERT_TRUE(f.ParseFromString(m.value));
    if (f.step() == v1::STEP_INGESTED) ingested.push_back(f);
  }
  ASSERT_EQ(ingested.size(), 1u);
  EXPECT_EQ(ingested[0].saga_id(), "bf-test");
  EXPECT_EQ(ingested[0].kind(), v1::SAGA_KIND_REPLAY);
  EXPECT_EQ(ingested[0].total(), want.size());
  EXPECT_EQ(ingested[0].replay().stage(), "extract");
  EXPECT_EQ(ingested[0].replay().children_size(), 3);  // 2..8, 8..14, 14..20
  // and polling again after the end sends nothing more
  const auto produced = producer_.produced().size();
  auto again = extractor_->poll(kFirst + 48 * kHour);
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(again->done);
  EXPECT_EQ(producer_.produced().size(), produced);
}

}  // namespace
}  // namespace starling::extract
