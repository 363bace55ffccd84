#pragma once
// The saga API's topic-reading endpoints (the Starling Console's journey and
// rejects pages): they answer from the pipeline topics themselves, read
// outside any consumer group, bounded per request.
//   GET /v1/sagas/{id}/events?limit=N   a saga's events on its input topic: seq, ids, position, status
//   GET /v1/journey?pipeline=P&event_id=E | &device_id=D [&since=T] [&limit=N]
//                                       one event (or a device's latest events) from ingest to its
//                                       row or its rejection, with every change clean made
//   GET /v1/rejects?pipeline=P[&rule=R][&field=F][&device_id=D][&since=T][&until=T][&examples=N]
//                                       <p>.rejected and <p>.dlq grouped by (stage, rule, field)
// Every record read is data from outside: a record that does not decode is
// counted ("undecodable"), never a failure, and every string returned is
// valid UTF-8 and at most value_max bytes (cut with a marker).

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/error.h"
#include "services/common/http.h"
#include "services/common/pipeline.h"
#include "services/saga/coordinator.h"
#include "services/saga/saga_store.h"

namespace starling::saga {

/// What the endpoints ask of Kafka: kafka::TopicReader's questions, cut here
/// so that unit tests can hand in topics held in memory (STYLE.md §2).
/// Lifecycle: one per request, used from that request's thread only.
class TopicSource {
 public:
  virtual ~TopicSource() = default;
  /// An error with Errc::kNotFound means the topic does not exist (yet): it
  /// is skipped, not a failure.
  virtual Result<int> partitions(const std::string& topic, std::chrono::milliseconds timeout) = 0;
  virtual Result<std::pair<int64_t, int64_t>> watermarks(const kafka::TopicPartition& tp,
                                                         std::chrono::milliseconds timeout) = 0;
  virtual Result<int64_t> offset_for_time(const kafka::TopicPartition& tp, int64_t ts_ms,
                                          std::chrono::milliseconds timeout) = 0;
  virtual Status assign(const std::map<kafka::TopicPartition, int64_t>& starts) = 0;
  virtual Result<std::vector<kafka::InMessage>> poll_batch(std::size_t max, std::chrono::milliseconds timeout) = 0;
};

/// Makes the source of one request.
using TopicSourceFactory = std::function<Result<std::unique_ptr<TopicSource>>(const kafka::KafkaOptions&)>;

/// A kafka::TopicReader on `options` (client id "starling-saga-topics").
Result<std::unique_ptr<TopicSource>> kafka_topic_source(const kafka::KafkaOptions& options);

struct TopicsApiOptions {
  kafka::KafkaOptions kafka;               // how to reach the broker (as SagaService gets it)
  std::vector<PipelineConfig> pipelines;   // the --pipeline files the service was given
  std::size_t scan_max = 200'000;          // records read per request at most, over all topics
  std::chrono::milliseconds budget{5000};  // wall time per request at most
  /// How a request reaches the topics; unset: kafka_topic_source.
  TopicSourceFactory source;
  /// A saga's events are read from its creation time minus this: ingest
  /// stamps the saga's creation after it wrote the events, and the broker's
  /// clock (the record timestamps) may differ from ingest's.
  int64_t clock_slack_ms = 60'000;
  /// The longest string returned; longer ones are cut, with a marker.
  std::size_t value_max = 1024;
  /// Requests reading topics at once; more are 503 busy with Retry-After
  /// (each holds a Kafka client for up to `budget`). Copies of these options
  /// share the count.
  std::size_t max_concurrent = 4;
  std::shared_ptr<std::atomic<std::size_t>> in_flight = std::make_shared<std::atomic<std::size_t>>(0);
};

/// GET /v1/journey, /v1/rejects and /v1/sagas/{id}/events; std::nullopt for any other path.
/// Never throws; a Kafka error is a 503 json_error, bad input a 400 naming the parameter.
std::optional<HttpResponse> handle_topics_api(const TopicsApiOptions& options, SagaStore& store, const HttpRequest& req,
                                              const Clock& clock);

// Limits of the parameters (openapi.json states the same).
/// The records a re-drive replays: the clean-stage rejects of a pipeline
/// that match rule, field and device (empty: any), rejected within
/// [since_ms, until_ms]. Their event ids, and the span of their ingest times
/// (where to read them back from <p>.raw).
struct RejectSelection {
  std::string rule;
  std::string field;
  std::string device_id;
  std::optional<int64_t> since_ms;
  std::optional<int64_t> until_ms;
};
struct SelectedRejects {
  std::set<std::string> event_ids;
  int64_t first_ingest_ms = 0;
  int64_t last_ingest_ms = 0;
  std::size_t matched = 0;  // records that matched (more than event_ids when some exceed `max`)
  bool complete = true;     // false: a scan bound cut the search
};
/// At most `max` event ids are kept; `matched` counts them all.
Result<SelectedRejects> select_rejects(const TopicsApiOptions& options, const PipelineConfig& pipeline,
                                       const RejectSelection& selection, std::size_t max);
/// The pipeline of that name among options.pipelines; nullptr when unknown.
const PipelineConfig* topics_pipeline(const TopicsApiOptions& options, const std::string& name);

inline constexpr std::size_t kJourneyLimitDefault = 20;
inline constexpr std::size_t kJourneyLimitMax = 100;
inline constexpr std::size_t kEventsLimitDefault = 100;
inline constexpr std::size_t kEventsLimitMax = 10'000;  // the console lists a saga's events at once
inline constexpr std::size_t kExamplesDefault = 3;
inline constexpr std::size_t kExamplesMax = 20;
/// Distinct (stage, rule, field) groups listed; records of further groups
/// are counted in "groups_not_listed" (rules and fields are a small set
/// unless someone writes junk to the topic).
inline constexpr std::size_t kGroupsMax = 1000;
/// The journey's `since` when none is given.
inline constexpr int64_t kJourneySinceDefaultMs = 3'600'000;

/// `s` as valid UTF-8, at most `max` bytes of it, never cut inside a
/// character; a cut value ends with "…[cut: N of M bytes]".
std::string capped(std::string_view s, std::size_t max);

/// A since/until parameter: RFC 3339, Unix ms, or a duration back from
/// `now_ms` (90s, 10m, 2h, 1d); nullopt when it is none of them.
std::optional<int64_t> parse_time_param(const std::string& text, int64_t now_ms);

}  // namespace starling::saga
