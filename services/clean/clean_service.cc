#include "services/clean/clean_service.h"

#include <spdlog/spdlog.h>

#include <memory>

#include "services/common/time.h"

namespace starling::clean {

namespace {
// librdkafka's RD_KAFKA_OFFSET_BEGINNING, without including librdkafka here.

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
    : pipeline_(pipeline),
      store_(store),
      kafka_(std::move(kafka)),
      instance_(std::move(instance)),
      options_(options),
      cleaner_(pipeline, instance_, options.threads),
      cleaned_(metrics().counter("starling_clean_records_total", "Records cleaned or rejected",
                                 {{"pipeline", pipeline.name}, {"outcome", "clean"}})),
      rejected_(metrics().counter("starling_clean_records_total", "Records cleaned or rejected",
                                  {{"pipeline", pipeline.name}, {"outcome", "rejected"}})) {}

int CleanService::run() {
  auto producer = kafka::KafkaProducer::create(
      kafka_, {.queue_full_wait = std::chrono::seconds(60),
               .topics = {pipeline_.clean_topic(), pipeline_.rejected_topic(), kSagaTopic}});
  if (!producer) {
    spdlog::critical("{}", producer.error().message);
    return 1;
  }
  // <p>.raw.replay carries `starling replay` output beside live traffic; its
  // offsets are stored per topic like the live ones, its device state apart
  // (cleaner.h: replay_state_partition).
  return run(**producer, kafka::KafkaConsumer::factory(kafka_, pipeline_.clean_group(), pipeline_.clean_inputs()),
             {.batch_max = options_.batch_max, .batch_wait = options_.batch_wait, .pipelined = true});
}

int CleanService::run(kafka::Producer& producer, const kafka::ConsumerFactory& consumer, kafka::LoopOptions loop) {
  kafka::ConsumerLoop runner("clean " + pipeline_.name, *this, producer, std::move(loop));
  const int rc = runner.run(consumer);
  spdlog::info("draining: cleaned {} rejected {}", cleaned_total_, rejected_total_);
  return rc;
}

Result<std::map<kafka::TopicPartition, int64_t>> CleanService::assigned(
    const std::vector<kafka::TopicPartition>& parts) {
  // A partition we stored resumes where its state stops. One we never had
  // starts at the beginning, so its devices' state is rebuilt by replay (the
  // outputs repeat; downstream is idempotent). The offsets live with the
  // state; the group's committed offsets are only for lag tools.
  const auto stored = store_.offsets();
  publish_committed(stored);
  std::map<kafka::TopicPartition, int64_t> starts;
  std::size_t resumed = 0;
  for (const auto& tp : parts) {
    auto it = stored.find(tp);
    starts[tp] = it != stored.end() ? it->second : kafka::kOffsetBeginning;
    resumed += it != stored.end();
  }
  spdlog::info("assigned {} partitions; {} resume from offsets in RocksDB, the rest from the beginning", parts.size(),
               resumed);
  return starts;
}

Result<kafka::Work> CleanService::apply(std::vector<kafka::InMessage> batch) {
  const auto t0 = std::chrono::steady_clock::now();
  auto done = cleaner_.clean_batch(batch, store_, now_ms());
  store_.seal();
  spdlog::debug("batch of {} in: cleaned in {:.1f} ms", batch.size(),
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  // The layer sealed now is committed after its outputs are persisted:
  // prepared on the loop thread, written on the store thread (touching only
  // RocksDB, state.h: PreparedCommit), moved into the caches after.
  struct Commit {
    std::map<kafka::TopicPartition, int64_t> next_offsets;
    uint64_t cleaned = 0;
    uint64_t rejected = 0;
    std::map<std::pair<std::string, std::string>, uint64_t> reasons;
    RocksCleanStore::PreparedCommit prepared;
  };
  auto commit = std::make_shared<Commit>(
      Commit{std::move(done.next_offsets), done.cleaned, done.rejected, std::move(done.reasons), {}});
  kafka::Work work;
  work.outputs = std::move(done.out);
  work.persisted = [this, commit] { commit->prepared = store_.prepare_commit(commit->next_offsets); };
  work.store = [this, commit] { return store_.write(commit->prepared); };
  work.stored = [this, commit] {
    store_.finish_commit(commit->prepared);
    publish_committed(commit->next_offsets);
    cleaned_total_ += commit->cleaned;
    rejected_total_ += commit->rejected;
    cleaned_.add(commit->cleaned);
    rejected_.add(commit->rejected);
    // Rule and field names come from the pipeline file, never from a
    // device: the label sets are bounded by the configuration.
    for (const auto& [key, n] : commit->reasons) {
      auto& counter = reject_counters_[key];  // looked up in the registry once per series
      if (counter == nullptr) {
        counter = &metrics().counter("starling_clean_rejects_total",
                                     "Reasons records were rejected for, by rule and field (a record may have several)",
                                     {{"pipeline", pipeline_.name}, {"rule", key.first}, {"field", key.second}});
      }
      counter->add(n);
    }
  };
  return work;
}

Result<std::vector<kafka::OutMessage>> CleanService::too_large(const kafka::OutMessage& output, std::size_t size,
                                                               std::size_t limit) {
  return cleaner_.too_large(output, size, limit, now_ms());
}

// Whatever is staged beyond the last write is dropped and redone from the
// stored offsets.
void CleanService::abandon() { store_.rollback(); }

}  // namespace starling::clean
