#include "services/cli/commands.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "services/clean/rule_config.h"
#include "services/clean/rules.h"
#include "services/cli/completion.h"
#include "services/cli/extract_cmd.h"
#include "services/cli/fixtures.h"
#include "services/cli/groups.h"
#include "services/cli/schema_check.h"
#include "services/cli/tail.h"
#include "services/cli/topics.h"
#include "services/cli/weather_demo.h"
#include "services/common/http.h"
#include "services/common/kafka_properties.h"
#include "services/common/logging.h"
#include "services/common/process.h"
#include "services/common/progress.h"
#include "services/common/shutdown.h"
#include "services/common/text.h"
#include "services/common/time.h"
#include "services/extract/fake_api_cli.h"
#include "services/replay/replay.h"
#include "services/simulator/mqtt_fleet.h"
#include "services/simulator/report.h"
#include "services/simulator/simulate.h"
#include "services/supervisor/stack.h"

namespace starling::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using replay::check_replay_options;
using replay::control_replay;
using replay::read_replay_status;
using replay::replay_process_alive;
using replay::ReplayOptions;
using replay::ReplayStatus;
using replay::run_replay;
using simulator::count_rows;
using simulator::count_rows_postgres;
using simulator::fetch_saga;
using simulator::SimOptions;
using simulator::simulate;
using simulator::simulate_mqtt;
using simulator::wait_until_settled;
using supervisor::Stack;
using supervisor::StackOptions;

std::vector<std::string> default_pipelines() {
  std::vector<std::string> out;
  if (fs::is_directory("pipelines")) {
    for (const auto& e : fs::directory_iterator("pipelines")) {
      // x.test.yaml beside x.yaml holds x's fixture cases, not a pipeline.
      if (e.path().extension() == ".yaml" && !e.path().stem().string().ends_with(".test")) {
        out.push_back(e.path().string());
      }
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

void add_sim_flags(CLI::App* cmd, SimOptions& o) {
  cmd->add_option("--bikes", o.bikes, "Number of e-bikes in the fleet")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--events", o.events, "Events to send in all")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--rate", o.rate, "Events per second (0: as fast as ingest answers)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--batch", o.batch, "Events per HTTP request; each request is one saga")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--connections", o.connections,
                  "Keep-alive connections the requests share; a request waits for a free one, and its latency "
                  "counts from when it was due")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--fault-rate", o.fault_rate, "Share of events with a faulty reading (0..1)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--tricky", o.tricky,
                  "Share of events made tricky but valid or rejected exactly (0..1): a ride id beyond ASCII, a "
                  "reading 3 h late or 30 s out of order, a resend of an earlier request's event (rejected dedupe)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", o.seed, "Random seed; the same seed sends the same events")->capture_default_str();
}

int cmd_check(const std::vector<std::string>& files) {
  int bad = 0;
  for (const auto& f : files) {
    try {
      const auto p = clean::load_checked_pipeline(f);  // the rules' meaning is the clean stage's
      // The parser accepted it: the published schema, which editors use,
      // must too. A problem here is the schema and the parser disagreeing.
      std::ifstream in(f);
      std::stringstream text;
      text << in.rdbuf();
      const auto problems = schema_problems(text.str(), f);
      if (!problems.empty()) {
        for (const auto& line : problems) fmt::print(stderr, "{}\n", line);
        fmt::print(stderr, "{}: the pipeline parser accepts this file but schemas/pipeline.schema.json does not\n", f);
        ++bad;
        continue;
      }
      fmt::print("{}: ok (pipeline {}, {} rules, {} columns)\n", f, p.name, p.rules.size(), p.columns.size());
    } catch (const ConfigError& e) {
      fmt::print(stderr, "{}\n", e.what());
      ++bad;
    }
  }
  return bad == 0 ? 0 : 1;
}

// `starling sagas list|show|report`: the saga API as tables, or --json.
struct SagasArgs {
  std::string url;
  std::string api_key;  // the saga API's, when it was started with --api-keys
  std::string command;  // list, show, report
  std::string id;
  std::string state;
  std::string pipeline;
  std::string since;
  std::string from;
  std::string to;
  std::string window;
  std::size_t limit = 50;
  bool all = false;
  bool as_json = false;
};

Result<json> saga_api_get(const std::string& url, const std::string& api_key) {
  std::map<std::string, std::string> headers;
  if (!api_key.empty()) headers["Authorization"] = "Bearer " + api_key;
  auto resp = http_call("GET", url, {}, headers);
  if (!resp) return std::unexpected(resp.error());
  json body = json::parse(resp->body, nullptr, false);
  if (resp->status != 200) {
    const auto msg =
        body.is_object() && body.contains("error") ? body["error"].value("message", resp->body) : resp->body;
    return fail(
        Errc::kInvalidArgument,
        fmt::format("saga API answered {}: {}{}", resp->status, msg,
                    resp->status == 401 ? (api_key.empty() ? " (give the key: STARLING_SAGA_API_KEY or --api-key)"
                                                           : " (the key given by --api-key or STARLING_SAGA_API_KEY)")
                                        : ""));
  }
  if (body.is_discarded()) return fail(Errc::kInternal, "saga API: not JSON: " + resp->body);
  return body;
}

// Several coordinators (`--url A,B`): each counts the sagas of the
// partitions it owns, so their tallies add up. Adds `b`'s counts into `a`.
void add_tally(json& a, const json& b) {
  if (a.is_null()) {
    a = b;
    return;
  }
  for (const char* k : {"sagas", "accepted", "loaded", "rejected", "in_flight", "removed_by_retention"}) {
    if (b.contains(k)) a[k] = a.value(k, uint64_t{0}) + b[k].get<uint64_t>();
  }
  const json by_state = b.value("by_state", json::object());  // items() of a temporary would dangle
  for (const auto& [state, n] : by_state.items()) {
    a["by_state"][state] = a["by_state"].value(state, uint64_t{0}) + n.get<uint64_t>();
  }
  if (a.contains("balanced")) {
    a["balanced"] = a["accepted"].get<uint64_t>() ==
                    a["loaded"].get<uint64_t>() + a["rejected"].get<uint64_t>() + a["in_flight"].get<uint64_t>();
  }
}

