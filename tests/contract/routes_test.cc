// Route coverage: each HTTP service's OpenAPI document (services/*/openapi.json)
// and its router agree. Every documented operation answers its example request
// with a documented 2xx, and every request to a route the document does not
// have is 404 or 405.
//
// The routers are if/else chains (service_routes around IngestService::handle
// and SagaHttp::handle), not a table, so "the routes a server answers" is
// observed: the same probes (every documented path of both documents, every
// route named in the routers' code, near misses) go to both services with
// every method, through the real request path (serve_bytes: parser, limits,
// routing) and the real handlers. Ingest's GET /v1/sagas/{saga_id} is routed
// to a saga API running on a loopback port. And every path literal in the
// routers' sources must appear in a documented path of that service, so a
// route added to the code without a line in the document fails here too.

#include <fmt/format.h>
#include <google/protobuf/stubs/logging.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "services/common/files.h"
#include "services/common/http.h"
#include "services/common/service_main.h"
#include "services/common/text.h"
#include "services/ingest/ingest_service.h"
#include "services/replay/replay.h"
#include "services/saga/console.h"
#include "services/saga/saga_api.h"
#include "services/saga/saga_store.h"
#include "services/saga/topics_api.h"
#include "tests/support/fake_kafka.h"
#include "tests/support/memory_topics.h"
#include "tests/support/temp_dir.h"

namespace starling {
namespace {

using nlohmann::json;
using testing::source_path;

constexpr std::array<std::string_view, 7> kMethods = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"};

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One service under test: its document, its handler, and the router sources
// whose path literals the document must cover.
struct Service {
  std::string name;
  json doc;
  HttpHandler handler;
  std::vector<std::string> router_sources;
};

// A documented operation: the path template, the method, and the
// example request built from the document.
struct Operation {
  std::string path_template;
  std::string method;  // upper case
  std::string example_path;
  std::string body;
  std::string content_type;
  json responses;
};

json deref(const json& doc, const json& node) {
  if (!node.contains("$ref")) return node;
  // Only local references (#/components/...), which is all these documents use.
  const auto ref = node["$ref"].get<std::string>();
  return doc.at(json::json_pointer(ref.substr(1)));
}

std::vector<Operation> operations(const json& doc) {
  std::vector<Operation> out;
  for (const auto& [path, item] : doc.at("paths").items()) {
    for (const auto& [method, op] : item.items()) {
      if (method == "parameters") continue;
      Operation o;
      o.path_template = path;
      o.method = method;
      std::transform(o.method.begin(), o.method.end(), o.method.begin(), ::toupper);
      o.example_path = path;
      std::vector<json> params;
      for (const auto& p : item.value("parameters", json::array())) params.push_back(deref(doc, p));
      for (const auto& p : op.value("parameters", json::array())) params.push_back(deref(doc, p));
      std::string query;
      for (const auto& p : params) {
        // A query parameter's example is sent too (a required one must have one).
        if (p.at("in") == "query") {
          EXPECT_TRUE(p.contains("example") || !p.value("required", false))
              << method << " " << path << ": required query parameter " << p.at("name") << " has no example";
          if (p.contains("example")) {
            query += (query.empty() ? "?" : "&") + p.at("name").get<std::string>() + "=" +
                     url_encode(p.at("example").get<std::string>());
          }
          continue;
        }
        if (p.at("in") != "path") continue;
        const auto name = p.at("name").get<std::string>();
        // The example is what this test sends: a path parameter without one is a document bug.
        EXPECT_TRUE(p.contains("example")) << method << " " << path << ": path parameter " << name << " has no example";
        const auto value = p.value("example", std::string("x"));
        o.example_path.replace(o.example_path.find("{" + name + "}"), name.size() + 2, value);
      }
      o.example_path += query;
      if (op.contains("requestBody")) {
        const auto media = deref(doc, op["requestBody"]).at("content").at("application/json");
        EXPECT_TRUE(media.contains("example")) << method << " " << path << ": the JSON request body has no example";
        o.body = media.value("example", json::object()).dump();
        o.content_type = "application/json";
      }
      o.responses = op.at("responses");
      out.push_back(std::move(o));
    }
  }
  return out;
}

std::vector<std::string> segments(const std::string& path) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t slash = path.find('/'); slash != std::string::npos; slash = path.find('/', start)) {
    out.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  out.push_back(path.substr(start));
  return out;
}

// Whether `path` (its query left aside) is an instance of the template: a
// {parameter} stands for one non-empty segment.
bool matches(const std::string& path_template, const std::string& path) {
  const auto t = segments(path_template);
  const auto p = segments(path.substr(0, path.find('?')));
  if (t.size() != p.size()) return false;
  for (std::size_t i = 0; i < t.size(); ++i) {
    const bool param = t[i].size() > 2 && t[i].front() == '{' && t[i].back() == '}';
    if (param ? p[i].empty() : t[i] != p[i]) return false;
  }
  return true;
}

// The string literals of a C++ source that look like a path: "/v1/sagas/".
std::vector<std::string> path_literals(const std::string& text) {
  std::vector<std::string> out;
  for (std::size_t q = text.find("\"/"); q != std::string::npos; q = text.find("\"/", q + 1)) {
    const auto end = text.find('"', q + 1);
    if (end == std::string::npos) break;
    const auto lit = text.substr(q + 1, end - q - 1);
    if (lit.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./-") ==
        std::string::npos) {
      out.push_back(lit);
    }
    q = end;
  }
  return out;
}

bool documents_status(const json& responses, int status) {
  return responses.contains(std::to_string(status)) || responses.contains(fmt::format("{}XX", status / 100));
}

HttpResponse call(const HttpHandler& handler, std::string_view method, const std::string& path,
                  const std::string& body = {}, const std::string& content_type = {}) {
  std::string bytes =
      fmt::format("{} {} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n", method, path, body.size());
  if (!content_type.empty()) bytes += "Content-Type: " + content_type + "\r\n";
  bytes += "Connection: close\r\n\r\n" + body;
  auto answers = serve_bytes(bytes, HttpServerOptions{}, handler);
  if (answers.size() != 1) return {0, fmt::format("{} answers", answers.size())};
  return answers.front();
}

std::string error_code(const HttpResponse& r) {
  const auto j = json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("error")) return {};
  return j["error"].value("code", "");
}

