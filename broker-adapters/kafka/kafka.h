#pragma once
// The only code in Starling that talks to librdkafka. Services see these
// narrow interfaces (STYLE.md §2), so they run unchanged on starling-broker,
// Apache Kafka or Redpanda, and tests can cut them.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "services/common/error.h"

namespace starling::kafka {

struct KafkaOptions {
  std::string bootstrap;  // host:port[,host:port]
  std::string client_id = "starling";
  std::map<std::string, std::string> properties;  // raw librdkafka overrides
  /// Where a property came from ("--kafka-property", "STARLING_KAFKA_X",
  /// "file:3"), named by an error about it.
  std::map<std::string, std::string> origins;
  /// A group consumer's `group.instance.id` (static membership, KIP-345):
  /// a member that restarts with the same id within `session.timeout.ms`
  /// gets its partitions back without a rebalance, and the range assignor
  /// orders members by it, so an assignment is stable across restarts. Set
  /// only from an id the operator gave (--instance), never a generated one;
  /// empty: a dynamic member. A property of the same name overrides it.
  std::string group_instance_id;
};

struct Header {
  std::string key;
  std::string value;
};

/// The header that carries the envelope's trace id on every data message.
inline constexpr const char* kTraceHeader = "trace-id";

struct OutMessage {
  std::string topic;
  std::string key;
  std::string value;
  std::vector<Header> headers;
};

/// What a delivery report says. PERSISTED means the broker acknowledged it
/// with acks=all; POSSIBLY_PERSISTED means it was sent but the answer was
/// lost (a retry with the same idempotent producer cannot duplicate it, but
/// the caller must not claim success); NOT_PERSISTED means it never got in.
enum class DeliveryStatus { kPersisted, kPossiblyPersisted, kNotPersisted };

struct Delivery {
  DeliveryStatus status = DeliveryStatus::kNotPersisted;
  int32_t partition = -1;
  int64_t offset = -1;
  std::string error;       // empty when persisted
  std::string_view topic;  // valid during the callback only
  /// No retry of the same message can succeed (it is too large for the
  /// topic, the topic name is invalid, the client may not write it): the
  /// caller must dead-letter or give up, never loop.
  bool permanent = false;
};

using DeliveryCallback = std::function<void(const Delivery&)>;

/// Lifecycle: create, produce from any thread, flush, destroy. Delivery
/// callbacks run on the producer's own poll thread, exactly once per message.
class Producer {
 public:
  virtual ~Producer() = default;
  /// The message is copied; the caller may drop or reuse it on return.
  virtual void produce(const OutMessage& msg, DeliveryCallback done) = 0;
  /// Waits until every produced message has had its callback.
  virtual Status flush(std::chrono::milliseconds timeout) = 0;
};

struct ProducerOptions {
  /// When librdkafka's queue is full: wait up to this long for room, then
  /// report NOT_PERSISTED. Ingest uses 0 (answer 503 at once); stages wait.
  std::chrono::milliseconds queue_full_wait{0};
  /// Topics this producer writes: their leaders are looked up at create()
  /// (up to a second), so the first message to each is sent at once.
  std::vector<std::string> topics;
};

/// Idempotent (enable.idempotence=true, acks=all) librdkafka producer.
class KafkaProducer final : public Producer {
 public:
  static Result<std::unique_ptr<KafkaProducer>> create(const KafkaOptions& options,
                                                       const ProducerOptions& producer_options = {});
  ~KafkaProducer() override;
  void produce(const OutMessage& msg, DeliveryCallback done) override;
  Status flush(std::chrono::milliseconds timeout) override;
  /// True when a broker answered within `timeout` (for /readyz).
  bool broker_reachable(std::chrono::milliseconds timeout);

