#include "services/cli/weather_demo.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <sstream>
#include <thread>

#include "services/common/http.h"
#include "services/common/progress.h"
#include "services/common/time.h"
#include "services/extract/fake_weather_api.h"
#include "services/extract/source.h"
#include "services/simulator/report.h"
#include "starling/v1/weather.pb.h"

namespace starling::cli {
namespace {

using simulator::count_rows;
using simulator::fetch_totals;
using simulator::SagaTotals;

constexpr int64_t kHourMs = 3'600'000;
constexpr const char* kWeatherMessage = "starling.v1.WeatherObservation";

// A sample of a Prometheus text page; 0 while the series is not there
// (extract registers its counters at its first poll that completes).
uint64_t sample(const std::string& page, const std::string& series) {
  std::istringstream in(page);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > series.size() && line.starts_with(series) && line[series.size()] == ' ') {
      return static_cast<uint64_t>(std::strtod(line.c_str() + series.size() + 1, nullptr));
    }
  }
  return 0;
}

// What starling-extract has finished: its counters move only when a window's
// poll completed, that is once Kafka persisted every record of its pages.
struct Pulled {
  uint64_t pages = 0;
  uint64_t records = 0;
  uint64_t rejected = 0;
};

Result<Pulled> pulled(const std::string& extract_url, const std::string& pipeline) {
  auto r = http_call("GET", extract_url + "/metrics");
  if (!r) return std::unexpected(r.error());
  if (r->status != 200) return fail(Errc::kUnavailable, fmt::format("extract's /metrics answered {}", r->status));
  const auto label = fmt::format("{{pipeline=\"{}\"}}", pipeline);
  return Pulled{sample(r->body, "starling_extract_pages_total" + label),
                sample(r->body, "starling_extract_records_total" + label),
                sample(r->body, "starling_extract_rejected_total" + label)};
}

// The API's side: pages it answered with 200, the windows asked for, and
// whether a window reached past the last hour of data.
struct Served {
  uint64_t pages = 0;
  std::set<std::string> windows;
  bool covered = false;
};

Served served(const extract::FakeWeatherApi& api, int64_t end_ms) {
  Served s;
  for (const auto& r : api.requests()) {
    if (r.value("status", 0) != 200) continue;
    ++s.pages;
    const auto& q = r["query"];
    if (q.contains("start")) s.windows.insert(q["start"].get<std::string>());
    if (q.contains("end")) {
      if (auto end = parse_time_ms(q["end"].get<std::string>()); end && *end >= end_ms) s.covered = true;
    }
  }
  return s;
}

}  // namespace

std::string weather_demo_refusal(const PipelineConfig& p, const std::string& file) {
  if (!p.source) {
    return fmt::format(
        "{}: pipeline {} has no source: http_poll: block, so nothing would pull its records, and the demo's "
        "simulated fleet only posts e-bike telemetry (starling.v1.RideTelemetry), not {}; give --pipeline a "
        "pipeline that pulls from an API (pipelines/weather.yaml) or an e-bike one (pipelines/ecowheels.yaml)",
        file, p.name, p.message_type);
  }
  if (p.message_type != kWeatherMessage) {
    return fmt::format(
        "{}: pipeline {} pulls {} records, but the demo's fake API serves weather observations ({}) only; give "
        "--pipeline pipelines/weather.yaml",
        file, p.name, p.message_type, kWeatherMessage);
  }
  return {};
}

