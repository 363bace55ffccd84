#pragma once
// The one consumer loop of the stages (clean, load, saga; STYLE.md §4): poll
// a bounded batch, let the stage apply it, produce the batch's outputs until
// every one is PERSISTED, then store its effect together with the next input
// offsets. Transient failures are retried with the same batch while the
// group keeps this member (its partitions paused, the consumer still polled);
// a permanent failure stops the loop instead of wedging it. Before partitions
// move, everything in flight is settled.

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/metrics.h"

namespace starling::kafka {

/// One batch's effect, as a stage hands it to the loop. The loop produces
/// `outputs`, and once every one is PERSISTED calls `persisted`, `store` and
/// `stored`, batch after batch in input order. So outputs are at least once,
/// and the effect is stored once, atomically with the offsets after the batch
/// (in the stage's own store: RocksDB, the sink's transaction).
struct Work {
  std::vector<OutMessage> outputs;
  /// On the loop thread, once every output is PERSISTED.
  std::function<void()> persisted;
  /// Stores the effect and the next input offsets in one atomic write. Runs
  /// on the loop's store thread (a pipelined stage applies the next batch
  /// meanwhile), one store at a time; retried while its error is transient
  /// (is_transient, services/common/retry.h).
  std::function<Status()> store;
  /// On the loop thread, once `store` succeeded.
  std::function<void()> stored;
};

/// What a stage brings to the loop: decoding, applying and storing, its own.
/// Every method runs on the thread that called ConsumerLoop::run, except
/// Work::store; none runs while a store is running, except apply() of a
/// pipelined stage (which must then touch nothing that store touches).
class Stage {
 public:
  virtual ~Stage() = default;
  /// Partitions were assigned (nothing is in flight): where each starts, from
  /// the offsets stored beside the stage's effects. A partition left out
  /// starts at the beginning of its log, never at the group's committed
  /// offset: that one is for lag tools, and may be another member's progress
  /// on state this member does not hold. A transient error is retried; a
  /// permanent one stops the loop.
  virtual Result<std::map<TopicPartition, int64_t>> assigned(const std::vector<TopicPartition>& parts) = 0;
  /// Partitions are being taken away. Every batch before is stored, or was
  /// abandoned (abandon()) because storing it was failing.
  virtual void revoked(const std::vector<TopicPartition>& parts) {}
  /// Decodes and applies a batch: stages its effect and returns the work that
  /// stores it. Reads state as if every earlier batch were stored. An error
  /// stops the loop.
  virtual Result<Work> apply(std::vector<InMessage> batch) = 0;
  /// The batches applied and not stored are dropped (a stop, a permanent
  /// failure, or partitions revoked while their store was failing): forget
  /// what apply() staged for them. They are polled again from the stored
  /// offsets, by this member or the partitions' next owner.
  virtual void abandon() {}
  /// After a poll that returned fewer than batch_max messages, once every
  /// batch is stored: deadlines, relays, pings. `idle`: it returned none. A
  /// permanent error stops the loop; a transient one is logged.
  virtual Status caught_up(bool idle) { return {}; }
  /// An output of apply() is larger than LoopOptions::max_output_bytes: no
  /// retry could ever persist it (message.max.bytes), so it is not sent.
  /// Returns what to send instead, each message within `limit`: a truncated
  /// dead letter with the reason too_large, plus whatever keeps its saga
  /// exact (a REJECTED fact for that seq). An error (the default: a stage
  /// that has no dead letter) stops the loop, since dropping a record
  /// silently is never an option.
  virtual Result<std::vector<OutMessage>> too_large(const OutMessage& output, std::size_t size, std::size_t limit);
};

/// The largest output the loop sends: librdkafka's default message.max.bytes
/// (1,000,000), less room for the record batch's own framing.
inline constexpr std::size_t kMaxOutputBytes = 1'000'000 - 4'096;

/// What one output weighs against message.max.bytes: key, value and headers.
std::size_t output_bytes(const OutMessage& m);

struct LoopOptions {
  std::size_t batch_max = 1000;
  /// How long a poll waits for its first message.
  std::chrono::milliseconds batch_wait{100};
  /// Apply batch n+1 while batch n's outputs are in flight and batch n-1's
  /// effect is being stored. Off: each batch is stored before the next poll.
  bool pipelined = false;
  /// How long one send of a batch's outputs may take before it is sent again.
  std::chrono::milliseconds delivery_timeout{60'000};
  /// A send or a store slower than this pauses the assignment: the loop then
  /// polls the consumer while it waits (so the group keeps this member through
  /// an outage of any length) and resumes once it is done.
  std::chrono::milliseconds pause_after{1000};
  /// When to stop; default: shutdown_requested(). May be called from the
  /// store thread.
  std::function<bool()> stop;
  /// An output larger than this goes to Stage::too_large instead of Kafka.
  std::size_t max_output_bytes = kMaxOutputBytes;
  /// How often the offsets after the stored batches are also committed to
  /// the consumer group (async), so lag tools see the stage's progress: at the
  /// first store after this interval, and before partitions move or the loop
  /// stops. 0: after every store. The stage's own store stays the source of
  /// truth; the group's offsets never run ahead of it.
  std::chrono::milliseconds group_commit_interval{1000};
};

/// The loop's metrics, labelled by stage (the first word of its name):
///   starling_stage_records_in_total{stage,topic}: input records applied;
///   starling_stage_records_out_total{stage,topic}: outputs persisted in Kafka;
///   starling_stage_lag_records{stage,topic,partition}: a partition's log end,
///     as the last fetch saw it, less the offset after the last stored batch
///     (refreshed every group_commit_interval; gone when the partition is).
class ConsumerLoop {
 public:
  /// `name` prefixes log lines ("clean ecowheels"); its first word is the
  /// metrics' stage label.
  ConsumerLoop(std::string name, Stage& stage, Producer& producer, LoopOptions options);
  ~ConsumerLoop();
  /// Creates the consumer and runs until stop(); then stores the batch in
  /// flight if its outputs make it, abandons the rest and closes the consumer.
  /// Returns 0 after a stop, 1 after a permanent failure or a fatal consumer
  /// error (what failed is not stored: a restart redoes it).
  int run(const ConsumerFactory& make_consumer);

