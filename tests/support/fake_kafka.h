#pragma once
// Fakes of the kafka adapter's seams (broker-adapters/kafka/kafka.h), for unit
// tests of the consumer loop and of the stages: a consumer-group member over
// in-memory partition logs, whose rebalances a test scripts, and a producer
// whose delivery reports a test decides.

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "broker-adapters/kafka/kafka.h"

namespace starling::testing {

/// A group member over in-memory logs. poll_batch() first runs the scripted
/// rebalances that are due, then returns messages from the assigned, unpaused
/// partitions in partition order, each from its position on. A rebalance may
/// also be scripted to fire in the middle of a poll (after `after` messages
/// were taken), as librdkafka does when the group changes between two of the
/// fetched messages that one poll_batch collects.
class FakeConsumer final : public kafka::Consumer {
 public:
  struct Rebalance {
    std::vector<kafka::TopicPartition> revoke;  // all of the assignment when `revoke_all`
    bool revoke_all = false;
    std::vector<kafka::TopicPartition> assign;
    std::size_t after = 0;       // messages into the poll it fires in
    std::function<bool()> when;  // fires only once this holds (checked at each poll)
  };

  FakeConsumer() = default;
  explicit FakeConsumer(kafka::RebalanceHooks hooks) : hooks_(std::move(hooks)) {}
  void set_hooks(kafka::RebalanceHooks hooks) { hooks_ = std::move(hooks); }
  /// A ConsumerFactory handing out this fake (borrowed: the test keeps it).
  kafka::ConsumerFactory factory();

  /// Appends a message to a partition's log (its offset is the log's size).
  void append(const std::string& topic, int32_t partition, std::string value) {
    std::lock_guard lock(mu_);
    auto& log = logs_[{topic, partition}];
    kafka::InMessage m;
    m.topic = topic;
    m.partition = partition;
    m.offset = static_cast<int64_t>(log.size());
    m.value = std::move(value);
    log.push_back(std::move(m));
  }
  /// Fires at the next poll (or mid-poll, see Rebalance::after).
  void schedule(Rebalance r) {
    std::lock_guard lock(mu_);
    script_.push_back(std::move(r));
  }
  /// The calls made, in order: "poll", "pause 0,1", "resume 0,1", "close".
  std::vector<std::string> calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }
  std::set<kafka::TopicPartition> paused() const {
    std::lock_guard lock(mu_);
    return paused_;
  }
  /// The group's committed offsets, and how many commits set them.
  std::map<kafka::TopicPartition, int64_t> committed() const {
    std::lock_guard lock(mu_);
    return committed_;
  }
  int commits() const {
    std::lock_guard lock(mu_);
    return commits_;
  }
  int polls() const {
    std::lock_guard lock(mu_);
    return polls_;
  }
  /// Every assigned partition was read to its end.
  bool drained() const {
    std::lock_guard lock(mu_);
    return std::all_of(assigned_.begin(), assigned_.end(), [this](const auto& tp) {
      auto pos = position_.find(tp);
      auto log = logs_.find(tp);
      const int64_t end = log == logs_.end() ? 0 : static_cast<int64_t>(log->second.size());
      return (pos == position_.end() ? 0 : pos->second) >= end;
    });
  }

