#pragma once
// One pipeline's source, polled window by window. A window [since, until)
// is fetched page by page; each page with records becomes one saga, produced
// exactly as ingest produces a request (services/common/envelope.h) and
// waited for until Kafka PERSISTED all of it; only after the last page is the
// cursor (the next window's since) written. A crash anywhere redoes the
// window: the same pages give the same saga ids, seqs and event ids.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <string>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/error.h"
#include "services/common/pipeline.h"
#include "services/extract/api_client.h"
#include "services/extract/cursor_store.h"
#include "services/extract/source.h"

namespace starling::extract {

struct ExtractOptions {
  ClientOptions client;
  std::chrono::milliseconds produce_timeout{30'000};  // a page's delivery reports; past it the poll fails
  int max_pages = 1000;                               // per window; more is a malformed (looping) API
  std::size_t max_records = 100'000;                  // per page
};

/// What one poll did (logged, counted, and returned to tests).
struct PollResult {
  int64_t since_ms = 0;
  int64_t until_ms = 0;
  int64_t next_since_ms = 0;  // the cursor now stored
  int pages = 0;
  int sagas = 0;
  std::size_t records = 0;   // produced to <p>.raw
  std::size_t rejected = 0;  // produced to <p>.rejected (stage extract)
  bool caught_up = true;     // false: the window was cut by `window`, poll again at once
};

/// Why a poll failed, as a metric label.
enum class PollFailure { kHttp, kMalformed, kKafka, kStore, kStopped };
const char* failure_label(PollFailure f);

struct PollError {
  PollFailure kind;
  std::string message;
};

class Extractor {
 public:
  /// `pipeline` must have a source; `store` and `producer` outlive this.
  Extractor(const PipelineConfig& pipeline, kafka::Producer& producer, CursorStore& store, std::string instance,
            ExtractOptions options, HttpGet get, const std::function<bool()>& stop);

  /// One window ending at min(now, since + window).
  std::expected<PollResult, PollError> poll(int64_t now_ms);

  /// Polls until `stop`: at once again while catching up, else every
  /// source.every; a failed poll is retried at the next tick.
  void run();

 private:
  std::expected<int, PollError> produce_page(const std::string& saga_id, const std::vector<nlohmann::json>& records,
                                             int64_t& max_cursor_ms, PollResult& result);

  const PipelineConfig& p_;
  const HttpPollSource& s_;
  kafka::Producer& producer_;
  CursorStore& store_;
  std::string instance_;
  ExtractOptions options_;
  std::function<bool()> stop_;
  ApiClient client_;
};

}  // namespace starling::extract