 private:
  struct Impl;
  explicit KafkaProducer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// The delivery reports of a set of messages: produced now, waited for
/// later (a stage sends one batch while it works on the next).
class Deliveries {
 public:
  /// Produces every message (the producer copies them: the caller may keep
  /// them for a retry). Shared: the callbacks hold it until the last report.
  static std::shared_ptr<Deliveries> send(Producer& producer, const std::vector<OutMessage>& messages);
  /// OK only when every message is PERSISTED; else the first failure,
  /// naming its topic (Errc::kInvalidArgument when a delivery failed
  /// permanently, Errc::kUnavailable otherwise), or Errc::kTimeout saying how
  /// many are unconfirmed.
  Status wait(std::chrono::milliseconds timeout);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::size_t pending_ = 0;
  std::string first_error_;
  bool permanent_ = false;
};

/// Produces every message and waits for all delivery reports (send, then
/// wait).
Status produce_all(Producer& producer, const std::vector<OutMessage>& messages, std::chrono::milliseconds timeout);

struct TopicPartition {
  std::string topic;
  int32_t partition = 0;
  auto operator<=>(const TopicPartition&) const = default;
};

struct InMessage {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;
  std::string key;
  std::string value;
  std::vector<Header> headers;
};

/// librdkafka's logical offset for "the first offset still stored".
inline constexpr int64_t kOffsetBeginning = -2;

/// Called inside poll() on the polling thread when the group changes.
struct RebalanceHooks {
  /// Returns where to start each newly assigned partition; a partition left
  /// out starts at the group's committed offset (or the earliest).
  std::function<std::map<TopicPartition, int64_t>(const std::vector<TopicPartition>&)> on_assign;
  /// Runs before partitions are taken away: flush state for them here.
  std::function<void(const std::vector<TopicPartition>&)> on_revoke;
};

/// A consumer-group member, as the consumer loop (consumer_loop.h) sees it:
/// KafkaConsumer, or a fake in unit tests (tests/support/fake_kafka.h).
/// Lifecycle: created with its RebalanceHooks, polled from one thread (the
/// hooks run on it, inside poll_batch() and close()), closed, destroyed.
class Consumer {
 public:
  virtual ~Consumer() = default;
  /// Returns up to `max` messages, waiting at most `timeout` for the first and
  /// taking whatever else is already there. An empty batch is normal. An
  /// error is fatal for the consumer (librdkafka's fatal errors). A batch
  /// never spans a rebalance: what was taken before the group changed is
  /// left out (a partition still ours was re-seeked by on_assign, so it comes
  /// again), what came after is returned.
  virtual Result<std::vector<InMessage>> poll_batch(std::size_t max, std::chrono::milliseconds timeout) = 0;
  /// Hands "next offset to read" per partition to the group's committed
  /// offsets, in the background: what lag tools (kafka-consumer-groups,
  /// Burrow, `starling groups`) read. Never the source of truth: a stage
  /// stores its offsets beside its effects and starts from those. A failure
  /// is logged (rate-limited) and the next commit covers it.
  virtual void commit_async(const std::map<TopicPartition, int64_t>& next_offsets) = 0;
  /// Stops fetching these partitions while this member stays in the group
  /// (poll_batch keeps serving rebalances and returns none of their
  /// messages); resume() goes on after the last message poll_batch returned.
  /// A partition assigned by a rebalance starts unpaused, even one that was
  /// paused before and assigned again (librdkafka would keep it paused).
  virtual Status pause(const std::vector<TopicPartition>& parts) = 0;
  virtual Status resume(const std::vector<TopicPartition>& parts) = 0;
  virtual std::vector<TopicPartition> assignment() const = 0;
  /// The partition's log end (its high watermark) as the last fetch saw it,
  /// without asking the broker; nullopt while unknown. For the lag gauge.
  virtual std::optional<int64_t> log_end(const TopicPartition& tp) const { return std::nullopt; }
  /// Leaves the group (revoking through the hooks). Idempotent.
  virtual void close() = 0;
};

/// Creates a group member whose rebalances call `hooks`.
using ConsumerFactory = std::function<Result<std::unique_ptr<Consumer>>(RebalanceHooks hooks)>;

/// A consumer-group member with auto-commit and auto offset store off: the
/// caller stores offsets where it stores its effects (STYLE.md §4).
class KafkaConsumer final : public Consumer {
 public:
  static Result<std::unique_ptr<KafkaConsumer>> create(const KafkaOptions& options, const std::string& group_id,
                                                       const std::vector<std::string>& topics, RebalanceHooks hooks);
  /// create() as a ConsumerFactory, for the consumer loop.
  static ConsumerFactory factory(KafkaOptions options, std::string group_id, std::vector<std::string> topics);
  ~KafkaConsumer() override;