  Result<std::vector<kafka::InMessage>> poll_batch(std::size_t max, std::chrono::milliseconds timeout) override {
    std::vector<kafka::InMessage> out;
    {
      std::lock_guard lock(mu_);
      ++polls_;
      calls_.push_back("poll");
    }
    fire_due(0);
    for (;;) {
      std::optional<kafka::InMessage> next;
      {
        std::lock_guard lock(mu_);
        if (out.size() >= max) break;
        for (const auto& tp : assigned_) {
          if (paused_.contains(tp)) continue;
          auto& pos = position_[tp];
          const auto& log = logs_[tp];
          if (pos < static_cast<int64_t>(log.size())) {
            next = log[static_cast<std::size_t>(pos++)];
            break;
          }
        }
      }
      if (!next) break;
      out.push_back(std::move(*next));
      // As KafkaConsumer: what was taken before a rebalance is left out.
      if (fire_due(out.size())) out.clear();
    }
    return out;
  }
  void commit_async(const std::map<kafka::TopicPartition, int64_t>& next_offsets) override {
    std::lock_guard lock(mu_);
    ++commits_;
    for (const auto& [tp, off] : next_offsets) committed_[tp] = off;
  }
  Status pause(const std::vector<kafka::TopicPartition>& parts) override {
    std::lock_guard lock(mu_);
    calls_.push_back("pause " + names(parts));
    paused_.insert(parts.begin(), parts.end());
    return {};
  }
  Status resume(const std::vector<kafka::TopicPartition>& parts) override {
    std::lock_guard lock(mu_);
    calls_.push_back("resume " + names(parts));
    for (const auto& tp : parts) paused_.erase(tp);
    return {};
  }
  std::vector<kafka::TopicPartition> assignment() const override {
    std::lock_guard lock(mu_);
    return assigned_;
  }
  std::optional<int64_t> log_end(const kafka::TopicPartition& tp) const override {
    std::lock_guard lock(mu_);
    auto it = logs_.find(tp);
    if (it == logs_.end()) return std::nullopt;
    return static_cast<int64_t>(it->second.size());
  }
  void close() override {
    std::vector<kafka::TopicPartition> revoked;
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      closed_ = true;
      calls_.push_back("close");
      revoked = assigned_;
    }
    if (!revoked.empty()) revoke(revoked);
  }

 private:
  static std::string names(const std::vector<kafka::TopicPartition>& parts) {
    std::string s;
    for (const auto& tp : parts) s += (s.empty() ? "" : ",") + std::to_string(tp.partition);
    return s;
  }
  // Runs the scripted rebalances due `taken` messages into a poll, outside
  // the lock (the hooks call back into the consumer). True when one ran.
  bool fire_due(std::size_t taken) {
    bool fired = false;
    for (;;) {
      Rebalance r;
      std::function<bool()> when;
      {
        std::lock_guard lock(mu_);
        if (script_.empty() || script_.front().after != taken) return fired;
        when = script_.front().when;
      }
      if (when && !when()) return fired;  // outside the lock: it may look at this fake
      {
        std::lock_guard lock(mu_);
        r = std::move(script_.front());
        script_.pop_front();
        if (r.revoke_all) r.revoke = assigned_;
      }
      if (!r.revoke.empty()) revoke(r.revoke);
      if (!r.assign.empty()) assign(r.assign);
      fired = true;
    }
  }
  void revoke(const std::vector<kafka::TopicPartition>& parts) {
    if (hooks_.on_revoke) hooks_.on_revoke(parts);
    std::lock_guard lock(mu_);
    calls_.push_back("revoke " + names(parts));
    std::erase_if(assigned_, [&](const auto& tp) { return std::find(parts.begin(), parts.end(), tp) != parts.end(); });
    for (const auto& tp : parts) paused_.erase(tp);
  }
  void assign(const std::vector<kafka::TopicPartition>& parts) {
    const auto starts = hooks_.on_assign ? hooks_.on_assign(parts) : std::map<kafka::TopicPartition, int64_t>{};
    std::lock_guard lock(mu_);
    calls_.push_back("assign " + names(parts));
    for (const auto& tp : parts) {
      auto it = starts.find(tp);
      auto c = committed_.find(tp);
      int64_t start = it != starts.end() ? it->second : c != committed_.end() ? c->second : 0;
      // librdkafka's logical offsets: -2 the beginning, -1 the end.
      if (start == -2) start = 0;
      if (start == -1) start = static_cast<int64_t>(logs_[tp].size());
      position_[tp] = start;
      assigned_.push_back(tp);
    }
  }

  kafka::RebalanceHooks hooks_;
  mutable std::mutex mu_;
  std::map<kafka::TopicPartition, std::vector<kafka::InMessage>> logs_;
  std::map<kafka::TopicPartition, int64_t> position_;
  std::map<kafka::TopicPartition, int64_t> committed_;
  std::vector<kafka::TopicPartition> assigned_;
  std::set<kafka::TopicPartition> paused_;
  std::deque<Rebalance> script_;
  std::vector<std::string> calls_;
  int polls_ = 0;
  int commits_ = 0;
  bool closed_ = false;
};