int sagas_show(const SagasArgs& a) {
  auto s = fetch_saga(split_commas(a.url), a.id, a.api_key);
  if (!s) {
    fmt::print(stderr, "error: {}\n", s.error().message);
    return 1;
  }
  if (a.as_json) {
    fmt::print("{}\n", s->dump(2));
    return 0;
  }
  const auto& c = (*s)["counts"];
  fmt::print(
      "saga      {}\npipeline  {}\nstate     {}\ncreated   {}\ntotal     {}\ncleaned   {}\nrejected  {}\nloaded    {}\n"
      "rejected at load {}\nin flight {}\n",
      (*s)["saga_id"].get<std::string>(), (*s)["pipeline"].get<std::string>(), (*s)["state"].get<std::string>(),
      s->value("created", ""), (*s)["total"].get<uint64_t>(), c["cleaned"].get<uint64_t>(),
      c["rejected"].get<uint64_t>(), c["loaded"].get<uint64_t>(), c["rejected_at_load"].get<uint64_t>(),
      c["in_flight"].get<uint64_t>());
  for (const auto& [k, v] : (*s)["reasons"].items()) fmt::print("  reason {:<24} {}\n", k, v.get<uint64_t>());
  if (s->contains("timeline")) {
    fmt::print("timeline\n");
    for (const auto& t : (*s)["timeline"]) {
      fmt::print("  {}  {:<11} -> {:<11} {}\n", t.value("time", ""), t.value("from", ""), t.value("to", ""),
                 t.value("cause", ""));
    }
  }
  return 0;
}

int sagas_list(const SagasArgs& a) {
  std::string q = fmt::format("/v1/sagas?limit={}", a.limit);
  if (!a.state.empty()) q += "&state=" + url_encode(a.state);
  if (!a.pipeline.empty()) q += "&pipeline=" + url_encode(a.pipeline);
  if (!a.since.empty()) q += "&since=" + url_encode(a.since);
  json sagas = json::array();
  json body;
  json totals;
  bool more = false;
  const auto urls = split_commas(a.url);
  for (const auto& url : urls) {
    std::string token;
    do {
      auto page = saga_api_get(url + q + (token.empty() ? "" : "&page_token=" + token), a.api_key);
      if (!page) {
        fmt::print(stderr, "error: {}\n", page.error().message);
        return 1;
      }
      if (token.empty()) add_tally(totals, (*page)["totals"]);
      for (auto& s : (*page)["sagas"]) sagas.push_back(std::move(s));
      token = page->value("next_page_token", "");
      if (urls.size() == 1) body = std::move(*page);
    } while (a.all && !token.empty());
    more = more || !token.empty();
  }
  body["sagas"] = sagas;
  body["totals"] = totals;
  if (a.as_json) {
    fmt::print("{}\n", body.dump(2));
    return 0;
  }
  fmt::print("{:<34} {:<10} {:<12} {:>6} {:>7} {:>8} {:>9}\n", "SAGA", "PIPELINE", "STATE", "TOTAL", "LOADED",
             "REJECTED", "IN FLIGHT");
  for (const auto& s : sagas) {
    const auto& c = s["counts"];
    fmt::print("{:<34} {:<10} {:<12} {:>6} {:>7} {:>8} {:>9}\n", s["saga_id"].get<std::string>(),
               s["pipeline"].get<std::string>(), s["state"].get<std::string>(), s["total"].get<uint64_t>(),
               c["loaded"].get<uint64_t>(), c["rejected"].get<uint64_t>() + c["rejected_at_load"].get<uint64_t>(),
               c["in_flight"].get<uint64_t>());
  }
  const auto& t = body["totals"];
  fmt::print("\n{} sagas:", t["sagas"].get<uint64_t>());
  for (const auto& [k, v] : t["by_state"].items()) fmt::print(" {} {}", v.get<uint64_t>(), k);
  fmt::print("\nevents: accepted {} = loaded {} + rejected {} + in flight {}\n", t["accepted"].get<uint64_t>(),
             t["loaded"].get<uint64_t>(), t["rejected"].get<uint64_t>(), t["in_flight"].get<uint64_t>());
  if (more) fmt::print("(first {} shown; --all for every page)\n", sagas.size());
  return 0;
}

int sagas_report(const SagasArgs& a) {
  if (a.pipeline.empty()) {
    fmt::print(stderr, "error: report needs --pipeline\n");
    return 2;
  }
  std::string q = "/v1/pipelines/" + url_encode(a.pipeline) + "/consistency?";
  if (!a.from.empty()) q += "&from=" + url_encode(a.from);
  if (!a.to.empty()) q += "&to=" + url_encode(a.to);
  if (!a.window.empty()) q += "&window=" + url_encode(a.window);
  Result<json> body = json();
  for (const auto& url : split_commas(a.url)) {
    auto one = saga_api_get(url + q, a.api_key);
    if (!one) {
      fmt::print(stderr, "error: {}\n", one.error().message);
      return 1;
    }
    if (body->is_null()) {
      body = std::move(*one);
      continue;
    }
    // Windows by start; the sagas to check of every instance.
    std::map<int64_t, json> windows;
    for (auto& w : (*body)["windows"]) {
      const auto start = w["start_ms"].get<int64_t>();
      windows[start] = std::move(w);
    }
    for (auto& w : (*one)["windows"]) {
      auto& into = windows[w["start_ms"].get<int64_t>()];
      if (into.is_null()) {
        into = w;
        continue;
      }
      add_tally(into, w);
      for (const auto& s : w["sagas_to_check"]) into["sagas_to_check"].push_back(s);
      if (w.contains("sagas_to_check_not_listed")) {
        into["sagas_to_check_not_listed"] =
            into.value("sagas_to_check_not_listed", uint64_t{0}) + w["sagas_to_check_not_listed"].get<uint64_t>();
      }
    }
    (*body)["windows"] = json::array();
    for (auto& [start, w] : windows) (*body)["windows"].push_back(std::move(w));
    add_tally((*body)["totals"], (*one)["totals"]);
    (*body)["consistent"] = (*body)["consistent"].get<bool>() && (*one)["consistent"].get<bool>();
  }
  const bool consistent = (*body)["consistent"].get<bool>();
  if (a.as_json) {
    fmt::print("{}\n", body->dump(2));
    return consistent ? 0 : 1;
  }
  fmt::print("Consistency of pipeline {}, sagas created {} .. {}\n\n", a.pipeline, (*body)["from"].get<std::string>(),
             (*body)["to"].get<std::string>());
  fmt::print("{:<25} {:>6} {:>9} {:>8} {:>9} {:>9} {:>8}  {}\n", "WINDOW START", "SAGAS", "ACCEPTED", "LOADED",
             "REJECTED", "IN FLIGHT", "REMOVED", "accepted = loaded + rejected + in flight");
  auto row = [](const std::string& label, const json& w, uint64_t removed) {
    fmt::print("{:<25} {:>6} {:>9} {:>8} {:>9} {:>9} {:>8}  {}\n", label, w["sagas"].get<uint64_t>(),
               w["accepted"].get<uint64_t>(), w["loaded"].get<uint64_t>(), w["rejected"].get<uint64_t>(),
               w["in_flight"].get<uint64_t>(), removed, w["balanced"].get<bool>() ? "yes" : "NO");
  };
  for (const auto& w : (*body)["windows"])
    row(w["start"].get<std::string>(), w, w["removed_by_retention"].get<uint64_t>());
  row("total", (*body)["totals"], 0);
  bool header = false;
  for (const auto& w : (*body)["windows"]) {
    for (const auto& s : w["sagas_to_check"]) {
      if (!header) {
        fmt::print("\nSagas not COMPLETED or not balanced:\n");
        header = true;
      }
      fmt::print("  {} {:<11} total {} loaded {} rejected {} in flight {}{}\n    {}\n", s["saga_id"].get<std::string>(),
                 s["state"].get<std::string>(), s["total"].get<uint64_t>(), s["loaded"].get<uint64_t>(),
                 s["rejected"].get<uint64_t>(), s["in_flight"].get<uint64_t>(),
                 s["balanced"].get<bool>() ? "" : "  (does NOT add up)", s["explanation"].get<std::string>());
    }
    if (w.contains("sagas_to_check_not_listed")) {
      fmt::print("  ... and {} more in the window from {}\n", w["sagas_to_check_not_listed"].get<uint64_t>(),
                 w["start"].get<std::string>());
    }
  }
  const auto& by_state = (*body)["totals"]["by_state"];
  fmt::print("\n{}:", consistent ? "CONSISTENT" : "NOT CONSISTENT");
  for (const auto& [k, v] : by_state.items()) fmt::print(" {} {}", v.get<uint64_t>(), k);
  fmt::print("\n");
  return consistent ? 0 : 1;
}