class RouteCoverage : public ::testing::Test {
 protected:
  static constexpr const char* kSagaId = "0a1b2c3d4e5f6789";

  RouteCoverage() {
    spdlog::set_level(spdlog::level::warn);
    google::protobuf::SetLogHandler(nullptr);
    store_ = std::make_unique<saga::RocksSagaStore>(dir_ / "sagas");
    // The saga the documents' examples name.
    saga::SagaCommit commit;
    v1::SagaRecord r;
    r.set_saga_id(kSagaId);
    r.set_pipeline("ecowheels");
    r.set_state(v1::SAGA_STATE_ACCEPTED);
    r.set_created_ms(1'795'428'000'000);
    commit.sagas.push_back({r, 0});
    EXPECT_TRUE(store_->commit(commit).has_value());

    // The replay the document's example controls, running (in this process).
    const std::filesystem::path replays = dir_ / "replays";
    std::filesystem::create_directories(replays);
    replay::ReplayStatus running;
    running.id = "replay-20261123T100000Z-1a2b";
    running.pipeline = "ecowheels";
    running.state = "running";
    running.pid = ::getpid();
    EXPECT_TRUE(write_file_atomically((replays / (running.id + ".json")).string(), replay::to_json(running).dump()));
    // The topic-reading routes on topics held in memory: the pipeline topics are empty.
    topics_options_.source = topics_.factory();
    topics_options_.pipelines = {load_pipeline(source_path("pipelines/ecowheels.yaml"))};
    saga::SagaHttpOptions front;
    front.replay_dir = replays.string();
    front.kafka = "127.0.0.1:1";  // never reached: the runner below stands in for the replay
    front.run_replay = [](const replay::ReplayOptions&) {};
    front.topics = topics_options_;
    saga_front_ = std::make_unique<saga::SagaHttp>(
        *store_, activity_, [] { return int64_t{1'795'431'600'000}; }, std::move(front));
    const Readiness ready = [] { return Status{}; };
    saga_handler_ = service_routes(
        ready, [this](const HttpRequest& req, const HttpResponder& done) { done(saga_front_->handle(req)); });
    // A saga API on a loopback port (0: the system picks), for ingest's route to it.
    saga_server_ = std::make_unique<HttpServer>(HttpServerOptions{}, saga_handler_);
    saga_server_->start();

    std::map<std::string, PipelineConfig> pipelines;
    for (const char* name : {"ecowheels", "weather"}) {
      auto p = load_pipeline(source_path(std::string("pipelines/") + name + ".yaml"));
      pipelines.emplace(p.name, std::move(p));
    }
    ingest::IngestOptions options;
    options.saga_url = fmt::format("http://127.0.0.1:{}", saga_server_->port());
    ingest_ = std::make_unique<ingest::IngestService>(std::move(pipelines), producer_, "contract", options);
    ingest_->set_ready(true);
    ingest_handler_ = service_routes(
        [this] { return ingest_->ready() ? Status{} : fail(Errc::kUnavailable, "no"); },
        [this](HttpRequest req, HttpResponder done) { ingest_->handle(std::move(req), std::move(done)); });
  }
  ~RouteCoverage() override { saga_server_->stop(); }

  std::vector<Service> services() const {
    return {
        {"ingest",
         json::parse(read_text(source_path("services/ingest/openapi.json"))),
         ingest_handler_,
         {"services/ingest/ingest_service.cc", "services/common/service_main.cc"}},
        {"saga",
         json::parse(read_text(source_path("services/saga/openapi.json"))),
         saga_handler_,
         {"services/saga/saga_api.cc", "services/saga/console.cc", "services/saga/topics_api.cc",
          "services/common/service_main.cc"}},
    };
  }

