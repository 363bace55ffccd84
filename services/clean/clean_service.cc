#include "services/clean/clean_service.h"

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
}  // namespace

CleanService::CleanService(const PipelineConfig& pipeline, RocksCleanStore& store, kafka::KafkaOptions kafka,
                           std::string instance, CleanOptions options)
    : pipeline_(pipeline), store_(store), kafka_(std::move(kafka)), instance_(std::move(instance)), options_(options),
      cleaner_(pipeline, instance_) {}

int CleanService::run() {
  auto producer = kafka::KafkaProducer::create(kafka_, {.queue_full_wait = std::chrono::seconds(60)});
  if (!producer) {
    spdlog::critical("{}", producer.error().message);
    return 1;
  }
  kafka::RebalanceHooks hooks;
  hooks.on_assign = [this](const std::vector<kafka::TopicPartition>& parts) {
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
  // Between batches nothing is staged, so a revoked partition has nothing to
  // flush: its state stays in RocksDB, keyed by partition, and is not read.
  hooks.on_revoke = [](const std::vector<kafka::TopicPartition>& parts) {
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
  uint64_t cleaned_total = 0;
  uint64_t rejected_total = 0;
  auto& cleaned_metric = metrics().counter("starling_clean_records_total", "Records cleaned or rejected",
                                           {{"pipeline", pipeline_.name}, {"outcome", "clean"}});
  auto& rejected_metric = metrics().counter("starling_clean_records_total", "Records cleaned or rejected",
                                            {{"pipeline", pipeline_.name}, {"outcome", "rejected"}});
  while (!shutdown_requested()) {
    auto batch = (*consumer)->poll_batch(options_.batch_max, options_.batch_wait);
    if (!batch) {
      spdlog::critical("{}", batch.error().message);
      return 1;
    }
    if (batch->empty()) continue;
    auto done = cleaner_.clean_batch(*batch, store_, now_ms());
    // Outputs first, state and offsets after: retry the same outputs until
    // they are persisted (duplicates are idempotent downstream), never skip.
    const auto sent = retry_until_done("producing a batch of " + std::to_string(done.out.size()),
                                       [&] { return kafka::produce_all(**producer, done.out, std::chrono::seconds(60)); });
    if (!sent) {
      store_.rollback();  // shutting down; nothing of the batch is stored, so it is redone
      break;
    }
    const auto committed = retry_until_done("committing clean state", [&] { return store_.commit(done.next_offsets); });
    if (!committed) break;
    publish_committed(done.next_offsets);
    cleaned_total += done.cleaned;
    rejected_total += done.rejected;
    cleaned_metric.add(done.cleaned);
    rejected_metric.add(done.rejected);
    spdlog::debug("batch: {} in, cleaned {} rejected {} so far", batch->size(), cleaned_total, rejected_total);
  }
  spdlog::info("draining: cleaned {} rejected {}", cleaned_total, rejected_total);
  (*consumer)->close();
  return 0;
}

}  // namespace starling::clean