int cmd_sagas(const SagasArgs& a) {
  try {
    if (a.command == "show" || (a.command.empty() && !a.id.empty())) return sagas_show(a);
    if (a.command == "report") return sagas_report(a);
    return sagas_list(a);
  } catch (const json::exception& e) {
    fmt::print(stderr, "error: unexpected answer from the saga API: {}\n", e.what());
    return 1;
  }
}

// `postgres`: the DSN the loaders write to (--sink postgres), "" for SQLite.
int cmd_demo(StackOptions stack_opts, SimOptions sim, int settle_s, const std::string& postgres) {
  Stack stack(stack_opts);
  fmt::print("starting starling-broker and the services in {}\n", stack_opts.data_dir);
  if (auto st = stack.start(); !st) {
    fmt::print(stderr, "error: {}\n", st.error().message);
    return 1;
  }
  const auto ingests = stack.ingest_urls();
  sim.url = fmt::format("{}", fmt::join(ingests, ","));
  // Every ingest instance gets connections of its own.
  sim.connections = std::max(sim.connections, static_cast<int>(ingests.size()));
  fmt::print("kafka {}  ingest {}  saga API {}  console {}/console/\n", stack.bootstrap(), sim.url,
             fmt::join(stack.saga_urls(), ","), stack.saga_url());
  Progress progress("simulating " + std::to_string(sim.bikes) + " e-bikes");
  sim.keep_ids = false;  // the report needs counts only: memory stays flat however many events
  const bool mqtt = !stack.mqtt_address().empty();
  if (mqtt) fmt::print("the fleet publishes each reading over MQTT to {}\n", stack.mqtt_address());
  auto res = mqtt ? simulate_mqtt(sim, stack.mqtt_address(), std::ref(progress)) : simulate(sim, std::ref(progress));
  if (!res) {
    fmt::print(stderr, "error: {}\n", res.error().message);
    return 1;
  }
  if (mqtt) {
    fmt::print(
        "published {} events in {} messages (PUBACK p50 {:.1f} ms, p99 {:.1f} ms); waiting for every saga to "
        "complete\n",
        res->sent, res->sagas, res->latency.percentile_ms(0.5), res->latency.percentile_ms(0.99));
  } else {
    fmt::print(
        "sent {} events in {} sagas over {} connection{} (202 p50 {:.1f} ms, p99 {:.1f} ms from each request's "
        "due time); waiting for every saga to complete\n",
        res->sent, res->sagas, sim.connections, sim.connections == 1 ? "" : "s", res->latency.percentile_ms(0.5),
        res->latency.percentile_ms(0.99));
  }
  auto totals = wait_until_settled(stack.saga_urls(), sim.pipeline, res->sagas, std::chrono::seconds(settle_s));
  const auto& p = stack.pipelines().front();
  auto rows = postgres.empty() ? count_rows(stack.db_path(p.name), p.table) : count_rows_postgres(postgres, p.table);
  if (!totals) fmt::print(stderr, "error: {}\n", totals.error().message);
  if (!rows) fmt::print(stderr, "error: {}\n", rows.error().message);
  if (!totals || !rows) return 1;
  const auto verdict = simulator::check_consistency(*totals, *rows, res->valid, res->faulty);
  const bool balanced = verdict.balanced;
  const bool warehouse = verdict.warehouse;
  fmt::print("\nConsistency report, pipeline {}\n", p.name);
  fmt::print("  {:<36} {:>8}\n", "events sent by the fleet", res->sent);
  fmt::print("  {:<36} {:>8}\n", "accepted by ingest (202 receipts)", res->accepted);
  fmt::print("  {:<36} {:>8}   (expected {}: valid readings)\n", "loaded, per the sagas", totals->loaded, res->valid);
  fmt::print("  {:<36} {:>8}   ({} distinct event ids)\n", fmt::format("rows in {}", p.table), rows->rows,
             rows->distinct_ids);
  fmt::print("  {:<36} {:>8}   (expected {}: faulty readings)\n", "rejected with reasons", totals->rejected,
             res->faulty);
  fmt::print("  {:<36} {:>8}\n", "in flight", totals->in_flight);
  fmt::print("  {:<36} {:>8}   ({} COMPLETED)\n", "sagas", totals->sagas, totals->in("COMPLETED"));
  const bool ok = verdict.ok();
  fmt::print("\n{}: accepted {} loaded + rejected + in flight; warehouse {} the valid events exactly once\n",
             ok ? "CONSISTENT" : "INCONSISTENT", balanced ? "=" : "!=", warehouse ? "holds" : "does NOT hold");
  stack.stop();
  return ok ? 0 : 1;
}

// `starling replay`: the run itself, a dry run, or status/pause/resume/cancel.
struct ReplayArgs {
  ReplayOptions opts;
  std::string pipeline;  // a name or a YAML file
  std::string warm_up = "auto";
  std::string saga_url = "http://127.0.0.1:8081";
  std::string command;  // empty (run), status, pause, resume, cancel
  std::string id;
  bool as_json = false;
  std::vector<std::string> kafka_property_flags;
  std::string kafka_properties_file;
};

std::string time_or_dash(int64_t ms) { return ms > 0 ? rfc3339(ms) : "-"; }