/// Forwards to a FakeConsumer the test owns, so the test can look at it after
/// the loop destroyed its consumer.
class BorrowedConsumer final : public kafka::Consumer {
 public:
  explicit BorrowedConsumer(FakeConsumer& fake) : fake_(fake) {}
  Result<std::vector<kafka::InMessage>> poll_batch(std::size_t max, std::chrono::milliseconds timeout) override {
    return fake_.poll_batch(max, timeout);
  }
  void commit_async(const std::map<kafka::TopicPartition, int64_t>& next) override { fake_.commit_async(next); }
  Status pause(const std::vector<kafka::TopicPartition>& parts) override { return fake_.pause(parts); }
  Status resume(const std::vector<kafka::TopicPartition>& parts) override { return fake_.resume(parts); }
  std::vector<kafka::TopicPartition> assignment() const override { return fake_.assignment(); }
  std::optional<int64_t> log_end(const kafka::TopicPartition& tp) const override { return fake_.log_end(tp); }
  void close() override { fake_.close(); }

 private:
  FakeConsumer& fake_;
};

inline kafka::ConsumerFactory FakeConsumer::factory() {
  return [this](kafka::RebalanceHooks hooks) -> Result<std::unique_ptr<kafka::Consumer>> {
    set_hooks(std::move(hooks));
    return std::unique_ptr<kafka::Consumer>(std::make_unique<BorrowedConsumer>(*this));
  };
}

/// A producer whose delivery reports `decide` writes (default: PERSISTED),
/// synchronously, inside produce(). It keeps every message it was given.
// For fuzz targets: persists every message unless told to fail, and keeps
// nothing (a run sends millions).
class NullProducer final : public kafka::Producer {
 public:
  enum Mode { kPersist = 0, kTransientFailure = 1, kPermanentFailure = 2 };
  std::atomic<int> mode{kPersist};
  void produce(const kafka::OutMessage& msg, kafka::DeliveryCallback done) override {
    kafka::Delivery d;
    d.topic = msg.topic;
    const int m = mode.load();
    d.status = m == kPersist ? kafka::DeliveryStatus::kPersisted : kafka::DeliveryStatus::kNotPersisted;
    if (m != kPersist) d.error = "not persisted (NullProducer)";
    d.permanent = m == kPermanentFailure;
    done(d);
  }
  Status flush(std::chrono::milliseconds) override { return {}; }
};

class FakeProducer final : public kafka::Producer {
 public:
  using Decide = std::function<kafka::Delivery(const kafka::OutMessage&)>;
  void decide(Decide d) {
    std::lock_guard lock(mu_);
    decide_ = std::move(d);
  }
  std::vector<kafka::OutMessage> produced() const {
    std::lock_guard lock(mu_);
    return produced_;
  }
  void produce(const kafka::OutMessage& msg, kafka::DeliveryCallback done) override {
    kafka::Delivery d;
    {
      std::lock_guard lock(mu_);
      produced_.push_back(msg);
      d = decide_ ? decide_(msg) : persisted();
    }
    d.topic = msg.topic;
    done(d);
  }
  Status flush(std::chrono::milliseconds) override { return {}; }

  static kafka::Delivery persisted() {
    kafka::Delivery d;
    d.status = kafka::DeliveryStatus::kPersisted;
    return d;
  }
  static kafka::Delivery failed(std::string error, bool permanent) {
    kafka::Delivery d;
    d.status = kafka::DeliveryStatus::kNotPersisted;
    d.error = std::move(error);
    d.permanent = permanent;
    return d;
  }

 private:
  mutable std::mutex mu_;
  Decide decide_;
  std::vector<kafka::OutMessage> produced_;
};

}  // namespace starling::testing
