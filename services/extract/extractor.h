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
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/error.h"
#include "services/common/pipeline.h"
#include "services/common/records.h"
#include "services/extract/api_client.h"
#include "services/extract/cursor_store.h"
#include "services/extract/oauth2.h"
#include "services/extract/source.h"

namespace starling::extract {

/// A past range pulled as one saga (`starling extract backfill`): windows
/// from `from_ms` to `to_ms` (end exclusive), without lookback, the cursor
/// kept under "backfill/<id>"; every record gets the saga `id` and the next
/// seq, and the last window sends the saga's INGESTED fact (kind REPLAY, one
/// child per window).
struct BackfillRange {
  std::string id;
  int64_t from_ms = 0;
  int64_t to_ms = 0;
};

struct ExtractOptions {
  ClientOptions client;
  RecordLimits limits;                                // per record, as ingest's door
  std::chrono::milliseconds produce_timeout{30'000};  // a page's delivery reports; past it the poll fails
  int max_pages = 1000;                               // per window and each: binding; more is a looping API
  std::size_t max_records = 100'000;                  // per page
  std::optional<BackfillRange> backfill;
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
  bool done = false;         // a backfill reached its end (its INGESTED fact is out)
  uint32_t seqs = 0;         // a backfill: seqs given out so far, all windows
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
  /// `post` asks OAuth2 tokens (sources with auth.oauth2).
  Extractor(const PipelineConfig& pipeline, kafka::Producer& producer, CursorStore& store, std::string instance,
            ExtractOptions options, HttpGet get, const std::function<bool()>& stop, HttpPost post = {});

  /// One window ending at min(now, since + window) (a backfill: at its end
  /// instead of now), every each: binding, page by page.
  std::expected<PollResult, PollError> poll(int64_t now_ms);

  /// Polls until `stop`: at once again while catching up, else at the next
  /// cron minute or after source.every; a failed poll is retried then.
  void run();

  /// When the poll after one at `now_ms` is due (Unix ms).
  int64_t next_poll_ms(int64_t now_ms) const;
  /// The schedule's interval from `now_ms` on: every, or the time between
  /// the next two cron minutes. A source without start begins this far back.
  int64_t interval_ms(int64_t now_ms) const;

  /// A backfill that stops before its end (cancelled): sends its INGESTED
  /// fact over the windows pulled so far, marked cancelled.
  std::expected<PollResult, PollError> close_backfill(bool cancelled);

  /// The cursor's key in the store: the pipeline's name, or backfill/<id>.
  const std::string& cursor_key() const { return key_; }

 private:
  // Produces one page's records as seqs first_seq.. of `saga_id`; the seqs used.
  std::expected<uint32_t, PollError> produce_page(const std::string& saga_id, uint32_t first_seq,
                                                  const std::vector<nlohmann::json>& records, int64_t& max_cursor_ms,
                                                  PollResult& result);
  // Pulls one each: binding's pages of the window.
  std::expected<void, PollError> pull(const Binding& binding, std::map<std::string, std::string>& headers,
                                      int64_t& max_cursor_ms, uint32_t& next_seq, PollResult& result);
  // The backfill's seqs and windows so far, as stored with its cursor.
  std::expected<nlohmann::json, PollError> backfill_state() const;
  std::expected<PollResult, PollError> finish_backfill(const BackfillRange& range, PollResult result,
                                                       const nlohmann::json& state, bool cancelled = false);

  const PipelineConfig& p_;
  const HttpPollSource& s_;
  kafka::Producer& producer_;
  CursorStore& store_;
  std::string instance_;
  ExtractOptions options_;
  std::function<bool()> stop_;
  std::string key_;
  ApiClient client_;
  std::optional<TokenSource> tokens_;
};

}  // namespace starling::extract
