// The console's saga list against a large store: one page of a pipeline's
// STALLED sagas, newest first, from the listing index (order=newest), against
// the same filter answered by a scan of every saga (order=id, the API's
// original path), in the same run on the same store. Also: a deep page
// (after 20 pages) and one saga's detail. Prints a table; the target
// is a page in < 100 ms with 1M sagas stored.
//
//   saga_list_bench [sagas=1000000] [requests=50]

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/support/measure.h"
#include "services/saga/saga_api.h"
#include "services/saga/saga_store.h"

namespace {

using namespace starling;
using nlohmann::json;

constexpr int64_t kT0 = 1'795'428'000'000;

long rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmRSS:")) return std::atol(line.c_str() + 6);
  }
  return 0;
}

struct Timing {
  double p50_ms = 0;
  double max_ms = 0;
  std::size_t listed = 0;
};

Timing time_requests(int n, const std::function<HttpResponse()>& call) {
  std::vector<double> ms;
  std::size_t listed = 0;
  for (int i = 0; i < n; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = call();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (r.status != 200) {
      fmt::print(stderr, "request failed: {} {}\n", r.status, r.body);
      std::exit(1);
    }
    listed = json::parse(r.body).value("sagas", json::array()).size();
  }
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.back(), listed};
}

HttpRequest get(const std::string& path, std::map<std::string, std::string> query) {
  HttpRequest r;
  r.method = "GET";
  r.path = path;
  r.query = std::move(query);
  return r;
}

}  // namespace

int main(int argc, char** argv) try {
  const std::size_t sagas = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
  const int requests = argc > 2 ? std::atoi(argv[2]) : 50;
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("saga-list-bench-{}", ::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  {
    saga::RocksSagaStore store((dir / "db").string());
    // Two pipelines; 1 saga in 100 STALLED, the rest COMPLETED, as a live store looks.
    const auto fill = bench::measure([&] {
      for (std::size_t done = 0; done < sagas;) {
        saga::SagaCommit c;
        for (std::size_t i = 0; i < 10'000 && done < sagas; ++i, ++done) {
          v1::SagaRecord r;
          r.set_saga_id(fmt::format("{:016x}-{}", done * 2654435761u % (1ull << 48), done));
          r.set_pipeline(done % 2 == 0 ? "ecowheels" : "weather");
          r.set_state(done % 100 == 8 ? v1::SAGA_STATE_STALLED : v1::SAGA_STATE_COMPLETED);
          r.set_total(20);
          r.set_ingested(true);
          r.set_loaded(std::string(3, '\xff'));
          r.set_created_ms(kT0 + static_cast<int64_t>(done) * 10);
          c.sagas.push_back({std::move(r)});
        }
        if (auto st = store.commit(c); !st) {
          fmt::print(stderr, "fill: {}\n", st.error().message);
          std::exit(1);
        }
      }
    });
    const saga::Clock clock = [] { return kT0; };
    const auto stalled_newest =
        get("/v1/sagas", {{"pipeline", "ecowheels"}, {"state", "STALLED"}, {"order", "newest"}, {"limit", "50"}});
    const auto stalled_scan = get("/v1/sagas", {{"pipeline", "ecowheels"}, {"state", "STALLED"}, {"limit", "50"}});
    const auto index = time_requests(requests, [&] { return saga::handle_saga_api(store, stalled_newest, clock); });
    const auto scan =
        time_requests(std::max(3, requests / 10), [&] { return saga::handle_saga_api(store, stalled_scan, clock); });
    // Page 21: follow 20 tokens, then time the next page.
    auto deep_req = stalled_newest;
    int deep_page = 1;
    for (int i = 0; i < 20; ++i, ++deep_page) {
      const auto body = json::parse(saga::handle_saga_api(store, deep_req, clock).body);
      if (!body.contains("next_page_token")) break;
      deep_req.query["page_token"] = body["next_page_token"];
    }
    const auto deep = time_requests(requests, [&] { return saga::handle_saga_api(store, deep_req, clock); });
    const auto all_newest = get("/v1/sagas", {{"pipeline", "weather"}, {"order", "newest"}, {"limit", "100"}});
    const auto any = time_requests(requests, [&] { return saga::handle_saga_api(store, all_newest, clock); });
    const auto one = time_requests(requests, [&] {
      return saga::handle_saga_api(
          store, get("/v1/sagas/" + fmt::format("{:016x}-{}", std::size_t{7} * 2654435761u % (1ull << 48), 7), {}),
          clock);
    });
    fmt::print("saga_list_bench: {} sagas stored ({} STALLED), filled in {:.1f} s; RSS {} MiB\n\n", sagas, sagas / 100,
               fill.seconds, rss_kib() / 1024);
    fmt::print("{:<52} {:>10} {:>10} {:>8}\n", "request", "p50 ms", "max ms", "sagas");
    const auto row = [](const std::string& name, const Timing& t) {
      fmt::print("{:<52} {:>10.2f} {:>10.2f} {:>8}\n", name, t.p50_ms, t.max_ms, t.listed);
    };
    row("STALLED of one pipeline, newest first (index)", index);
    row(fmt::format("the same, page {} (index)", deep_page), deep);
    row("any state of one pipeline, newest first (index)", any);
    row("STALLED of one pipeline, saga-id order (scan)", scan);
    row("one saga's detail", one);
    fmt::print("\nindex vs scan: {:.0f}x faster at the first page\n", scan.p50_ms / std::max(index.p50_ms, 1e-3));
  }
  std::filesystem::remove_all(dir);
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "saga_list_bench: {}\n", e.what());
  return 1;
}
