#pragma once
// starling-saga's HTTP front: the saga API (services/saga/saga_api.h), the
// console's read APIs and its static files, behind one access check.
//
//   /console/...        the console (static; no key needed: it holds no data)
//   /openapi.json       the API's document
//   /v1/...             every read needs a key with scope `read`, every POST
//                       one with `admin` (when a keys file is given)
//
// Keys come from the same hashed-key file format as ingest's
// (services/common/api_keys.h), with `scopes:`; a key also sees only its
// `pipelines`. Without a keys file everything is allowed, and main() refuses
// to listen beyond loopback.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "services/common/api_keys.h"
#include "services/common/http.h"
#include "services/common/kafka_properties.h"
#include "services/replay/replay.h"
#include "services/saga/activity.h"
#include "services/saga/coordinator.h"
#include "services/saga/saga_api.h"
#include "services/saga/saga_store.h"
#include "services/saga/topics_api.h"

namespace starling::saga {

/// One file of the console, compiled in (cmake/console_assets.cmake).
struct ConsoleAsset {
  const char* name;  // "index.html", "app.js", "vendor/uPlot.iife.min.js"
  const char* content_type;
  std::string_view body;
};
const std::vector<ConsoleAsset>& console_assets();

/// The console's Content-Security-Policy: nothing but the console's own files
/// and API, no inline script or style, no framing.
inline constexpr const char* kConsoleCsp =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// replay::run_replay, its error logged.
void default_replay_runner(const replay::ReplayOptions& options);

struct SagaHttpOptions {
  std::optional<KeyStore> keys;  // none: everything allowed (loopback only)
  std::string replay_dir;        // where `starling replay` keeps <id>.json; "": no replays listed
  // For replays started from the console (POST /v1/replays); "" refuses them.
  std::string kafka;
  KafkaProperties kafka_properties;
  /// The topic-reading routes (a saga's events, one event's journey,
  /// rejects); none: they are 404.
  std::optional<TopicsApiOptions> topics;
  /// The partitions this instance owns (SagaService sets it); none: every
  /// saga stored counts (services/saga/saga_api.h).
  const Ownership* ownership = nullptr;
  /// Runs one replay to its end (on its own thread); tests replace it.
  std::function<void(const replay::ReplayOptions&)> run_replay = default_replay_runner;
};

/// Replays a console user starts run in this process, one thread each, at
/// most kConsoleReplaysMax at a time, with the same state and control files
/// as `starling replay`. Stopping the service cancels them: each closes its
/// saga over what it published, as `starling replay cancel` does.
inline constexpr std::size_t kConsoleReplaysMax = 4;
/// Rejected records one re-drive takes at most.
inline constexpr std::size_t kRedriveMax = 10'000;

class SagaHttp {
 public:
  SagaHttp(SagaStore& store, const Activity& activity, Clock clock, SagaHttpOptions options);
  /// Cancels the replays it started and waits for them.
  ~SagaHttp();
  SagaHttp(const SagaHttp&) = delete;
  SagaHttp& operator=(const SagaHttp&) = delete;
  /// Never throws: a bug in a handler is a 500.
  HttpResponse handle(const HttpRequest& req) const;

 private:
  HttpResponse route(const HttpRequest& req, const ApiKey* key) const;
  HttpResponse replays(const ApiKey* key) const;
  HttpResponse control_replay(const std::string& id, const std::string& action) const;
  HttpResponse start_replay(const HttpRequest& req, const ApiKey* key) const;
  /// Fills a re-drive's range and events from the rejects that match, or the refusal.
  std::optional<HttpResponse> select_redrive(replay::ReplayOptions& o, RejectSelection selection) const;

  SagaStore& store_;
  const Activity& activity_;
  Clock clock_;
  SagaHttpOptions options_;
  struct Running {
    std::string id;
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  mutable std::mutex replays_mu_;
  mutable std::vector<Running> running_;
};

/// The console's file for a request path, with its headers (CSP, nosniff,
/// no caching of index.html); 404 for any other.
HttpResponse console_file(const std::string& path);

}  // namespace starling::saga
