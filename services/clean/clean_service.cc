#include "services/clean/clean_service.h"

#include <future>
#include <map>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "services/common/metrics.h"
#include "services/common/retry.h"
#include "services/common/shutdown.h"
#include "services/common/time.h"

namespace starling::clean {

namespace {
// librdkafka's RD_KAFKA_OFFSET_BEGINNING, without including librdkafka here.
constexpr int64_t kOffsetBeginning = -2;

// The next input offset whose effect is committed to RocksDB, per partition:
// how far this instance's state reaches (an operator's lag gauge; tests wait on it).
void publish_committed(const std::map<kafka::TopicPartition, int64_t>& offsets) {
  for (const auto& [tp, next] : offsets) {
    metrics()
        .gauge("starling_clean_committed_offset", "Next input offset whose state and outputs are committed",
               {{"topic", tp.topic}, {"partition", std::to_string(tp.partition)}})
        .set(static_cast<double>(next));
  }
}

// A batch whose outputs are on their way and whose state is sealed, uncommitted.
struct InFlight {
  CleanedBatch done;
  std::size_t in = 0;  // input messages
  double clean_ms = 0;
  std::chrono::steady_clock::time_point sent_at;
  std::shared_ptr<kafka::Deliveries> sending;
};

}  // namespace

CleanService::CleanService(const PipelineConfig& pipeline, RocksCleanStore& store, kafka::KafkaOptions kafka,
                           std::string instance, CleanOptions options)
    : pipeline_(pipeline), store_(store), kafka_(std::move(kafka)), instance_(std::move(instance)), options_(options),
      cleaner_(pipeline, instance_, options.threads) {}

int CleanService::run() {
  auto producer = kafka::KafkaProducer::create(
      kafka_, {.queue_full_wait = std::chrono::seconds(60),
               .topics = {pipeline_.clean_topic(), pipeline_.rejected_topic(), kSagaTopic}});
  if (!producer) {
    spdlog::critical("{}", producer.error().message);
    return 1;
  }
  uint64_t cleaned_total = 0;
  uint64_t rejected_total = 0;
  auto& cleaned_metric = metrics().counter("starling_clean_records_total", "Records cleaned or rejected",
                                           {{"pipeline", pipeline_.name}, {"outcome", "clean"}});
  auto& rejected_metric = metrics().counter("starling_clean_records_total", "Records cleaned or rejected",
                                            {{"pipeline", pipeline_.name}, {"outcome", "rejected"}});
  // At most one batch is in flight: its outputs sent, its state sealed in the
  // store and not yet committed; and at most one batch is committing: its
  // outputs PERSISTED, its RocksDB write running on a thread of its own while
  // this one cleans on. settle() first finishes the commit under way, then
  // waits until all of the in-flight batch's outputs are PERSISTED
  // (re-sending the same batch on failure) and starts its commit; with
  // `wait_commit` it also waits for that commit. Returns false only when
  // shutting down before that.
  struct Committing {
    RocksCleanStore::PreparedCommit prepared;
    std::future<Status> written;
    std::map<kafka::TopicPartition, int64_t> next_offsets;
    uint64_t cleaned = 0;
    uint64_t rejected = 0;
  };
  std::optional<InFlight> in_flight;
  std::optional<Committing> committing;
  auto finish_commit = [&]() -> bool {
    if (!committing) return true;
    const auto written = committing->written.get();
    if (!written) return false;  // shutting down while retrying
    store_.finish_commit(committing->prepared);
    const auto& done = *committing;
    publish_committed(done.next_offsets);
    cleaned_total += done.cleaned;
    rejected_total += done.rejected;
    cleaned_metric.add(done.cleaned);
    rejected_metric.add(done.rejected);
    committing.reset();
    return true;
  };
  auto settle = [&](bool wait_commit) -> bool {
    if (!finish_commit()) return false;
    if (!in_flight) return true;
    const auto t0 = std::chrono::steady_clock::now();
    auto sent = in_flight->sending->wait(std::chrono::seconds(60));
    if (!sent) {
      spdlog::warn("producing a batch of {} failed: {}", in_flight->done.out.size(), sent.error().message);
      // Outputs first, state and offsets after: retry the same outputs until
      // they are persisted (duplicates are idempotent downstream), never skip.
      sent = retry_until_done("producing a batch of " + std::to_string(in_flight->done.out.size()),
                              [&] { return kafka::produce_all(**producer, in_flight->done.out, std::chrono::seconds(60)); });
      if (!sent) return false;
    }
    const auto t1 = std::chrono::steady_clock::now();
    auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
    spdlog::debug("batch of {} in: cleaned in {:.1f} ms; outputs persisted {:.1f} ms after, {:.1f} ms of that waited",
                  in_flight->in, in_flight->clean_ms, ms(t1 - in_flight->sent_at), ms(t1 - t0));
    // The outputs go with the in-flight batch: the commit keeps only what it reports.
    const auto& done = in_flight->done;
    committing.emplace(
        Committing{store_.prepare_commit(done.next_offsets), {}, done.next_offsets, done.cleaned, done.rejected});
    in_flight.reset();
    // The write touches only RocksDB (state.h, PreparedCommit).
    committing->written = std::async(std::launch::async, [this, &prepared = committing->prepared] {
      return retry_until_done("committing clean state", [&] { return store_.write(prepared); });
    });
    return !wait_commit || finish_commit();
  };
  bool stop = false;  // settling failed inside a rebalance: shutting down
  kafka::RebalanceHooks hooks;
  hooks.on_assign = [this, &settle, &stop](const std::vector<kafka::TopicPartition>& parts) {
    // Nothing may be staged when offsets are read: the in-flight batch (if
    // any) is committed first, so the stored offsets are where input resumes.
    if (!settle(true)) stop = true;
    // A partition we stored resumes where its state stops. One we never had
    // starts at the beginning, so its devices' state is rebuilt by replay
    // (the outputs repeat; downstream is idempotent). Nothing is committed to
    // the group: the offsets live with the state.
    const auto stored = store_.offsets();
    publish_committed(stored);
    std::map<kafka::TopicPartition, int64_t> starts;
    std::size_t resumed = 0;
    for (const auto& tp : parts) {
      auto it = stored.find(tp);
      starts[tp] = it != stored.end() ? it->second : kOffsetBeginning;
      resumed += it != stored.end();
    }
    spdlog::info("assigned {} partitions; {} resume from offsets in RocksDB, the rest from the beginning", parts.size(),
                 resumed);
    return starts;
  };
  // The batch in flight is settled (persisted, committed) before partitions
  // go; after that nothing is staged, so a revoked partition has nothing more
  // to flush: its state stays in RocksDB, keyed by partition, and is not read.
  hooks.on_revoke = [&settle, &stop](const std::vector<kafka::TopicPartition>& parts) {
    if (!settle(true)) stop = true;
    spdlog::info("revoked {} partitions", parts.size());
  };
  // <p>.raw.replay carries `starling replay` output beside live traffic; its
  // offsets are stored per topic like the live ones, its device state apart
  // (cleaner.h: replay_state_partition).
  auto consumer = kafka::KafkaConsumer::create(kafka_, "starling-clean." + pipeline_.name,
                                               {pipeline_.raw_topic(), pipeline_.raw_replay_topic()}, std::move(hooks));
  if (!consumer) {
    spdlog::critical("{}", consumer.error().message);
    return 1;
  }
  // Pipelined: batch n+1 is polled and cleaned (reading the state batch n
  // staged) while batch n's outputs are on their way and batch n-1's state
  // is being written; then n is settled, and only then are n+1's outputs
  // sent. Commits stay in input order, one at a time, each after all of its
  // batch's outputs are persisted.
  while (!shutdown_requested() && !stop) {
    // While a batch is in flight, take only what is already fetched: with
    // nothing more to clean, settling it is the next thing to do.
    auto batch = (*consumer)->poll_batch(options_.batch_max,
                                         in_flight ? std::chrono::milliseconds(0) : options_.batch_wait);
    if (!batch) {
      spdlog::critical("{}", batch.error().message);
      return 1;
    }
    if (stop) break;
    // A rebalance inside the poll re-seeks to the stored offsets, so messages
    // already taken may come again in the same batch: keep the first copy
    // only (a second would be rejected as its own duplicate).
    std::map<kafka::TopicPartition, int64_t> last;
    std::erase_if(*batch, [&last](const kafka::InMessage& m) {
      auto [it, fresh] = last.try_emplace({m.topic, m.partition}, m.offset);
      if (!fresh && m.offset <= it->second) return true;
      it->second = m.offset;
      return false;
    });
    if (batch->empty()) {
      if (!settle(true)) break;
      continue;
    }
    const auto t0 = std::chrono::steady_clock::now();
    auto done = cleaner_.clean_batch(*batch, store_, now_ms());
    store_.seal();
    const auto clean_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (!settle(false)) break;
    in_flight.emplace(InFlight{std::move(done), batch->size(), clean_ms, std::chrono::steady_clock::now(), nullptr});
    in_flight->sending = kafka::Deliveries::send(**producer, in_flight->done.out);
  }
  // Shutting down: the batch in flight is committed if its outputs make it;
  // whatever is staged beyond that is dropped and redone by the next run.
  (void)settle(true);
  (void)finish_commit();  // a write still retrying gives up now (shutdown_requested)
  committing.reset();
  in_flight.reset();
  store_.rollback();
  spdlog::info("draining: cleaned {} rejected {}", cleaned_total, rejected_total);
  (*consumer)->close();
  return 0;
}

}  // namespace starling::clean
