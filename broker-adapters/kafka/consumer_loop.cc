#include "broker-adapters/kafka/consumer_loop.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "services/common/retry.h"
#include "services/common/shutdown.h"

namespace starling::kafka {

namespace {
// How often a wait looks at its deadline, at stop() and (once paused) at the
// consumer.
constexpr std::chrono::milliseconds kSlice{50};
}  // namespace

/// One long-lived thread that runs the stores, one at a time, in order (a
/// thread per batch cost a clone and a join per poll under live traffic).
class ConsumerLoop::StoreThread {
 public:
  StoreThread() : thread_([this] { run(); }) {}
  ~StoreThread() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  std::future<Status> submit(std::function<Status()> fn) {
    std::packaged_task<Status()> task(std::move(fn));
    auto f = task.get_future();
    {
      std::lock_guard lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
    return f;
  }

 private:
  void run() {
    for (;;) {
      std::packaged_task<Status()> task;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return done_ || !tasks_.empty(); });
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::packaged_task<Status()>> tasks_;
  bool done_ = false;
  std::thread thread_;
};

ConsumerLoop::ConsumerLoop(std::string name, Stage& stage, Producer& producer, LoopOptions options)
    : name_(std::move(name)),
      stage_label_(name_.substr(0, name_.find(' '))),
      stage_(stage),
      producer_(producer),
      options_(std::move(options)),
      store_thread_(std::make_unique<StoreThread>()) {}

ConsumerLoop::~ConsumerLoop() = default;

bool ConsumerLoop::stopping() const { return options_.stop ? options_.stop() : shutdown_requested(); }

int ConsumerLoop::run(const ConsumerFactory& make_consumer) {
  RebalanceHooks hooks;
  hooks.on_assign = [this](const std::vector<TopicPartition>& parts) { return on_assign(parts); };
  hooks.on_revoke = [this](const std::vector<TopicPartition>& parts) { on_revoke(parts); };
  auto consumer = make_consumer(std::move(hooks));
  if (!consumer) {
    spdlog::critical("{}: {}", name_, consumer.error().message);
    return 1;
  }
  consumer_ = consumer->get();
  const int rc = loop();
  // Stopping: the batch in flight is stored if its outputs make it (without
  // retries: stop() is true); whatever is staged beyond is dropped and redone
  // by the next run.
  if (rc == 0 && !abandoned_) (void)settle(true);
  drop();
  commit_to_group(true);
  consumer_->close();  // revokes through the hooks; nothing is in flight
  consumer_ = nullptr;
  return rc;
}

int ConsumerLoop::loop() {
  while (!stopping()) {
    if (abandoned_) drop();  // a rebalance while a send or store was failing
    std::vector<InMessage> batch;
    if (!carried_.empty()) {
      batch.swap(carried_);
    } else {
      // While a batch is in flight, take only what is already fetched: with
      // nothing more to apply, settling it is the next thing to do.
      auto polled =
          consumer_->poll_batch(options_.batch_max, in_flight_ ? std::chrono::milliseconds(0) : options_.batch_wait);
      if (!polled) {
        spdlog::critical("{}: {}", name_, polled.error().message);
        return 1;
      }
      if (hook_error_) return 1;
      batch = std::move(*polled);
    }
    const bool short_batch = batch.size() < options_.batch_max;
    const bool idle = batch.empty();
    // A settle that failed: abandoned work is dropped at the top of the loop;
    // a stop ends it; anything else is permanent.
    std::optional<int> ended;
    auto settled = [&](bool wait_store) {
      auto st = settle(wait_store);
      if (st && !abandoned_) return true;
      if (!abandoned_) {
        if (!stopping()) spdlog::critical("{}: {}", name_, st.error().message);
        ended = stopping() ? 0 : 1;
      }
      return false;
    };
    if (!idle) {
      const auto n = batch.size();
      Offsets next;
      std::map<std::string, uint64_t> per_topic;
      for (const auto& m : batch) {
        auto& o = next[{m.topic, m.partition}];
        o = std::max(o, m.offset + 1);
        ++per_topic[m.topic];
      }
      for (const auto& [topic, k] : per_topic)
        count(in_counts_, "starling_stage_records_in_total", "Input records a stage applied, by stage and input topic",
              topic, k);
      auto work = stage_.apply(std::move(batch));
      if (!work) {
        spdlog::critical("{}: applying a batch of {}: {}", name_, n, work.error().message);
        return 1;
      }
      if (auto st = replace_too_large(work->outputs); !st) {
        spdlog::critical("{}: {}", name_, st.error().message);
        return 1;
      }
      // Pipelined: batch n+1 was applied while n's outputs flew; now n is
      // settled, and only then are n+1's outputs sent.
      if (!settled(false)) {
        if (ended) return *ended;
        continue;
      }
      in_flight_.emplace(InFlight{std::move(*work), nullptr, std::move(next)});
      in_flight_->sending = Deliveries::send(producer_, in_flight_->work.outputs);
    }
    if ((idle || !options_.pipelined) && !settled(true)) {
      if (ended) return *ended;
      continue;
    }
    // Offsets stored within the interval of the last group commit go out
    // once it has passed, even when no batch comes to carry them.
    if (idle) commit_to_group(false);
    update_lag(false);
    if (short_batch && !in_flight_ && !storing_) {
      if (auto st = stage_.caught_up(idle); !st) {
        if (!is_transient(st.error())) {
          spdlog::critical("{}: {}", name_, st.error().message);
          return 1;
        }
        spdlog::warn("{}: {}", name_, st.error().message);
      }
    }
  }
  return 0;
}

Result<std::vector<OutMessage>> Stage::too_large(const OutMessage& output, std::size_t size, std::size_t limit) {
  return fail(Errc::kInvalidArgument,
              fmt::format("an output to {} is {} bytes, over the {} a message may have, and this "
                          "stage has no dead letter for it",
                          output.topic, size, limit));
}

std::size_t output_bytes(const OutMessage& m) {
  std::size_t n = m.key.size() + m.value.size();
  for (const auto& [k, v] : m.headers) n += k.size() + v.size();
  return n;
}

Status ConsumerLoop::replace_too_large(std::vector<OutMessage>& outputs) {
  const auto limit = options_.max_output_bytes;
  if (std::none_of(outputs.begin(), outputs.end(), [&](const OutMessage& m) { return output_bytes(m) > limit; })) {
    return {};
  }
  std::vector<OutMessage> sent;
  sent.reserve(outputs.size());
  for (auto& out : outputs) {
    const auto size = output_bytes(out);
    if (size <= limit) {
      sent.push_back(std::move(out));
      continue;
    }
    auto instead = stage_.too_large(out, size, limit);
    if (!instead) return std::unexpected(instead.error());
    for (auto& m : *instead) {
      if (output_bytes(m) > limit) {
        return fail(Errc::kInvalidArgument,
                    fmt::format("the dead letter for an output of {} bytes to {} is still {} bytes, over {}", size,
                                out.topic, output_bytes(m), limit));
      }
      sent.push_back(std::move(m));
    }
    spdlog::warn("{}: an output to {} is {} bytes, over the {} a message may have: sent as too_large instead", name_,
                 out.topic, size, limit);
  }
  outputs = std::move(sent);
  return {};
}

Status ConsumerLoop::settle(bool wait_store) {
  if (auto st = finish_store(); !st || abandoned_) return st;
  if (!in_flight_) return {};
  if (auto st = deliver(*in_flight_); !st || abandoned_) return st;
  Work work = std::move(in_flight_->work);
  storing_next_ = std::move(in_flight_->next);
  in_flight_.reset();
  std::map<std::string, uint64_t> per_topic;
  for (const auto& out : work.outputs) ++per_topic[out.topic];
  for (const auto& [topic, k] : per_topic)
    count(out_counts_, "starling_stage_records_out_total",
          "Records a stage produced and Kafka persisted, by stage and output topic", topic, k);
  if (work.persisted) work.persisted();
  storing_.emplace(std::move(work));
  stored_ = store_thread_->submit([this, store = storing_->store] {
    return retry_transient(name_ + ": storing a batch", store, [this] { return give_up_store_.load() || stopping(); });
  });
  return wait_store ? finish_store() : Status{};
}

Status ConsumerLoop::deliver(InFlight& flight) {
  const auto since = std::chrono::steady_clock::now();
  for (int attempt = 1;; ++attempt) {
    const auto deadline = std::chrono::steady_clock::now() + options_.delivery_timeout;
    Status st;
    for (;;) {
      st = flight.sending->wait(kSlice);
      if (st || st.error().code != Errc::kTimeout || std::chrono::steady_clock::now() >= deadline) break;
      keep_membership(since);
      if (abandoned_) return st;
    }
    if (st) {
      resume_if_paused();
      return st;
    }
    // Outputs first, the effect after: the same outputs are sent again until
    // they are persisted (duplicates are idempotent downstream), never
    // skipped; but one that can never be persisted is not retried.
    if (!is_transient(st.error()) || stopping()) return st;
    spdlog::warn("{}: producing a batch of {} failed (attempt {}): {}", name_, flight.work.outputs.size(), attempt,
                 st.error().message);
    const auto until = std::chrono::steady_clock::now() + retry_backoff(attempt);
    while (std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(kSlice);
      keep_membership(since);
      if (abandoned_) return st;
      if (stopping()) return st;
    }
    flight.sending = Deliveries::send(producer_, flight.work.outputs);
  }
}

Status ConsumerLoop::finish_store() {
  if (!storing_) return {};
  const auto since = std::chrono::steady_clock::now();
  // A rebalance while waiting makes the store give up at its next attempt;
  // the attempt under way is waited for, whatever it does.
  while (stored_.wait_for(kSlice) != std::future_status::ready) keep_membership(since);
  auto st = stored_.get();
  Work work = std::move(*storing_);
  storing_.reset();
  if (!st) return st;  // the work is dropped: not stored
  if (work.stored) work.stored();
  for (const auto& [tp, off] : storing_next_) {
    uncommitted_[tp] = off;
    positions_[tp] = off;
  }
  if (!abandoned_) {
    resume_if_paused();
    commit_to_group(false);
  }
  return {};
}

void ConsumerLoop::commit_to_group(bool now) {
  if (uncommitted_.empty() || consumer_ == nullptr) return;
  const auto t = std::chrono::steady_clock::now();
  if (!now && t - last_group_commit_ < options_.group_commit_interval) return;
  consumer_->commit_async(uncommitted_);
  uncommitted_.clear();
  last_group_commit_ = t;
}

void ConsumerLoop::count(std::map<std::string, Counter*>& cache, const char* series, const char* help,
                         const std::string& topic, uint64_t n) {
  auto& c = cache[topic];
  if (c == nullptr) c = &metrics().counter(series, help, {{"stage", stage_label_}, {"topic", topic}});
  c->add(n);
}

void ConsumerLoop::update_lag(bool now) {
  if (consumer_ == nullptr) return;
  const auto t = std::chrono::steady_clock::now();
  if (!now && t - last_lag_ < options_.group_commit_interval) return;
  last_lag_ = t;
  for (const auto& [tp, next] : positions_) {
    const auto end = consumer_->log_end(tp);
    if (!end) continue;
    auto& g = lags_[tp];
    if (g == nullptr) {
      g = &metrics().gauge("starling_stage_lag_records",
                           "Records in a partition after the last batch the stage stored (log end as last fetched)",
                           {{"stage", stage_label_}, {"topic", tp.topic}, {"partition", std::to_string(tp.partition)}});
    }
    g->set(static_cast<double>(std::max<int64_t>(0, *end - next)));
  }
}

void ConsumerLoop::forget_lag(const std::vector<TopicPartition>& parts) {
  for (const auto& tp : parts) {
    positions_.erase(tp);
    if (lags_.erase(tp) > 0) {
      metrics().remove_gauge(
          "starling_stage_lag_records",
          {{"stage", stage_label_}, {"topic", tp.topic}, {"partition", std::to_string(tp.partition)}});
    }
  }
}

void ConsumerLoop::keep_membership(std::chrono::steady_clock::time_point waiting_since) {
  if (in_hook_ || abandoned_ || consumer_ == nullptr) return;
  if (std::chrono::steady_clock::now() - waiting_since < options_.pause_after) return;
  if (!paused_) {
    if (auto st = consumer_->pause(consumer_->assignment()); !st) {
      spdlog::warn("{}: {}", name_, st.error().message);
      return;
    }
    paused_ = true;
    spdlog::info("{}: waiting for a batch to be persisted or stored; its partitions are paused", name_);
  }
  waiting_ = true;
  auto polled = consumer_->poll_batch(options_.batch_max, std::chrono::milliseconds(0));
  waiting_ = false;
  // Normally nothing (paused); after a rebalance in this poll, messages of the
  // new assignment: the next batch, after the abandoned work is dropped.
  if (polled) {
    carried_.insert(carried_.end(), std::make_move_iterator(polled->begin()), std::make_move_iterator(polled->end()));
  }
}

void ConsumerLoop::resume_if_paused() {
  if (!paused_) return;
  paused_ = false;
  if (auto st = consumer_->resume(consumer_->assignment()); !st) spdlog::warn("{}: {}", name_, st.error().message);
  spdlog::info("{}: resumed", name_);
}

void ConsumerLoop::drop() {
  give_up_store_ = true;
  if (storing_) {
    auto st = stored_.get();
    // It made it after all. Its offsets are not committed to the group: its
    // partitions may have moved; the next batch of each commits past it.
    if (st && storing_->stored) storing_->stored();
    storing_.reset();
  }
  give_up_store_ = false;
  in_flight_.reset();
  stage_.abandon();
  abandoned_ = false;
}

void ConsumerLoop::before_rebalance() {
  carried_.clear();  // taken before the rebalance: the partitions are re-seeked
  if (waiting_) {
    // Stuck on a failing send or store: the work is given up (drop(), once
    // the poll returns), after the store attempt under way has ended, so the
    // stage reads its stored offsets only then.
    abandoned_ = true;
    give_up_store_ = true;
    if (storing_) stored_.wait();
  } else {
    in_hook_ = true;
    auto st = settle(true);
    in_hook_ = false;
    if (!st) fail_in_hook(st.error());
  }
  // Before partitions move, the group hears where this member got to, so
  // lag tools are right while the next owner starts (from its stored offsets).
  commit_to_group(true);
  paused_ = false;  // a new assignment starts unpaused
}

std::map<TopicPartition, int64_t> ConsumerLoop::on_assign(const std::vector<TopicPartition>& parts) {
  before_rebalance();
  std::map<TopicPartition, int64_t> starts;
  if (hook_error_) return starts;
  auto stored = retry_transient(
      name_ + ": reading stored offsets", [&] { return stage_.assigned(parts); }, [this] { return stopping(); });
  if (!stored) {
    fail_in_hook(stored.error());
    return starts;
  }
  for (const auto& tp : parts) stored->try_emplace(tp, kOffsetBeginning);
  for (const auto& [tp, off] : *stored) {
    if (off >= 0) positions_[tp] = off;
  }
  spdlog::debug("{}: assigned {} partitions", name_, parts.size());
  return std::move(*stored);
}

void ConsumerLoop::on_revoke(const std::vector<TopicPartition>& parts) {
  before_rebalance();
  forget_lag(parts);
  stage_.revoked(parts);
  spdlog::info("{}: revoked {} partitions", name_, parts.size());
}

void ConsumerLoop::fail_in_hook(const Error& e) {
  if (stopping()) return;  // a stop interrupted the settle: run() ends it
  spdlog::critical("{}: during a rebalance: {}", name_, e.message);
  hook_error_ = e;
}

}  // namespace starling::kafka
