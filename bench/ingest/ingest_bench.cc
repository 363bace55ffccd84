// Front-door throughput (issue 4): the real starling-ingest against a trivial
// Beast handler that answers 202 `{}` and does no work, with the same load
// tool, connections and bodies, in the same run.
//
//   ingest:  the starling-ingest process (release build) on a starling-broker
//            on loopback; each 202 means every event of the request is
//            persisted (idempotent producer, acks=all).
//   trivial: an HttpServer (services/common/http.h) in this process whose
//            handler answers 202 `{}` at once: the HTTP upper bound here.
//
// The load tool is our own, on Boost.Asio: --connections keep-alive
// connections, each posting back to back (closed loop) for --seconds after
// --warmup seconds, one io thread. Scenarios: --batch events per request, and
// single-event requests. Only 127.0.0.1; everything started here is stopped.
//
//   build/ingest-release/bin/ingest_bench [--connections 8] [--seconds 10] [--batch 100] [--runs 3]

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <utility>  // before asio: Boost 1.74's awaitable.hpp uses std::exchange without it
#include <vector>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/http.h"
#include "services/common/pipeline.h"
#include "services/common/process.h"
#include "services/simulator/simulate.h"
#include "services/supervisor/stack.h"
#include "starling/v1/envelope.pb.h"

namespace {

using namespace starling;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

struct LoadResult {
  uint64_t ok = 0;      // 2xx answers completed inside the window
  uint64_t errors = 0;  // non-2xx answers and broken connections inside the window
  double seconds = 0;
  std::vector<uint32_t> latencies_us;  // of the 2xx answers inside the window
  int first_bad_status = 0;
  std::string first_bad_body;

  double percentile_ms(double q) {
    if (latencies_us.empty()) return 0;
    auto k = static_cast<std::size_t>(q * static_cast<double>(latencies_us.size() - 1));
    std::nth_element(latencies_us.begin(), latencies_us.begin() + static_cast<std::ptrdiff_t>(k), latencies_us.end());
    return latencies_us[k] / 1000.0;
  }
};

// Shared by every connection of one load run; touched only on the io thread.
struct LoadState {
  const std::vector<std::string>* requests = nullptr;  // whole serialized requests, cycled through
  Clock::time_point measure_from;
  Clock::time_point stop_at;
  LoadResult result;
  int live = 0;  // connections still looping
};

// One keep-alive connection in a closed loop: write a request, read the
// answer, next request. Reconnects after an error (counted) until stop_at.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::io_context& ioc, tcp::endpoint ep, LoadState& st, std::size_t first)
      : socket_(ioc), ep_(ep), st_(st), next_(first) {}

  void start() {
    ++st_.live;
    connect();
  }

 private:
  void connect() {
    socket_.async_connect(ep_, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->failed();
      self->socket_.set_option(tcp::no_delay(true));
      self->send();
    });
  }

  void send() {
    const auto now = Clock::now();
    if (now >= st_.stop_at) return finish();
    started_ = now;
    const auto& req = (*st_.requests)[next_++ % st_.requests->size()];
    asio::async_write(socket_, asio::buffer(req), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->failed();
      self->parser_.emplace();
      self->parser_->body_limit(1 << 20);
      http::async_read(self->socket_, self->buffer_, *self->parser_,
                       [self](beast::error_code ec, std::size_t) { self->answered(ec); });
    });
  }

  void answered(beast::error_code ec) {
    if (ec) return failed();
    const auto done = Clock::now();
    auto& res = parser_->get();
    const int status = res.result_int();
    if (started_ >= st_.measure_from && done <= st_.stop_at) {
      if (status / 100 == 2) {
        ++st_.result.ok;
        st_.result.latencies_us.push_back(
            static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::microseconds>(done - started_).count()));
      } else {
        ++st_.result.errors;
      }
    }
    if (status / 100 != 2 && st_.result.first_bad_status == 0) {
      st_.result.first_bad_status = status;
      st_.result.first_bad_body = res.body().substr(0, 300);
    }
    if (!res.keep_alive()) {
      beast::error_code ignored;
      socket_.close(ignored);
      buffer_.clear();
      if (Clock::now() >= st_.stop_at) return finish();
      return connect();
    }
    send();
  }

  void failed() {
    if (Clock::now() >= st_.measure_from && Clock::now() <= st_.stop_at) ++st_.result.errors;
    beast::error_code ignored;
    socket_.close(ignored);
    buffer_.clear();
    if (Clock::now() >= st_.stop_at) return finish();
    // Not a tight loop against a dead server.
    auto t = std::make_shared<asio::steady_timer>(socket_.get_executor(), 10ms);
    t->async_wait([self = shared_from_this(), t](beast::error_code) { self->connect(); });
  }

  void finish() {
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    --st_.live;
  }

  tcp::socket socket_;
  tcp::endpoint ep_;
  LoadState& st_;
  std::size_t next_;
  beast::flat_buffer buffer_;
  std::optional<http::response_parser<http::string_body>> parser_;
  Clock::time_point started_;
};