  // Every path worth asking every service: both documents' example paths, the
  // routes the routers' code names (as concrete paths), and near misses.
  std::set<std::string> probes() const {
    std::set<std::string> out = {
        "/healthz", "/readyz", "/metrics", "/openapi.json", "/v1/sagas", std::string("/v1/sagas/") + kSagaId,
        "/v1/pipelines/ecowheels/events", "/v1/pipelines/ecowheels/consistency",
        // Near misses and routes other services have.
        "/", "/v1", "/v1/", "/v1/pipelines", "/v1/pipelines/ecowheels", "/v1/pipelines/ecowheels/events/x",
        "/v1/pipelines/ecowheels/consistency/x", "/v1/pipelines/ecowheels/sagas", "/v1/pipelines/a/b/consistency",
        "/v1/events", "/v1/saga", "/v2/sagas", "/healthz/", "/health", "/readyz/x", "/metrics/x", "/openapi.yaml",
        "/openapi", "/docs", "/v1/topics", "/v1/replays", "/console", "/console/nope.js", "/v1/replays/x",
        "/v1/whoami/x", "/v1/overview/x", "/v1/journey", "/v1/journey/x", "/v1/rejects", "/v1/rejects/x", "/v1/reject",
        std::string("/v1/sagas/") + kSagaId + "/events"};
    for (const auto& s : services()) {
      for (const auto& op : operations(s.doc)) out.insert(op.example_path);
    }
    return out;
  }

  testing::TempDir dir_;
  std::unique_ptr<saga::RocksSagaStore> store_;
  saga::Activity activity_;
  std::unique_ptr<saga::SagaHttp> saga_front_;
  testing::MemoryTopics topics_;
  saga::TopicsApiOptions topics_options_;
  HttpHandler saga_handler_;
  std::unique_ptr<HttpServer> saga_server_;
  testing::NullProducer producer_;
  std::unique_ptr<ingest::IngestService> ingest_;
  HttpHandler ingest_handler_;
};

TEST_F(RouteCoverage, EveryDocumentedOperationAnswersItsExampleWithADocumented2xx) {
  for (const auto& s : services()) {
    const auto ops = operations(s.doc);
    ASSERT_FALSE(ops.empty()) << s.name;
    for (const auto& op : ops) {
      const auto r = call(s.handler, op.method, op.example_path, op.body, op.content_type);
      EXPECT_TRUE(r.status >= 200 && r.status < 300)
          << s.name << ": " << op.method << " " << op.example_path << " answered " << r.status << " " << r.body;
      EXPECT_TRUE(documents_status(op.responses, r.status))
          << s.name << ": " << op.method << " " << op.path_template << " answered " << r.status
          << ", which its document does not list";
    }
  }
}

TEST_F(RouteCoverage, EveryRouteAServiceAnswersIsInItsDocument) {
  const auto paths = probes();
  for (const auto& s : services()) {
    const auto ops = operations(s.doc);
    for (const auto& path : paths) {
      for (const auto& method : kMethods) {
        const bool documented = std::any_of(ops.begin(), ops.end(), [&](const Operation& op) {
          return op.method == method && matches(op.path_template, path);
        });
        const auto r = call(s.handler, method, path);
        const bool routed = !(r.status == 405 || (r.status == 404 && error_code(r) == "not_found"));
        if (documented) {
          EXPECT_TRUE(routed) << s.name << ": documented " << method << " " << path << " answered " << r.status << " "
                              << r.body;
        } else {
          // Not documented: the router must not know it (404 not_found or 405).
          EXPECT_FALSE(routed) << s.name << ": " << method << " " << path << " answered " << r.status
                               << " but the document has no such operation: " << r.body;
        }
      }
    }
  }
}

TEST_F(RouteCoverage, EveryPathLiteralInARouterIsInItsDocument) {
  // A route is added to these routers as a string literal; each must be part
  // of a documented path ("/v1/sagas/" of "/v1/sagas/{saga_id}").
  for (const auto& s : services()) {
    std::vector<std::string> documented;
    for (const auto& [path, item] : s.doc.at("paths").items()) documented.push_back(path);
    for (const auto& file : s.router_sources) {
      const auto text = read_text(source_path(file));
      ASSERT_FALSE(text.empty()) << file;
      for (const auto& lit : path_literals(text)) {
        const bool covered = std::any_of(documented.begin(), documented.end(),
                                         [&](const std::string& p) { return p.find(lit) != std::string::npos; });
        EXPECT_TRUE(covered) << s.name << ": " << file << " routes on \"" << lit << "\", which no path of services/"
                             << s.name << "/openapi.json contains";
      }
    }
  }
}

TEST_F(RouteCoverage, EachServiceServesTheDocumentInTheRepo) {
  for (const auto& s : services()) {
    const auto r = call(s.handler, "GET", "/openapi.json");
    ASSERT_EQ(r.status, 200) << s.name;
    EXPECT_TRUE(json::parse(r.body, nullptr, false) == s.doc)
        << s.name << ": the served /openapi.json is not services/" << s.name << "/openapi.json (rebuild?)";
    EXPECT_EQ(s.doc.value("openapi", ""), "3.1.0") << s.name;
  }
}

}  // namespace
}  // namespace starling