void print_replay_table(const ReplayStatus& s) {
  fmt::print("{:>9}  {:>10}  {:>10}  {:>8}  {:>9}  {:>10}  {:>8}  {:<24}  {:<24}\n", "partition", "from", "to", "read",
             s.dry_run ? "to replay" : "published", "duplicates", "filtered", "first message", "last message");
  int64_t lo = 0;
  int64_t hi = 0;
  for (const auto& p : s.partitions) {
    fmt::print("{:>9}  {:>10}  {:>10}  {:>8}  {:>9}  {:>10}  {:>8}  {:<24}  {:<24}\n", p.partition, p.from, p.to,
               p.next - p.from, p.published, p.duplicates, p.filtered, time_or_dash(p.min_time_ms),
               time_or_dash(p.max_time_ms));
    if (p.min_time_ms > 0 && (lo == 0 || p.min_time_ms < lo)) lo = p.min_time_ms;
    hi = std::max(hi, p.max_time_ms);
  }
  fmt::print("{:>9}  {:>10}  {:>10}  {:>8}  {:>9}  {:>10}\n", "all", "", "", s.offsets_read(), s.published(),
             s.duplicates());
  fmt::print("time range covered: {} .. {}\n", time_or_dash(lo), time_or_dash(hi));
}

int cmd_replay_control(const ReplayArgs& a) {
  if (a.command != "status") {
    if (auto st = control_replay(a.opts.state_dir, a.id, a.command); !st) {
      fmt::print(stderr, "error: {}\n", st.error().message);
      return 1;
    }
    auto now = read_replay_status(a.opts.state_dir, a.id);
    if (now && now->state == "cancelled") {
      fmt::print("replay {}: cancelled; its saga closes over the {} events published\n", a.id, now->published());
    } else {
      fmt::print("replay {}: {} requested\n", a.id, a.command);
    }
    return 0;
  }
  auto s = read_replay_status(a.opts.state_dir, a.id);
  if (!s) {
    fmt::print(stderr, "error: {}\n", s.error().message);
    return 1;
  }
  const bool alive = replay_process_alive(*s);
  const bool gone = (s->state == "running" || s->state == "paused") && !alive;
  // The coordinator's view: the parent saga and its children's progress.
  json saga = nullptr;
  if (auto r = http_call("GET", a.saga_url + "/v1/sagas/" + url_encode(a.id)); r && r->status == 200) {
    saga = json::parse(r->body, nullptr, false);
  }
  if (a.as_json) {
    json out = {{"replay", to_json(*s)}, {"process_alive", alive}, {"saga", saga}};
    fmt::print("{}\n", out.dump(2));
    return 0;
  }
  fmt::print("replay {}  ({} stage, {} -> {}, range {}{})\n", s->id, s->stage, s->source_topic, s->replay_topic,
             s->range, s->saga.empty() ? "" : ", saga " + s->saga);
  fmt::print("command: {}{}  pid {}  started {}  updated {}\n", s->state,
             gone ? " (its process is gone: `starling replay cancel " + s->id + "` closes the saga)" : "", s->pid,
             time_or_dash(s->started_ms), time_or_dash(s->updated_ms));
  if (!s->error.empty()) fmt::print("error: {}\n", s->error);
  fmt::print("read {}/{} offsets, published {} events, {} duplicate ids skipped\n", s->offsets_read(),
             s->offsets_total(), s->published(), s->duplicates());
  if (saga.is_object()) {
    const auto& c = saga["counts"];
    // The total reaches the coordinator with the INGESTED fact, once every event is out.
    const bool publishing = (s->state == "running" || s->state == "paused") && !gone;
    fmt::print("saga: {}  total {}  loaded {}  rejected {}  in flight {}\n", saga.value("state", "?"),
               publishing ? std::string("(known when published)") : std::to_string(saga.value("total", 0)),
               c.value("loaded", 0), c.value("rejected", 0) + c.value("rejected_at_load", 0),
               publishing ? std::string("-") : std::to_string(c.value("in_flight", 0)));
    if (saga.contains("replay")) {
      for (const auto& ch : saga["replay"]["children"]) {
        fmt::print("  child {:<28} {:>7} events  loaded {:>7}  rejected {:>6}  in flight {:>6}\n", ch.value("name", ""),
                   ch.value("total", 0), ch.value("loaded", 0), ch.value("rejected", 0), ch.value("in_flight", 0));
      }
    }
  } else {
    fmt::print("saga: not known to the coordinator at {} yet\n", a.saga_url);
  }
  return 0;
}

// --warm-up: a duration, or "auto": the pipeline's memory horizon (its
// longest fill_last_known max_age), read from its YAML (--pipeline FILE, or
// pipelines/<name>.yaml here). Only the clean stage remembers.
Result<int64_t> replay_warm_up_ms(const ReplayArgs& a) {
  if (a.warm_up != "auto") {
    const auto ms = parse_duration_ms(a.warm_up);
    if (!ms && a.warm_up != "0") {
      return fail(Errc::kInvalidArgument,
                  fmt::format("--warm-up: expected 'auto', 0 or a duration like 10m, got '{}'", a.warm_up));
    }
    return ms.value_or(0);
  }
  if (a.opts.stage != "clean") return 0;
  const bool file = a.pipeline.ends_with(".yaml") || a.pipeline.ends_with(".yml");
  const auto path = file ? a.pipeline : "pipelines/" + a.opts.pipeline + ".yaml";
  if (!std::filesystem::exists(path)) {
    fmt::print(stderr,
               "note: no warm-up ({} not found): the range's first readings per device start without the last known "
               "values the original run had; pass --pipeline FILE or --warm-up DURATION\n",
               path);
    return 0;
  }
  return clean::memory_horizon_ms(load_pipeline(path));
}

int cmd_replay(ReplayArgs a) {
  if (!a.pipeline.empty()) {
    a.opts.pipeline =
        a.pipeline.ends_with(".yaml") || a.pipeline.ends_with(".yml") ? load_pipeline(a.pipeline).name : a.pipeline;
  }
  if (!a.command.empty()) return cmd_replay_control(a);
  a.opts.kafka_properties = cli_kafka_properties(a.kafka_properties_file, a.kafka_property_flags);
  if (auto warm = replay_warm_up_ms(a); !warm) {
    fmt::print(stderr, "error: {}\n", warm.error().message);
    return 2;
  } else {
    a.opts.warm_up_ms = *warm;
  }
  if (auto st = check_replay_options(a.opts); !st) {
    fmt::print(stderr, "error: {}\n", st.error().message);
    return 2;
  }
  Progress bar(a.opts.dry_run ? "reading" : "replaying");
  bool announced = false;
  auto res = run_replay(a.opts, [&](const ReplayStatus& s) {
    if (!announced) {
      announced = true;
      if (!a.as_json) {
        int64_t warm = 0;
        for (const auto& p : s.partitions) warm += p.from - p.warm_from;
        fmt::print(stderr, "replay {}: {} -> {}, {} offsets in {} partitions{}{}\n", s.id, s.source_topic,
                   s.dry_run ? "(dry run)" : s.replay_topic, s.offsets_total(), s.partitions.size(),
                   warm > 0 ? fmt::format(" after {} warm-up offsets ({} before the range)", warm,
                                          clean::format_duration(a.opts.warm_up_ms))
                            : "",
                   s.dry_run ? "" : "; `starling replay status " + s.id + "` from another terminal");
      }
    }
    bar(s.offsets_read(), s.offsets_total(), s.state == "paused" ? "paused" : "");
  });
  if (!res) {
    fmt::print(stderr, "error: {}\n", res.error().message);
    return 1;
  }
  if (a.as_json) {
    fmt::print("{}\n", to_json(*res).dump(2));
  } else {
    print_replay_table(*res);
    if (res->dry_run) {
      fmt::print("dry run: nothing was published\n");
    } else {
      fmt::print("{} {} events as saga {} ({} duplicate ids skipped); follow it with `starling replay status {}`\n",
                 res->state == "cancelled" ? "cancelled after publishing" : "published", res->published(), res->id,
                 res->duplicates(), res->id);
    }
  }
  return 0;
}

}  // namespace