// Closed loop over `connections` connections for warmup + seconds; one io
// thread, so the load tool takes at most one core.
LoadResult run_load(uint16_t port, const std::vector<std::string>& requests, int connections, double warmup_s,
                    double seconds) {
  asio::io_context ioc;
  LoadState st;
  st.requests = &requests;
  const auto t0 = Clock::now();
  st.measure_from = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(warmup_s));
  st.stop_at = st.measure_from + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
  for (int c = 0; c < connections; ++c) {
    std::make_shared<Connection>(ioc, ep, st, static_cast<std::size_t>(c) * 7919)->start();
  }
  // In-flight requests at stop_at finish (uncounted); bound the wait anyway.
  ioc.run_until(st.stop_at + 30s);
  st.result.seconds = seconds;
  return std::move(st.result);
}

// Serialized POSTs, one per body, for the given port (Host header).
std::vector<std::string> build_requests(const std::vector<std::string>& bodies, const std::string& pipeline,
                                        uint16_t port) {
  std::vector<std::string> out;
  out.reserve(bodies.size());
  for (const auto& b : bodies) {
    out.push_back(
        fmt::format("POST /v1/pipelines/{}/events HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n"
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                    pipeline, port, b.size(), b));
  }
  return out;
}

struct Row {
  std::string scenario;
  std::string target;
  int events_per_request = 1;
  double req_s = 0;
  double p50 = 0;
  double p99 = 0;
  uint64_t errors = 0;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "ingest_bench: starling-ingest (202 = persisted on starling-broker) against a trivial Beast handler that answers "
      "202 at once, with the same closed-loop keep-alive load, in one run. Prints req/s, events/s, p50/p99 and the "
      "ratio to the trivial handler."};
  int connections = 8;
  double seconds = 10;
  double warmup = 2;
  int batch = 100;
  int runs = 3;
  int server_threads = 2;
  int distinct = 64;
  double fault_rate = 0.05;
  bool full_stack = false;
  bool keep = false;
  std::string pipeline_file = "pipelines/ecowheels.yaml";
  std::string only;
  app.add_option("--connections", connections, "Keep-alive connections, each posting back to back")
      ->check(CLI::Range(1, 10'000))
      ->capture_default_str();
  app.add_option("--seconds", seconds, "Measured seconds per scenario, target and run")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--warmup", warmup, "Seconds of load before measuring")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--batch", batch, "Events per request in the batch scenario")
      ->check(CLI::Range(1, 10'000))
      ->capture_default_str();
  app.add_option("--runs", runs, "Runs; the table shows the median run by req/s for each row")
      ->check(CLI::Range(1, 99))
      ->capture_default_str();
  app.add_option("--server-threads", server_threads, "HTTP threads of both servers (starling-ingest --threads)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--distinct-bodies", distinct, "Different pre-built bodies per scenario, cycled through")
      ->check(CLI::Range(1, 100'000))
      ->capture_default_str();
  app.add_option("--fault-rate", fault_rate,
                 "Share of simulator records with a reading the clean rules reject "
                 "(ingest accepts them: they convert to the type)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--pipeline", pipeline_file, "Pipeline posted to")->check(CLI::ExistingFile)->capture_default_str();
  app.add_option("--only", only, "Run one scenario: batch or single")->check(CLI::IsMember({"batch", "single"}));
  app.add_flag(
      "--full-stack", full_stack,
      "Run the whole pipeline (supervisor::Stack: broker, ingest, clean, load, saga) instead of broker + ingest "
      "only; downstream stages then share the cores with ingest");
  app.add_flag("--keep", keep, "Keep the temporary directory (broker and ingest logs, data)");
  CLI11_PARSE(app, argc, argv);

  // Nothing else here names a generated type, and the linker would drop
  // libstarling_schemas (--as-needed): load_pipeline finds the pipeline's
  // message type in the generated pool, which that library fills.
  (void)v1::Envelope::descriptor();
  const auto p = load_pipeline(pipeline_file);
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("ingest-bench-{}", ::getpid());
  std::filesystem::create_directories(dir);
  const auto bin = executable_dir();

  // Bodies: the simulator's fleet records, as `starling simulate` posts them.
  simulator::SimOptions sim;
  sim.pipeline = p.name;
  sim.bikes = 200;
  sim.fault_rate = fault_rate;
  sim.events = distinct * batch + distinct;
  const auto events = simulator::generate_events(sim);
  std::vector<std::string> batch_bodies;
  std::vector<std::string> single_bodies;
  std::size_t e = 0;
  for (int b = 0; b < distinct; ++b) {
    auto arr = nlohmann::json::array();
    for (int i = 0; i < batch; ++i) arr.push_back(events[e++].record);
    batch_bodies.push_back(arr.dump());
  }
  for (int b = 0; b < distinct; ++b) single_bodies.push_back(events[e++].record.dump());

  // Trivial handler: parses the request like ingest's server does, answers 202 {}.
  HttpServerOptions trivial_opts;
  trivial_opts.threads = server_threads;
  HttpServer trivial(trivial_opts, [](HttpRequest, HttpResponder done) {
    HttpResponse r;
    r.status = 202;
    r.body = "{}";
    done(std::move(r));
  });
  trivial.start();

  // starling-ingest on a starling-broker, both child processes (or the whole Stack).
  std::optional<ChildProcess> broker;
  std::optional<ChildProcess> ingest;
  std::unique_ptr<supervisor::Stack> stack;
  uint16_t ingest_port = 0;
  std::string ingest_url;
  const auto give_up = [&](const std::string& why) {
    std::fprintf(stderr, "ingest_bench: %s (logs in %s)\n", why.c_str(), dir.c_str());
    if (stack) stack->stop();
    if (ingest) ingest->stop(5s);
    if (broker) broker->stop(5s);
    trivial.stop();
    return 1;
  };
  if (full_stack) {
    supervisor::StackOptions so;
    so.bin_dir = bin;
    so.data_dir = (dir / "stack").string();
    so.pipeline_files = {std::filesystem::absolute(pipeline_file).string()};
    so.log_level = "warn";
    so.restart_crashed = false;
    // The Stack passes no --threads; ingest reads this variable instead, so
    // both servers still get the same thread count.
    ::setenv("STARLING_HTTP_THREADS", std::to_string(server_threads).c_str(), 1);
    stack = std::make_unique<supervisor::Stack>(so);
    if (auto st = stack->start(); !st) return give_up(st.error().message);
    ingest_url = stack->ingest_url();
  } else {
    auto b = ChildProcess::spawn(
        {bin + "/starling-broker", "--listen", "127.0.0.1:0", "--data-dir", (dir / "broker").string(), "--port-file",
         (dir / "broker.port").string(), "--log-level", "warn"},
        (dir / "broker.log").string());
    if (!b) return give_up(b.error().message);
    broker = std::move(*b);
    auto addr = wait_for_file((dir / "broker.port").string(), 30s);
    if (!addr) return give_up("starling-broker: " + addr.error().message);
    if (auto st = kafka::create_topics({*addr, "ingest-bench", {}}, {{p.raw_topic(), p.partitions}, {kSagaTopic, 3}});
        !st) {
      return give_up(st.error().message);
    }
    auto i = ChildProcess::spawn(
        {bin + "/starling-ingest", "--kafka", *addr, "--pipeline", std::filesystem::absolute(pipeline_file).string(),
         "--listen", "127.0.0.1:0", "--port-file", (dir / "ingest.port").string(), "--data-dir",
         (dir / "ingest").string(), "--threads", std::to_string(server_threads), "--log-level", "warn"},
        (dir / "ingest.log").string());
    if (!i) return give_up(i.error().message);
    ingest = std::move(*i);
    auto port = wait_for_file((dir / "ingest.port").string(), 30s);
    if (!port) return give_up("starling-ingest: " + port.error().message);
    const auto colon = port->rfind(':');
    ingest_url = "http://127.0.0.1:" + (colon == std::string::npos ? *port : port->substr(colon + 1));
  }
  ingest_port = static_cast<uint16_t>(std::stoi(ingest_url.substr(ingest_url.rfind(':') + 1)));
  // /readyz turns 200 once ingest has seen broker metadata (polled every 2 s).
  for (const auto until = Clock::now() + 30s;;) {
    auto r = http_call("GET", ingest_url + "/readyz", {}, {}, 2000);
    if (r && r->status == 200) break;
    if (Clock::now() > until) return give_up("starling-ingest never became ready");
    std::this_thread::sleep_for(200ms);
  }

  struct Scenario {
    std::string name;
    int events_per_request;
    const std::vector<std::string>* bodies;
  };
  std::vector<Scenario> scenarios;
  if (only.empty() || only == "batch") scenarios.push_back({fmt::format("batch of {}", batch), batch, &batch_bodies});
  if (only.empty() || only == "single") scenarios.push_back({"single event", 1, &single_bodies});
  struct Target {
    std::string name;
    uint16_t port;
  };
  const std::vector<Target> targets = {{"trivial 202 handler", trivial.port()}, {"starling-ingest", ingest_port}};

  // samples[scenario][target] over the runs; scenarios and targets interleave
  // inside each run, so a noisy neighbour spreads over both.
  std::vector<std::vector<std::vector<Row>>> samples(scenarios.size(), std::vector<std::vector<Row>>(targets.size()));
  for (int r = 0; r < runs; ++r) {
    for (std::size_t s = 0; s < scenarios.size(); ++s) {
      for (std::size_t t = 0; t < targets.size(); ++t) {
        if (ingest && !ingest->running()) return give_up("starling-ingest exited");
        const auto reqs = build_requests(*scenarios[s].bodies, p.name, targets[t].port);
        auto res = run_load(targets[t].port, reqs, connections, warmup, seconds);
        Row row{scenarios[s].name,
                targets[t].name,
                scenarios[s].events_per_request,
                res.ok / res.seconds,
                res.percentile_ms(0.50),
                res.percentile_ms(0.99),
                res.errors};
        std::fprintf(stderr, "run %d/%d  %-14s %-20s %10.0f req/s  p50 %.2f ms  p99 %.2f ms  errors %llu\n", r + 1,
                     runs, row.scenario.c_str(), row.target.c_str(), row.req_s, row.p50, row.p99,
                     static_cast<unsigned long long>(row.errors));
        if (res.first_bad_status != 0) {
          std::fprintf(stderr, "  first non-2xx: %d %s\n", res.first_bad_status, res.first_bad_body.c_str());
        }
        samples[s][t].push_back(std::move(row));
      }
    }
  }

  if (stack) stack->stop();
  if (ingest) ingest->stop(20s);
  if (broker) broker->stop(10s);
  trivial.stop();
  if (keep) {
    std::printf("kept %s\n", dir.c_str());
  } else {
    std::filesystem::remove_all(dir);
  }

  const auto median = [](std::vector<Row> v) {
    std::sort(v.begin(), v.end(), [](const Row& a, const Row& b) { return a.req_s < b.req_s; });
    return v[v.size() / 2];
  };
  std::printf(
      "connections %d, %g s measured after %g s warm-up, %d run(s) (median by req/s), server threads %d, "
      "%s, %u hardware threads\n",
      connections, seconds, warmup, runs, server_threads,
      full_stack ? "whole pipeline running" : "broker + ingest only", std::thread::hardware_concurrency());
  std::printf("| %-14s | %-20s | %10s | %10s | %7s | %7s | %6s | %10s |\n", "scenario", "target", "req/s", "events/s",
              "p50 ms", "p99 ms", "errors", "ratio");
  std::printf("|%s|%s|%s|%s|%s|%s|%s|%s|\n", std::string(16, '-').c_str(), std::string(22, '-').c_str(),
              std::string(12, '-').c_str(), std::string(12, '-').c_str(), std::string(9, '-').c_str(),
              std::string(9, '-').c_str(), std::string(8, '-').c_str(), std::string(12, '-').c_str());
  for (std::size_t s = 0; s < scenarios.size(); ++s) {
    const auto base = median(samples[s][0]);
    for (std::size_t t = 0; t < targets.size(); ++t) {
      const auto row = median(samples[s][t]);
      std::printf("| %-14s | %-20s | %10.0f | %10.0f | %7.2f | %7.2f | %6llu | %10.3f |\n", row.scenario.c_str(),
                  row.target.c_str(), row.req_s, row.req_s * row.events_per_request, row.p50, row.p99,
                  static_cast<unsigned long long>(row.errors), base.req_s > 0 ? row.req_s / base.req_s : 0.0);
    }
  }
  return 0;
}