  Result<std::vector<InMessage>> poll_batch(std::size_t max, std::chrono::milliseconds timeout) override;
  void commit_async(const std::map<TopicPartition, int64_t>& next_offsets) override;
  Status pause(const std::vector<TopicPartition>& parts) override;
  Status resume(const std::vector<TopicPartition>& parts) override;
  std::vector<TopicPartition> assignment() const override;
  std::optional<int64_t> log_end(const TopicPartition& tp) const override;
  void close() override;

  struct Impl;  // public only so librdkafka's C rebalance callback can reach it

 private:
  explicit KafkaConsumer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Reads chosen ranges of partitions outside any group (no subscribe, no
/// commits): `starling replay` uses it to read a topic's past while the
/// stages' groups keep running. Also answers ListOffsets questions.
/// Lifecycle: create, query or assign, poll from one thread, destroy.
class TopicReader {
 public:
  static Result<std::unique_ptr<TopicReader>> create(const KafkaOptions& options);
  ~TopicReader();
  /// How many partitions the topic has; an error names a missing topic.
  Result<int> partitions(const std::string& topic, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// [low, high): the first offset still stored and the next one to be written.
  Result<std::pair<int64_t, int64_t>> watermarks(const TopicPartition& tp,
                                                 std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// ListOffsets by timestamp: the first offset whose timestamp is >= ts_ms,
  /// or the high watermark when there is none.
  Result<int64_t> offset_for_time(const TopicPartition& tp, int64_t ts_ms,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// Starts reading these partitions at these offsets (replacing any earlier assignment).
  Status assign(const std::map<TopicPartition, int64_t>& starts);
  /// Up to `max` messages, waiting at most `timeout` for the first.
  Result<std::vector<InMessage>> poll_batch(std::size_t max, std::chrono::milliseconds timeout);

 private:
  struct Impl;
  explicit TopicReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// The offsets a group has committed for these partitions (OffsetFetch,
/// without joining the group): -1 for a partition it never committed.
Result<std::map<TopicPartition, int64_t>> committed_offsets(
    const KafkaOptions& options, const std::string& group, const std::vector<TopicPartition>& parts,
    std::chrono::milliseconds timeout = std::chrono::seconds(10));

/// How far a consumer group is behind on one partition.
struct PartitionLag {
  TopicPartition tp;
  int64_t committed = -1;  // the group's next offset to read; -1: never committed
  int64_t log_start = 0;   // the first offset still stored
  int64_t log_end = 0;     // the next offset to be written (high watermark)
  /// Records not yet processed: log_end - max(committed, log_start).
  int64_t lag = 0;
  /// The timestamp of the first unprocessed record, when lag > 0 and it was
  /// read in time.
  std::optional<int64_t> oldest_unprocessed_ms;
};

/// Each partition of `topics` (a topic that does not exist is left out), with
/// the group's committed offsets, the log's bounds and the first unprocessed
/// record's timestamp. Read without joining the group.
Result<std::vector<PartitionLag>> group_lag(const KafkaOptions& options, const std::string& group,
                                            const std::vector<std::string>& topics,
                                            std::chrono::milliseconds timeout = std::chrono::seconds(10));

struct TopicSpec {
  std::string name;
  int partitions = 1;
  int replication = -1;  // the broker's default
};

/// Creates topics through the admin API; a topic that exists already is fine.
Status create_topics(const KafkaOptions& options, const std::vector<TopicSpec>& topics,
                     std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace starling::kafka