int run(int argc, char** argv) {
  CLI::App app{
      "starling: event-driven data pipelines on Kafka.\n"
      "Devices post events to starling-ingest; starling-clean applies the pipeline's rules; starling-load\n"
      "upserts into SQLite; starling-saga tracks every accepted batch until it is loaded or rejected."};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("starling ") + STARLING_VERSION);
  app.footer(
      "Exit codes: 0 success; 1 the work failed or found a problem (a report not CONSISTENT, a failing\n"
      "fixture, Kafka unreachable); 2 bad flags, a bad pipeline file or a refused setting (the message\n"
      "names the flag, file and line).");
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off")->capture_default_str();

  StackOptions stack_opts;
  stack_opts.bin_dir = executable_dir();
  std::string instances_spec;
  std::vector<CLI::Option*> mqtt_opts;
  std::string sink;
  std::string postgres_dsn;
  auto add_stack_flags = [&](CLI::App* cmd) {
    cmd->add_option("--pipeline", stack_opts.pipeline_files, "Pipeline YAML (repeatable; default: pipelines/*.yaml)");
    cmd->add_option("--kafka", stack_opts.kafka, "Use this Kafka (host:port) instead of starting starling-broker")
        ->envname("STARLING_KAFKA_BOOTSTRAP");
    cmd->add_option("--data-dir", stack_opts.data_dir, "Where the broker and the services keep their state");
    cmd->add_option("--service-log-level", stack_opts.log_level, "Log level of the services")->capture_default_str();
    cmd->add_option("--instances", instances_spec,
                    "Instances per stage, e.g. clean=2,load=2,saga=2,ingest=2 (default 1 each, at most 16). A "
                    "stage's instances share its consumer group and split the partitions; each has its own data "
                    "folder, and a pipeline's loaders share its SQLite file. Ingest instances each listen on a port "
                    "(all printed); a retry with the same Idempotency-Key may go to any of them.");
    mqtt_opts.push_back(
        cmd->add_option("--mqtt", stack_opts.mqtt,
                        "Also take device events over MQTT: --mqtt HOST:PORT reads that mosquitto; --mqtt alone "
                        "starts a local one (Debian's mosquitto, loopback, a free port, sessions kept in the data "
                        "folder). Devices publish to starling/<pipeline>/<device_id>/events")
            ->expected(0, 1));
    cmd->add_option("--sink", sink,
                    "Where the loaders write: sqlite (the default: <data-dir>/load.<p>/<p>.db) or "
                    "postgres (with --postgres)")
        ->check(CLI::IsMember({"sqlite", "postgres"}));
    cmd->add_option("--postgres", postgres_dsn, "PostgreSQL connection string (libpq) for --sink postgres")
        ->envname("STARLING_POSTGRES_DSN");
    add_kafka_property_flags(*cmd, stack_opts.kafka_properties, stack_opts.kafka_properties_file);
  };

  auto* up = app.add_subcommand("up", "Run the broker and all services as supervised processes until Ctrl-C");
  add_stack_flags(up);
  uint16_t up_ingest_port = 8080;
  uint16_t up_saga_port = 8081;
  up->add_option("--ingest-port", up_ingest_port, "HTTP port of starling-ingest")->capture_default_str();
  up->add_option("--saga-port", up_saga_port, "HTTP port of the saga API")->capture_default_str();

  auto* demo = app.add_subcommand(
      "demo",
      "The main job: start everything in a fresh folder, feed the (first) pipeline, print a consistency report; "
      "exit 0 only if CONSISTENT. An e-bike pipeline (pipelines/ecowheels.yaml) gets a simulated fleet posting to "
      "ingest; a pipeline with a source: http_poll: block (pipelines/weather.yaml) gets a fake weather API on a free "
      "port, which starling-extract polls (the report then checks the warehouse against every observation it has).\n"
      "  starling demo --pipeline pipelines/ecowheels.yaml --events 2000\n"
      "  starling demo --pipeline pipelines/weather.yaml --stations 10 --hours 24");
  add_stack_flags(demo);
  SimOptions sim;
  add_sim_flags(demo, sim);
  int settle_s = 120;
  demo->add_option("--settle-timeout", settle_s,
                   "Seconds to wait for every saga to complete (the weather demo: for the whole range to be pulled, "
                   "and each record loaded or rejected)")
      ->capture_default_str();
  WeatherDemoOptions weather_demo;
  const std::string weather_group = "Weather demo (a pipeline with a source)";
  demo->add_option("--stations", weather_demo.stations, "Weather stations the fake API serves")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000))
      ->group(weather_group);
  // weather.yaml's clean rules refuse readings older than 7 days.
  demo->add_option("--hours", weather_demo.hours, "Hours of observations, ending at the current hour (at most 144)")
      ->capture_default_str()
      ->check(CLI::Range(1, 144))
      ->group(weather_group);
  demo->add_option("--page-size", weather_demo.page_size, "Observations per page of the fake API")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000))
      ->group(weather_group);

  auto* fake_api = app.add_subcommand(
      "fake-api",
      "Serve a simulated external API that starling-extract can poll (the same command and flags as "
      "starling-fake-api), until Ctrl-C:\n"
      "  starling fake-api weather --listen 127.0.0.1:8089   (pipelines/weather.yaml polls it by default)");
  fake_api->require_subcommand(1);
  extract::FakeWeatherFlags fake_weather;
  extract::add_fake_weather_command(*fake_api, fake_weather);

  auto* simulate_cmd = app.add_subcommand("simulate", "Post a simulated e-bike fleet's telemetry to a running ingest");
  add_sim_flags(simulate_cmd, sim);
  simulate_cmd
      ->add_option("--url", sim.url,
                   "starling-ingest base URL; several instances comma-separated: connection i posts to the "
                   "(i mod n)-th, so --connections must be at least n")
      ->capture_default_str();
  simulate_cmd->add_option("--pipeline", sim.pipeline, "Pipeline to post to")->capture_default_str();
  std::string simulate_mqtt_address;
  simulate_cmd
      ->add_option("--mqtt", simulate_mqtt_address,
                   "Publish over MQTT to this mosquitto (host:port) instead of posting to --url: each reading one "
                   "QoS 1 message to starling/<pipeline>/<device_id>/events (--batch and --connections do not apply)")
      ->excludes(simulate_cmd->get_option("--url"));

  auto* sagas = app.add_subcommand("sagas", "Saga states: list (the default), show ID, report --pipeline P");
  SagasArgs sagas_args;
  sagas_args.url = "http://127.0.0.1:8081";
  sagas->add_option("id", sagas_args.id, "A saga id: the same as `sagas show ID`");
  sagas
      ->add_option("--url", sagas_args.url,
                   "Saga API base URL; with several coordinators, every one comma-separated: each counts the sagas "
                   "of its own partitions, and the totals are added")
      ->capture_default_str();
  // The key goes into a request header: a control character (a pasted
  // newline) would split the header, so it is refused before any request.
  const CLI::Validator printable_key(
      [](const std::string& key) -> std::string {
        const auto bad = std::find_if(key.begin(), key.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
        return bad == key.end() ? std::string()
                                : fmt::format("the key has a control character (byte {}): a header cannot carry it",
                                              std::distance(key.begin(), bad) + 1);
      },
      "KEY");
  sagas
      ->add_option("--api-key", sagas_args.api_key,
                   "The saga API's key, when it was started with --api-keys (sent as 'Authorization: Bearer'); "
                   "prefer the variable: flags show in ps")
      ->envname("STARLING_SAGA_API_KEY")
      ->check(printable_key);
  sagas->add_option("--state", sagas_args.state,
                    "Only sagas in this state (ACCEPTED, IN_FLIGHT, COMPLETED, STALLED, OVERDUE, FAILED, COMPENSATED)");
  sagas->add_option("--pipeline", sagas_args.pipeline, "Only sagas of this pipeline");
  sagas->add_flag("--json", sagas_args.as_json, "Print JSON instead of a table");
  auto* sagas_list_cmd = sagas->add_subcommand("list", "Sagas with totals, in saga-id order (paged)");
  sagas_list_cmd->add_option("--since", sagas_args.since,
                             "Only sagas created at or after this time (RFC 3339 or Unix ms)");
  sagas_list_cmd->add_option("--limit", sagas_args.limit, "Sagas per page (at most 1000)")->capture_default_str();
  sagas_list_cmd->add_flag("--all", sagas_args.all, "Follow the page tokens and list every match");
  auto* sagas_show_cmd = sagas->add_subcommand("show", "One saga: counts per step, reasons, timeline");
  sagas_show_cmd->add_option("id", sagas_args.id, "The saga id")->required();
  auto* sagas_report_cmd = sagas->add_subcommand(
      "report",
      "Consistency per window of creation time: accepted = loaded + rejected + in flight, and the sagas to "
      "look at; exit code 1 when not consistent");
  sagas_report_cmd->add_option("--from", sagas_args.from, "Start (RFC 3339 or Unix ms; default: 24 h before --to)");
  sagas_report_cmd->add_option("--to", sagas_args.to, "End (RFC 3339 or Unix ms; default: now)");
  sagas_report_cmd->add_option("--window", sagas_args.window, "Window length in whole hours (1h, 6h, 1d; default 1h)");
  // The shared options also on each subcommand, so its --help lists them;
  // fallthrough keeps `starling sagas --json list` working too.
  for (auto* sub : {sagas_list_cmd, sagas_show_cmd, sagas_report_cmd}) {
    sub->fallthrough();
    sub->add_option("--url", sagas_args.url, "Saga API base URL (several: comma-separated)")->capture_default_str();
    sub->add_option("--api-key", sagas_args.api_key, "The saga API's key (or STARLING_SAGA_API_KEY)")
        ->envname("STARLING_SAGA_API_KEY")
        ->check(printable_key);
    sub->add_flag("--json", sagas_args.as_json, "Print JSON instead of a table");
  }
  for (auto* sub : {sagas_list_cmd, sagas_report_cmd}) {
    sub->add_option("--pipeline", sagas_args.pipeline,
                    sub == sagas_report_cmd ? "The pipeline (required)" : "Only sagas of this pipeline");
  }
  sagas_list_cmd->add_option("--state", sagas_args.state, "Only sagas in this state");

  auto* replay = app.add_subcommand(
      "replay",
      "Replay a range of a stage's input topic into its replay topic (<p>.raw.replay for clean, <p>.clean.replay for "
      "load), beside live traffic, as one new saga of kind REPLAY linked to the originals.\n"
      "  starling replay --pipeline ecowheels --from 2026-11-23T10:00:00Z --to 2026-11-23T11:00:00Z\n"
      "  starling replay --pipeline ecowheels --saga 3f2a... --stage clean --rate 500\n"
      "  starling replay status ID | pause ID | resume ID | cancel ID");
  ReplayArgs replay_args;
  replay_args.opts.kafka = "127.0.0.1:9092";
  replay_args.opts.state_dir = "starling-data/replays";
  auto add_replay_common = [&](CLI::App* cmd) {
    cmd->add_option("--kafka", replay_args.opts.kafka, "Bootstrap servers")
        ->capture_default_str()
        ->envname("STARLING_KAFKA_BOOTSTRAP");
    cmd->add_option("--state-dir", replay_args.opts.state_dir,
                    "Where each replay keeps <id>.json (its progress and control)")
        ->capture_default_str()
        ->envname("STARLING_REPLAY_STATE_DIR");
    cmd->add_flag("--json", replay_args.as_json, "Print JSON instead of text");
    add_kafka_property_flags(*cmd, replay_args.kafka_property_flags, replay_args.kafka_properties_file);
  };
  add_replay_common(replay);
  replay->add_option("--pipeline", replay_args.pipeline, "Pipeline name or YAML file");
  replay->add_option("--from", replay_args.opts.from,
                     "Start: a time (RFC 3339 or Unix ms; found with ListOffsets), @N (offset N in every partition), "
                     "P@N,P@N (per partition; others are skipped) or 'beginning'");
  replay->add_option("--to", replay_args.opts.to,
                     "End, exclusive: the same forms, or 'end' (the default: the end as the replay starts)");
  replay->add_option("--stage", replay_args.opts.stage, "clean (replays <p>.raw) or load (replays <p>.clean)")
      ->capture_default_str();
  replay->add_option("--saga", replay_args.opts.saga,
                     "Replay only this saga's events (the range defaults to the whole topic)");
  replay->add_flag("--dry-run", replay_args.opts.dry_run,
                   "Read the range and print counts per partition and the time range covered; publish nothing");
  replay->add_option("--rate", replay_args.opts.rate, "Events per second (0: no limit)")->capture_default_str();
  replay
      ->add_option("--warm-up", replay_args.warm_up,
                   "--stage clean: first send the events of this long before the range as state only, so each "
                   "device's last known values (fill_last_known) are the original run's; 'auto' takes the "
                   "pipeline's longest max_age from its YAML, 0 turns it off")
      ->capture_default_str();
  replay->add_option("--saga-url", replay_args.saga_url, "Saga API, for `status`")->capture_default_str();
  std::vector<CLI::App*> replay_subs;
  for (const auto& [name, help] :
       {std::pair{"status", "Progress of a replay: the command's state file and the saga's children"},
        std::pair{"pause", "Pause a running replay between batches"}, std::pair{"resume", "Resume a paused replay"},
        std::pair{"cancel", "Stop a replay; its saga closes over what was published"}}) {
    auto* sub = replay->add_subcommand(name, help);
    sub->add_option("id", replay_args.id, "The replay id (its saga id, replay-...)")->required();
    sub->fallthrough();
    add_replay_common(sub);
    if (std::string(name) == "status")
      sub->add_option("--saga-url", replay_args.saga_url, "Saga API")->capture_default_str();
    replay_subs.push_back(sub);
  }
  replay->require_subcommand(0, 1);

  auto* groups = app.add_subcommand(
      "groups",
      "How far each stage is behind: per consumer group and partition, the committed offset, the log end, the lag "
      "and how old the oldest unprocessed event is (read from Kafka, as kafka-consumer-groups reads it)");
  GroupsArgs groups_args;
  groups->add_option("--kafka", groups_args.kafka, "Bootstrap servers")
      ->capture_default_str()
      ->envname("STARLING_KAFKA_BOOTSTRAP");
  groups->add_option("--pipeline", groups_args.pipelines,
                     "Pipeline name or YAML file (repeatable; default: the pipelines in pipelines/*.yaml)");
  groups->add_flag("--json", groups_args.as_json, "Print JSON instead of a table");
  add_kafka_property_flags(*groups, groups_args.kafka_property_flags, groups_args.kafka_properties_file);

  auto* topics = app.add_subcommand(
      "topics", "Kafka topics: list (the default), describe TOPIC (partitions, watermarks, configs), create TOPIC");
  TopicsArgs topics_args;
  auto add_topics_common = [&](CLI::App* cmd) {
    cmd->add_option("--kafka", topics_args.kafka, "Bootstrap servers")
        ->capture_default_str()
        ->envname("STARLING_KAFKA_BOOTSTRAP");
    cmd->add_flag("--json", topics_args.as_json, "Print JSON instead of a table");
    add_kafka_property_flags(*cmd, topics_args.kafka_property_flags, topics_args.kafka_properties_file);
  };
  add_topics_common(topics);
  auto* topics_list_cmd =
      topics->add_subcommand("list", "Every topic: partitions, replication, records stored and the log end");
  auto* topics_describe_cmd = topics->add_subcommand(
      "describe",
      "One topic: each partition's leader, replicas and low/high watermarks, and its configs; exit 1 "
      "when it does not exist");
  topics_describe_cmd->add_option("topic", topics_args.topic, "The topic")->required();
  auto* topics_create_cmd =
      topics->add_subcommand("create", "Create a topic; exit 1 when it exists, 2 for a config the broker refuses");
  topics_create_cmd->add_option("topic", topics_args.topic, "The topic")->required();
  topics_create_cmd->add_option("--partitions", topics_args.partitions, "Number of partitions")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  topics_create_cmd->add_option("--replication-factor", topics_args.replication, "Replicas of each partition")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  topics_create_cmd->add_option("--config", topics_args.configs,
                                "A topic config as key=value, e.g. retention.ms=86400000 (repeatable)");
  for (auto* sub : {topics_list_cmd, topics_describe_cmd, topics_create_cmd}) {
    sub->fallthrough();
    add_topics_common(sub);
  }
  topics->require_subcommand(0, 1);

  auto* tail = app.add_subcommand(
      "tail",
      "Print a topic's records as JSON lines, decoded as the Protobuf message the topic carries: envelopes with "
      "their payload (<p>.raw, <p>.clean, .replay), rejected records (<p>.rejected, <p>.dlq), saga facts "
      "(starling.saga) and outcomes (starling.saga.outcomes). A record that does not decode is printed with "
      "value_base64 and an error. Stops at the end of the partitions as they were at start, unless --follow.\n"
      "  starling tail ecowheels.clean --from 10m --max 20\n"
      "  starling tail starling.saga --follow");
  TailArgs tail_args;
  tail->add_option("topic", tail_args.topic, "The topic")->required();
  tail->add_option("--from", tail_args.from,
                   "Start at this time: RFC 3339, Unix ms, or a duration back from now (90s, 10m, 2h, 1d); "
                   "default: the beginning");
  tail->add_flag("--follow,-f", tail_args.follow, "Keep printing new records until Ctrl-C (SIGINT or SIGTERM)");
  tail->add_option("--max", tail_args.max, "Stop after this many records (0: no limit)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  tail->add_option("--type", tail_args.type,
                   std::string("Decode as this instead of by topic name: ") + kTailTypes +
                       ", or a message's full name (starling.v1.RideTelemetry)");
  tail->add_option("--kafka", tail_args.kafka, "Bootstrap servers")
      ->capture_default_str()
      ->envname("STARLING_KAFKA_BOOTSTRAP");
  add_kafka_property_flags(*tail, tail_args.kafka_property_flags, tail_args.kafka_properties_file);

  auto* completion =
      app.add_subcommand("completion", "Print a shell completion script: source <(starling completion bash), or zsh");
  std::string completion_shell = "bash";
  completion->add_option("shell", completion_shell, "bash or zsh")
      ->capture_default_str()
      ->check(CLI::IsMember({"bash", "zsh"}));

  auto* check = app.add_subcommand("check", "Validate pipeline files; errors name the line");
  std::vector<std::string> check_files;
  check->add_option("files", check_files, "Pipeline YAML files")->required();
  ExtractArgs extract_args;
  add_extract_command(app, extract_args);

  auto* test_cmd = app.add_subcommand(
      "test", "Run the fixture cases beside each pipeline (x.yaml → x.test.yaml); exit 1 on a failure");
  std::vector<std::string> test_files;
  test_cmd->add_option("files", test_files, "Pipeline YAML files")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are exit 0; any refused flag is 2, as the footer
    // says (CLI11's own codes, 105 for a value a check refused, would not).
    return app.exit(e) == 0 ? 0 : 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress goes to stderr; keep the order readable
  setup_logging("starling", log_level);
  install_shutdown_handler();
  if (stack_opts.pipeline_files.empty()) stack_opts.pipeline_files = default_pipelines();

  try {
    if (*check) return cmd_check(check_files);
    if (*fake_api) return extract::run_fake_weather(fake_weather, "starling fake-api");
    if (*topics) {
      for (auto* sub : {topics_list_cmd, topics_describe_cmd, topics_create_cmd}) {
        if (*sub) topics_args.command = sub->get_name();
      }
      return cmd_topics(topics_args);
    }
    if (*tail) return cmd_tail(tail_args);
    if (*completion) {
      fmt::print("{}", completion_shell == "zsh" ? zsh_completion(app, "starling") : bash_completion(app, "starling"));
      return 0;
    }
    if (*groups) return cmd_groups(groups_args, default_pipelines());
    if (*extract_args.extract) return cmd_extract(extract_args);
    if (*test_cmd) return run_fixture_files(test_files);
    if (*sagas) {
      for (auto* sub : {sagas_list_cmd, sagas_show_cmd, sagas_report_cmd}) {
        if (*sub) sagas_args.command = sub->get_name();
      }
      return cmd_sagas(sagas_args);
    }
    if (*replay) {
      for (auto* sub : replay_subs) {
        if (*sub) replay_args.command = sub->get_name();
      }
      return cmd_replay(replay_args);
    }
    if (*simulate_cmd) {
      Progress progress("simulating " + std::to_string(sim.bikes) + " e-bikes");
      sim.keep_ids = false;
      const bool mqtt = !simulate_mqtt_address.empty();
      auto res =
          mqtt ? simulate_mqtt(sim, simulate_mqtt_address, std::ref(progress)) : simulate(sim, std::ref(progress));
      if (!res) {
        fmt::print(stderr, "error: {}\n", res.error().message);
        return 1;
      }
      if (mqtt) {
        fmt::print("published {} events in {} messages ({} faulty) to {} in {:.1f} s\n", res->sent, res->sagas,
                   res->faulty, simulate_mqtt_address, res->seconds);
        fmt::print("PUBACK latency from each message's due time: p50 {:.1f} ms  p99 {:.1f} ms  max {:.1f} ms\n",
                   res->latency.percentile_ms(0.50), res->latency.percentile_ms(0.99),
                   static_cast<double>(res->latency.max_us()) / 1000.0);
        return 0;
      }
      fmt::print("sent {} events in {} sagas ({} faulty, {} retries) over {} connections in {:.1f} s\n", res->sent,
                 res->sagas, res->faulty, res->retries, sim.connections, res->seconds);
      fmt::print(
          "202 latency from each request's due time: p50 {:.1f} ms  p99 {:.1f} ms  p99.9 {:.1f} ms  max {:.1f} ms"
          " ({} of {} requests started late)\n",
          res->latency.percentile_ms(0.50), res->latency.percentile_ms(0.99), res->latency.percentile_ms(0.999),
          static_cast<double>(res->latency.max_us()) / 1000.0, res->late_starts, res->requests);
      return 0;
    }
    if (stack_opts.pipeline_files.empty()) {
      fmt::print(stderr, "error: no pipeline: pass --pipeline FILE or run from a folder with pipelines/*.yaml\n");
      return 2;
    }
    (void)cli_kafka_properties(stack_opts.kafka_properties_file, stack_opts.kafka_properties);  // refused: exit 2
    if (std::any_of(mqtt_opts.begin(), mqtt_opts.end(), [](const CLI::Option* o) { return o->count() > 0; }) &&
        stack_opts.mqtt.empty()) {
      stack_opts.mqtt = supervisor::kLocalMqtt;
    }
    if (sink == "postgres" && postgres_dsn.empty()) {
      fmt::print(stderr, "error: --sink postgres needs --postgres DSN (or STARLING_POSTGRES_DSN)\n");
      return 2;
    }
    if (!sink.empty()) stack_opts.load_args.insert(stack_opts.load_args.end(), {"--sink", sink});
    if (!postgres_dsn.empty()) stack_opts.load_args.insert(stack_opts.load_args.end(), {"--postgres", postgres_dsn});
    if (auto inst = supervisor::parse_instances(instances_spec); inst) {
      stack_opts.instances = std::move(*inst);
    } else {
      fmt::print(stderr, "error: {}\n", inst.error().message);
      return 2;
    }
    if (*demo) {
      // The first pipeline says which demo: one that pulls gets the fake
      // API; one without a source needs the e-bike fleet's records.
      const auto& file = stack_opts.pipeline_files.front();
      const auto first = load_pipeline(file);
      const bool pulls = first.source || first.message_type != "starling.v1.RideTelemetry";
      if (pulls) {
        if (auto why = weather_demo_refusal(first, file); !why.empty()) {
          fmt::print(stderr, "error: {}\n", why);
          return 2;
        }
      }
      if (stack_opts.data_dir.empty()) {
        char tmpl[] = "/tmp/starling-demo-XXXXXX";
        stack_opts.data_dir = ::mkdtemp(tmpl);
      }
      if (pulls) {
        weather_demo.seed = sim.seed;
        weather_demo.settle_s = settle_s;
        return cmd_weather_demo(stack_opts, weather_demo);
      }
      const bool to_postgres = sink == "postgres" || (sink.empty() && first.sink == "postgres");
      if (to_postgres && postgres_dsn.empty()) {
        fmt::print(stderr, "error: the demo reads the warehouse back: give --postgres DSN for the PostgreSQL sink\n");
        return 2;
      }
      return cmd_demo(stack_opts, sim, settle_s, to_postgres ? postgres_dsn : "");
    }
    if (*up) {
      if (stack_opts.data_dir.empty()) stack_opts.data_dir = "starling-data";
      stack_opts.ingest_port = up_ingest_port;
      stack_opts.saga_port = up_saga_port;
      Stack stack(stack_opts);
      if (auto st = stack.start(); !st) {
        fmt::print(stderr, "error: {}\n", st.error().message);
        return 1;
      }
      fmt::print("starling is up. kafka {}  ingest {}  saga API {}\n", stack.bootstrap(),
                 fmt::join(stack.ingest_urls(), ","), fmt::join(stack.saga_urls(), ","));
      if (!stack.broker_metrics().empty()) fmt::print("broker metrics http://{}/metrics\n", stack.broker_metrics());
      fmt::print("console {}/console/\n", stack.saga_url());
      if (stack.instances("saga") > 1) {
        fmt::print("each saga API counts the sagas of its own partitions: `starling sagas --url {}` adds them up\n",
                   fmt::join(stack.saga_urls(), ","));
      }
      fmt::print("logs in {}/logs. Ctrl-C stops everything.\n", stack_opts.data_dir);
      wait_for_shutdown();
      fmt::print("stopping...\n");
      stack.stop();
      return 0;
    }
  } catch (const ConfigError& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 2;
  }
  return 0;
}

}  // namespace starling::cli