 private:
  using Offsets = std::map<TopicPartition, int64_t>;
  struct InFlight {
    Work work;
    std::shared_ptr<Deliveries> sending;
    Offsets next;  // after the batch: each partition's last offset + 1
  };
  class StoreThread;

  bool stopping() const;
  int loop();
  /// Finishes the store under way; then waits until the batch in flight has
  /// every output PERSISTED and starts its store; with `wait_store`, waits
  /// for that too. An error: permanent, stopping, or abandoned_.
  Status settle(bool wait_store);
  Status deliver(InFlight& flight);
  /// Replaces every output over max_output_bytes with the stage's dead letter.
  Status replace_too_large(std::vector<OutMessage>& outputs);
  Status finish_store();
  /// While a send or store is slow: pause the assignment, then poll it (a
  /// rebalance in that poll abandons the work). Not inside a rebalance hook.
  void keep_membership(std::chrono::steady_clock::time_point waiting_since);
  void resume_if_paused();
  /// Forgets every batch not stored (waiting for a store under way first).
  void drop();
  /// Settles what is in flight (abandons it when stuck in a wait).
  void before_rebalance();
  std::map<TopicPartition, int64_t> on_assign(const std::vector<TopicPartition>& parts);
  void on_revoke(const std::vector<TopicPartition>& parts);
  /// After a settle that failed inside a rebalance hook: fatal.
  void fail_in_hook(const Error& e);
  /// Commits the stored offsets not yet committed to the group: when `now`,
  /// or once group_commit_interval has passed since the last commit.
  void commit_to_group(bool now);
  /// Counts records of `topic` into `series` (one of the loop's metrics).
  void count(std::map<std::string, Counter*>& cache, const char* series, const char* help, const std::string& topic,
             uint64_t n);
  /// Sets the lag gauge of every partition with a known position, once
  /// group_commit_interval has passed (or `now`).
  void update_lag(bool now);
  void forget_lag(const std::vector<TopicPartition>& parts);

  std::string name_;
  std::string stage_label_;
  Stage& stage_;
  Producer& producer_;
  LoopOptions options_;
  std::unique_ptr<StoreThread> store_thread_;
  Consumer* consumer_ = nullptr;

  std::optional<InFlight> in_flight_;
  std::optional<Work> storing_;
  Offsets storing_next_;  // storing_'s offsets
  Offsets uncommitted_;   // stored, not yet committed to the group
  std::chrono::steady_clock::time_point last_group_commit_{};
  std::map<std::string, Counter*> in_counts_;   // by topic
  std::map<std::string, Counter*> out_counts_;  // by topic
  Offsets positions_;                           // after the last stored batch, per partition
  std::map<TopicPartition, Gauge*> lags_;
  std::chrono::steady_clock::time_point last_lag_{};
  std::future<Status> stored_;
  std::vector<InMessage> carried_;  // polled while paused: the next batch
  bool paused_ = false;
  bool in_hook_ = false;    // inside a rebalance hook: waits may not poll
  bool waiting_ = false;    // inside a wait that polls
  bool abandoned_ = false;  // a rebalance while waiting gave the work up
  std::atomic<bool> give_up_store_{false};
  std::optional<Error> hook_error_;
};

}  // namespace starling::kafka