int cmd_weather_demo(supervisor::StackOptions stack_opts, const WeatherDemoOptions& o) {
  const auto& file = stack_opts.pipeline_files.front();
  // The API: `hours` of `stations` ending at the current hour (the
  // pipeline's clean rules refuse readings older than 7 days or from the
  // future), on a free loopback port.
  extract::FakeApiOptions api_opts;
  api_opts.stations = o.stations;
  api_opts.hours = o.hours;
  api_opts.page_size = o.page_size;
  api_opts.seed = o.seed;
  const int64_t first = (now_ms() / kHourMs) * kHourMs - o.hours * kHourMs;
  const int64_t end = first + o.hours * kHourMs;
  api_opts.first_hour_ms = first;
  extract::FakeWeatherApi api(api_opts);
  try {
    api.start();
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: the fake weather API: {}\n", e.what());
    return 1;
  }
  // The source reads the API's address and the first window's start from
  // the environment, here and in every process the stack starts.
  ::setenv(kWeatherApiVar, fmt::format("127.0.0.1:{}", api.port()).c_str(), 1);
  ::setenv(kWeatherStartVar, rfc3339_trimmed(first).c_str(), 1);
  const auto p = load_pipeline(file);
  if (auto why = weather_demo_refusal(p, file); !why.empty() || !p.source) {
    fmt::print(stderr, "error: {}\n", why);
    return 2;
  }
  if (!p.source->url.starts_with(api.base_url() + "/")) {
    fmt::print(stderr,
               "error: {}: its source url ({}) does not take the API's address from ${{{}}}, so the demo's fake API "
               "would not be polled; write it as http://${{{}:-127.0.0.1:8089}}/geojson/observations?start=${{since}}"
               "&end=${{until}}\n",
               file, p.source->url, kWeatherApiVar, kWeatherApiVar);
    return 2;
  }
  std::set<std::string> want;
  for (const auto& ob : api.observations(first, end)) {
    v1::WeatherObservation w;
    w.set_station_id(ob.station);
    w.mutable_observed_at()->set_seconds(ob.time_ms / 1000);
    want.insert(extract::content_event_id(p, w));
  }
  fmt::print("fake weather API on {}: {} stations x {} hours from {} ({} observations)\n", api.base_url(), o.stations,
             o.hours, rfc3339_trimmed(first), want.size());

  supervisor::Stack stack(stack_opts);
  fmt::print("starting starling-broker and the services in {}\n", stack_opts.data_dir);
  if (auto st = stack.start(); !st) {
    fmt::print(stderr, "error: {}\n", st.error().message);
    return 1;
  }
  fmt::print("kafka {}  saga API {}  extract {}\n", stack.bootstrap(), stack.saga_url(), stack.url("extract"));
  fmt::print("waiting until starling-extract has pulled every page and each record is loaded or rejected\n");

  // Done when extract finished every page the API served, one of them from a
  // window past the last hour, and the sagas of what it pulled settled.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.settle_s);
  const auto db = stack.db_path(p.name);
  Progress progress("loading " + std::to_string(want.size()) + " observations");
  Served api_side;
  Pulled extracted;
  SagaTotals totals;
  std::string waiting_for = "starling-extract to pull every page of the range";
  bool settled = false;
  while (std::chrono::steady_clock::now() < deadline) {
    api_side = served(api, end);
    if (auto x = pulled(stack.url("extract"), p.name)) extracted = *x;
    auto rows = count_rows(db, p.table);
    progress(std::min<uint64_t>(rows ? static_cast<uint64_t>(rows->rows) : 0, want.size()), want.size());
    if (api_side.covered && api_side.pages > 0 && extracted.pages == api_side.pages) {
      waiting_for = "every saga to complete";
      if (auto t = fetch_totals(stack.saga_url(), p.name)) {
        totals = *t;
        if (totals.accepted == extracted.records + extracted.rejected && totals.in_flight == 0 &&
            totals.in("COMPLETED") == totals.sagas && totals.accepted == totals.loaded + totals.rejected) {
          settled = true;
          break;
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  if (!settled) {
    fmt::print(stderr,
               "error: after {} s still waiting for {}: the API served {} pages, extract finished {} ({} records); "
               "{} of {} sagas COMPLETED, {} events in flight; logs in {}/logs\n",
               o.settle_s, waiting_for, api_side.pages, extracted.pages, extracted.records, totals.in("COMPLETED"),
               totals.sagas, totals.in_flight, stack_opts.data_dir);
  }
  auto rows = count_rows(db, p.table);
  auto ids = simulator::loaded_event_ids(db, p.table);
  if (!rows) fmt::print(stderr, "error: {}\n", rows.error().message);
  if (!ids) fmt::print(stderr, "error: {}\n", ids.error().message);
  if (!rows || !ids) {
    stack.stop();
    return 1;
  }
  const std::set<std::string> loaded(ids->begin(), ids->end());
  const auto of_api = static_cast<uint64_t>(
      std::count_if(want.begin(), want.end(), [&](const std::string& id) { return loaded.contains(id); }));
  const uint64_t n = want.size();
  const bool balanced = totals.accepted == totals.loaded + totals.rejected + totals.in_flight;
  const bool warehouse = static_cast<uint64_t>(rows->rows) == n && rows->rows == rows->distinct_ids && loaded == want &&
                         totals.loaded == n;
  const uint64_t repeats = totals.accepted >= n ? totals.accepted - n : 0;

  fmt::print("\nConsistency report, pipeline {}\n", p.name);
  fmt::print("  {:<36} {:>8}   ({} stations x {} hours)\n", "observations the API has", n, o.stations, o.hours);
  fmt::print("  {:<36} {:>8}   ({} pages in {} windows)\n", "pulled by extract (accepted)", totals.accepted,
             api_side.pages, api_side.windows.size());
  fmt::print("  {:<36} {:>8}   (expected {}: every observation)\n", "loaded, per the sagas", totals.loaded, n);
  fmt::print("  {:<36} {:>8}   ({} distinct event ids, {} of the API's {})\n", fmt::format("rows in {}", p.table),
             rows->rows, rows->distinct_ids, of_api, n);
  fmt::print("  {:<36} {:>8}   (expected {}: repeats of overlapping windows)\n", "rejected with reasons",
             totals.rejected, repeats);
  fmt::print("  {:<36} {:>8}\n", "in flight", totals.in_flight);
  fmt::print("  {:<36} {:>8}   ({} COMPLETED)\n", "sagas", totals.sagas, totals.in("COMPLETED"));
  const bool ok = settled && balanced && totals.in_flight == 0 && warehouse;
  fmt::print(
      "\n{}: accepted {} loaded + rejected + in flight; warehouse {} each of the API's observations exactly "
      "once{}\n",
      ok ? "CONSISTENT" : "INCONSISTENT", balanced ? "=" : "!=", warehouse ? "holds" : "does NOT hold",
      settled ? "" : fmt::format("; not settled within {} s", o.settle_s));
  std::fflush(stdout);
  stack.stop();
  api.stop();
  return ok ? 0 : 1;
}

}  // namespace starling::cli
