#include "broker-adapters/kafka/kafka.h"

#include <fmt/format.h>
#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <iterator>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>

#include "broker-adapters/kafka/admin_client.h"
#include "services/common/kafka_properties.h"
#include "services/common/log_limit.h"

namespace starling::kafka {
namespace {

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
};
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;

// librdkafka 2.0 stops fetching once its local queue holds queued.min.messages
// (default 100,000) and decides again only once a second. A consumer working
// off a backlog faster than that emptied the queue and then idled until the
// next second (starling-clean on 300,000 events: 250-360 ms of every second).
// So the queue is bounded by bytes alone (queued.max.messages.kbytes, 64 MiB
// by default): more than a second of work at the rates we run.
constexpr std::pair<const char*, const char*> kFetchQueueByBytes{"queued.min.messages", "10000000"};

// A stage's consumer fetches in batches: the broker answers a Fetch once
// 100 kB are there or 25 ms have passed, rather than as soon as one small
// request's records arrive. Under live traffic of small requests each fetch
// round trip (a wakeup of the broker, of librdkafka's threads, of the loop)
// then carries many requests, and the stage applies, produces and stores
// them as one batch. A backlog is fetched in full answers as before.
// Measured on `starling demo` (40k events in requests of 20, median of 4
// runs): CPU of the whole stack 9.7 → 5.8 s, 241 → 144 µs per event; clean's
// own about 45 → 20 µs per event. Any --kafka-property overrides both.
constexpr std::pair<const char*, const char*> kFetchMinBytes{"fetch.min.bytes", "100000"};
constexpr std::pair<const char*, const char*> kFetchWaitMax{"fetch.wait.max.ms", "25"};

// Errors no retry of the same message can fix: it is too large for the
// topic or the broker, it is malformed, or the topic cannot be written.
bool permanent_error(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
      return true;
    default:
      return false;
  }
}

Result<ConfPtr> make_conf(const KafkaOptions& options, const std::map<std::string, std::string>& defaults) {
  if (options.bootstrap.empty()) return fail(Errc::kInvalidArgument, "--kafka: no bootstrap servers given");
  ConfPtr conf(rd_kafka_conf_new());
  std::map<std::string, std::string> props = defaults;
  props["bootstrap.servers"] = options.bootstrap;
  props["client.id"] = options.client_id;
  for (const auto& [k, v] : options.properties) props[k] = v;
  char err[512];
  for (const auto& [k, v] : props) {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      auto origin = options.origins.find(k);
      return fail(Errc::kInvalidArgument,
                  fmt::format("kafka property {}={}{}: {}", k, shown_kafka_value(k, v),
                              origin == options.origins.end() ? "" : " (from " + origin->second + ")", err));
    }
  }
  rd_kafka_conf_set_log_cb(conf.get(), [](const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
    // syslog levels: 0-3 errors, 4 warning, 5-6 info, 7 debug.
    const auto lvl = level <= 3   ? spdlog::level::err
                     : level == 4 ? spdlog::level::warn
                     : level <= 6 ? spdlog::level::info
                                  : spdlog::level::debug;
    spdlog::log(lvl, "rdkafka {} {}: {}", rd_kafka_name(rk), fac, buf);
  });
  return conf;
}

std::vector<Header> read_headers(const rd_kafka_message_t* m) {
  std::vector<Header> out;
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) return out;
  const char* name = nullptr;
  const void* val = nullptr;
  size_t size = 0;
  for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
    out.push_back({name, val ? std::string(static_cast<const char*>(val), size) : std::string{}});
  }
  return out;
}

}  // namespace

// librdkafka 2.0 learns a topic's partitions and leaders only for topics it
// has a handle for, on a metadata answer or its once-a-second topic scan. So
// a producer's first message to a topic waits up to a second for that scan,
// and a consumer assigned a partition it had no handle for finds no leader,
// and retries its first offset query after 500 ms. Taking the handles and
// asking for their metadata when the client is created avoids both waits
// (best effort: a broker that does not answer within the time costs nothing
// more than before).
class TopicHandles {
 public:
  void warm(rd_kafka_t* rk, const std::vector<std::string>& topics, std::chrono::milliseconds within) {
    const auto until = std::chrono::steady_clock::now() + within;
    for (const auto& t : topics) {
      rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, t.c_str(), nullptr);
      if (rkt == nullptr) continue;
      handles_.push_back(rkt);
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) continue;
      const rd_kafka_metadata_t* md = nullptr;
      (void)rd_kafka_metadata(rk, 0, rkt, &md, static_cast<int>(left.count()));
      if (md != nullptr) rd_kafka_metadata_destroy(md);
    }
  }
  /// Before the client is destroyed.
  void release() {
    for (auto* rkt : handles_) rd_kafka_topic_destroy(rkt);
    handles_.clear();
  }

 private:
  std::vector<rd_kafka_topic_t*> handles_;
};

// ---------------------------------------------------------------- producer

struct KafkaProducer::Impl {
  rd_kafka_t* rk = nullptr;
  ProducerOptions opts;
  TopicHandles topics;
  std::thread poller;
  std::atomic<bool> stopping{false};

  ~Impl() {
    stopping = true;
    if (poller.joinable()) poller.join();
    if (rk != nullptr) {
      // Whatever is still queued gets its callback (NOT_PERSISTED on purge).
      rd_kafka_flush(rk, 5000);
      rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      rd_kafka_poll(rk, 0);
      topics.release();
      rd_kafka_destroy(rk);
    }
  }
};

KafkaProducer::KafkaProducer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
KafkaProducer::~KafkaProducer() = default;

Result<std::unique_ptr<KafkaProducer>> KafkaProducer::create(const KafkaOptions& options,
                                                             const ProducerOptions& producer_options) {
  auto conf = make_conf(options, {
                                     {"enable.idempotence", "true"},
                                     {"acks", "all"},
                                     {"linger.ms", "2"},
                                     {"message.timeout.ms", "30000"},
                                     {"compression.type", "lz4"},
                                 });
  if (!conf) return std::unexpected(conf.error());
  rd_kafka_conf_set_dr_msg_cb(conf->get(), [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    std::unique_ptr<DeliveryCallback> done(static_cast<DeliveryCallback*>(m->_private));
    if (!done) return;
    Delivery d;
    d.partition = m->partition;
    d.offset = m->offset;
    if (m->rkt != nullptr) d.topic = rd_kafka_topic_name(m->rkt);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      d.status = DeliveryStatus::kPersisted;
    } else {
      d.error = rd_kafka_err2str(m->err);
      d.permanent = permanent_error(m->err);
      d.status = rd_kafka_message_status(m) == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED
                     ? DeliveryStatus::kPossiblyPersisted
                     : DeliveryStatus::kNotPersisted;
    }
    (*done)(d);
  });
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf->get(), err, sizeof err);
  if (rk == nullptr) return fail(Errc::kInvalidArgument, fmt::format("kafka producer: {}", err));
  (void)conf.value().release();  // owned by rk now
  auto impl = std::make_unique<Impl>();
  impl->rk = rk;
  impl->opts = producer_options;
  impl->poller = std::thread([i = impl.get()] {
    while (!i->stopping) rd_kafka_poll(i->rk, 100);
  });
  impl->topics.warm(rk, producer_options.topics, std::chrono::seconds(1));
  return std::unique_ptr<KafkaProducer>(new KafkaProducer(std::move(impl)));
}

void KafkaProducer::produce(const OutMessage& msg, DeliveryCallback done) {
  auto* cb = new DeliveryCallback(std::move(done));
  rd_kafka_headers_t* hdrs = msg.headers.empty() ? nullptr : rd_kafka_headers_new(msg.headers.size());
  for (const auto& h : msg.headers) {
    rd_kafka_header_add(hdrs, h.key.data(), static_cast<ssize_t>(h.key.size()), h.value.data(),
                        static_cast<ssize_t>(h.value.size()));
  }
  std::optional<std::chrono::steady_clock::time_point> deadline;  // taken on the first QUEUE_FULL only
  for (;;) {
    // RD_KAFKA_V_VALUE takes a void*; with RD_KAFKA_MSG_F_COPY it only reads.
    const auto err = rd_kafka_producev(
        impl_->rk, RD_KAFKA_V_TOPIC(msg.topic.c_str()), RD_KAFKA_V_KEY(msg.key.data(), msg.key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(msg.value.data()), msg.value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(cb), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return;  // rk owns hdrs now
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      const auto now = std::chrono::steady_clock::now();
      if (!deadline) deadline = now + impl_->opts.queue_full_wait;
      if (now < *deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        continue;
      }
    }
    if (hdrs != nullptr) rd_kafka_headers_destroy(hdrs);
    std::unique_ptr<DeliveryCallback> owned(cb);
    (*owned)(Delivery{DeliveryStatus::kNotPersisted, -1, -1,
                      fmt::format("produce to {}: {}", msg.topic, rd_kafka_err2str(err)), msg.topic,
                      permanent_error(err)});
    return;
  }
}

Status KafkaProducer::flush(std::chrono::milliseconds timeout) {
  const auto err = rd_kafka_flush(impl_->rk, static_cast<int>(timeout.count()));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return fail(Errc::kTimeout, fmt::format("flush: {} messages still in flight after {} ms",
                                            rd_kafka_outq_len(impl_->rk), timeout.count()));
  }
  return {};
}

bool KafkaProducer::broker_reachable(std::chrono::milliseconds timeout) {
  const rd_kafka_metadata_t* md = nullptr;
  const auto err = rd_kafka_metadata(impl_->rk, 0, nullptr, &md, static_cast<int>(timeout.count()));
  if (md != nullptr) rd_kafka_metadata_destroy(md);
  return err == RD_KAFKA_RESP_ERR_NO_ERROR;
}

std::shared_ptr<Deliveries> Deliveries::send(Producer& producer, const std::vector<OutMessage>& messages) {
  auto s = std::make_shared<Deliveries>();
  s->pending_ = messages.size();
  for (const auto& m : messages) {
    producer.produce(m, [s](const Delivery& d) {
      std::lock_guard lock(s->mu_);
      // A permanent failure is reported over transient ones: retrying the
      // set cannot help it.
      if (d.status != DeliveryStatus::kPersisted && (s->first_error_.empty() || (d.permanent && !s->permanent_))) {
        s->first_error_ = fmt::format("{}: {}{}", d.topic, d.error,
                                      d.status == DeliveryStatus::kPossiblyPersisted ? " (possibly persisted)" : "");
        s->permanent_ = d.permanent;
      }
      if (--s->pending_ == 0) s->cv_.notify_all();
    });
  }
  return s;
}

Status Deliveries::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return pending_ == 0; })) {
    return fail(Errc::kTimeout, fmt::format("{} deliveries unconfirmed after {} ms", pending_, timeout.count()));
  }
  if (!first_error_.empty()) return fail(permanent_ ? Errc::kInvalidArgument : Errc::kUnavailable, first_error_);
  return {};
}

Status produce_all(Producer& producer, const std::vector<OutMessage>& messages, std::chrono::milliseconds timeout) {
  return Deliveries::send(producer, messages)->wait(timeout);
}

// ---------------------------------------------------------------- consumer

struct KafkaConsumer::Impl {
  rd_kafka_t* rk = nullptr;
  TopicHandles topics;
  RebalanceHooks hooks;
  std::vector<TopicPartition> assigned;
  std::set<TopicPartition> paused;  // by pause(), until resume() or an assignment
  uint64_t rebalances = 0;          // counted by rebalance_cb, read by poll_batch
  bool closed = false;
  LogLimit commit_log{std::chrono::seconds(10)};  // commit_cb runs on the polling thread
};

namespace {

std::vector<TopicPartition> to_vector(const rd_kafka_topic_partition_list_t* parts) {
  std::vector<TopicPartition> out;
  for (int i = 0; parts != nullptr && i < parts->cnt; ++i)
    out.push_back({parts->elems[i].topic, parts->elems[i].partition});
  return out;
}

// Pauses or resumes `parts` in librdkafka and keeps Impl::paused in step.
Status set_paused(KafkaConsumer::Impl& impl, const std::vector<TopicPartition>& parts, bool pause) {
  rd_kafka_t* rk = impl.rk;
  if (parts.empty()) return {};
  auto* list = rd_kafka_topic_partition_list_new(static_cast<int>(parts.size()));
  for (const auto& tp : parts) rd_kafka_topic_partition_list_add(list, tp.topic.c_str(), tp.partition);
  const auto err = pause ? rd_kafka_pause_partitions(rk, list) : rd_kafka_resume_partitions(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return fail(Errc::kUnavailable, fmt::format("{}: {}", pause ? "pause" : "resume", rd_kafka_err2str(err)));
  }
  for (const auto& tp : parts) {
    if (pause) {
      impl.paused.insert(tp);
    } else {
      impl.paused.erase(tp);
    }
  }
  return {};
}

void rebalance_cb(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts, void* opaque) {
  auto* impl = static_cast<KafkaConsumer::Impl*>(opaque);
  ++impl->rebalances;
  const auto tps = to_vector(parts);
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    if (impl->hooks.on_assign) {
      const auto starts = impl->hooks.on_assign(tps);
      for (int i = 0; i < parts->cnt; ++i) {
        auto it = starts.find({parts->elems[i].topic, parts->elems[i].partition});
        if (it != starts.end()) parts->elems[i].offset = it->second;
      }
    }
    // librdkafka keeps a partition's pause flag across revoke and assign: one
    // paused before (the loop pauses while a send waits out an outage) would
    // stay paused for good. A new assignment starts unpaused, as Consumer
    // says: those are resumed *before* the assign, and no others. A resume
    // after it raced librdkafka's main thread, which applies the assignment
    // later: the resume's op version could overtake the partition's fetch
    // start, which librdkafka then dropped as outdated, and the partition was
    // never fetched (a CI run's reader waited 120 s on one partition).
    std::vector<TopicPartition> stale;
    std::copy_if(tps.begin(), tps.end(), std::back_inserter(stale),
                 [&](const TopicPartition& tp) { return impl->paused.contains(tp); });
    (void)set_paused(*impl, stale, false);
    spdlog::info("assigned {} partitions", tps.size());
    rd_kafka_assign(rk, parts);
    impl->assigned = tps;
  } else {
    if (impl->hooks.on_revoke) impl->hooks.on_revoke(tps);
    spdlog::info("revoked {} partitions", tps.size());
    rd_kafka_assign(rk, nullptr);
    impl->assigned.clear();
  }
}

// The result of commit_async(), inside a poll. The group's offsets are only
// for lag tools, so a failure (the group rebalancing, the coordinator moving)
// is logged; the next commit covers it.
void commit_cb(rd_kafka_t* /*rk*/, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* /*offsets*/,
               void* opaque) {
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET) return;
  auto* impl = static_cast<KafkaConsumer::Impl*>(opaque);
  if (!impl->commit_log.allow()) return;
  spdlog::warn("committing offsets to the group for lag tools: {} ({} more not logged); the next commit covers them",
               rd_kafka_err2str(err), impl->commit_log.take_suppressed());
}

}  // namespace

KafkaConsumer::KafkaConsumer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

KafkaConsumer::~KafkaConsumer() {
  close();
  impl_->topics.release();
  if (impl_->rk != nullptr) rd_kafka_destroy(impl_->rk);
}

Result<std::unique_ptr<KafkaConsumer>> KafkaConsumer::create(const KafkaOptions& options, const std::string& group_id,
                                                             const std::vector<std::string>& topics,
                                                             RebalanceHooks hooks) {
  std::map<std::string, std::string> defaults = {
      {"group.id", group_id},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"auto.offset.reset", "earliest"},
      {"session.timeout.ms", "10000"},
      {"heartbeat.interval.ms", "1000"},
      {"partition.assignment.strategy", "range"},
      kFetchQueueByBytes,
      kFetchMinBytes,
      kFetchWaitMax,
  };
  // `group.instance.id=` (empty) from the user makes the member dynamic.
  KafkaOptions opts = options;
  const auto user_id = opts.properties.find("group.instance.id");
  const bool dynamic = user_id != opts.properties.end() && user_id->second.empty();
  if (dynamic) opts.properties.erase(user_id);
  if (!options.group_instance_id.empty() && !dynamic) defaults["group.instance.id"] = options.group_instance_id;
  auto conf = make_conf(opts, defaults);
  if (!conf) return std::unexpected(conf.error());
  auto impl = std::make_unique<Impl>();
  impl->hooks = std::move(hooks);
  rd_kafka_conf_set_rebalance_cb(conf->get(), rebalance_cb);
  rd_kafka_conf_set_offset_commit_cb(conf->get(), commit_cb);
  rd_kafka_conf_set_opaque(conf->get(), impl.get());
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf->get(), err, sizeof err);
  if (rk == nullptr) return fail(Errc::kInvalidArgument, fmt::format("kafka consumer: {}", err));
  (void)conf.value().release();
  impl->rk = rk;
  rd_kafka_poll_set_consumer(rk);
  impl->topics.warm(rk, topics, std::chrono::seconds(1));
  auto* list = rd_kafka_topic_partition_list_new(static_cast<int>(topics.size()));
  for (const auto& t : topics) rd_kafka_topic_partition_list_add(list, t.c_str(), RD_KAFKA_PARTITION_UA);
  const auto serr = rd_kafka_subscribe(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  std::unique_ptr<KafkaConsumer> consumer(new KafkaConsumer(std::move(impl)));
  if (serr != RD_KAFKA_RESP_ERR_NO_ERROR)
    return fail(Errc::kInvalidArgument, fmt::format("subscribe: {}", rd_kafka_err2str(serr)));
  return consumer;
}

namespace {

// `rebalances`, when given, counts the rebalances served inside each
// rd_kafka_consumer_poll: messages taken before one are dropped (the
// partitions were re-seeked or taken away); the message a call returns after
// serving one is already from the new assignment (librdkafka drops fetched
// messages of an older assignment by version).
Result<std::vector<InMessage>> poll_messages(rd_kafka_t* rk, std::size_t max, std::chrono::milliseconds timeout,
                                             const uint64_t* rebalances = nullptr);

}  // namespace

Result<std::vector<InMessage>> KafkaConsumer::poll_batch(std::size_t max, std::chrono::milliseconds timeout) {
  return poll_messages(impl_->rk, max, timeout, &impl_->rebalances);
}

namespace {

Result<std::vector<InMessage>> poll_messages(rd_kafka_t* rk, std::size_t max, std::chrono::milliseconds timeout,
                                             const uint64_t* rebalances) {
  std::vector<InMessage> out;
  auto wait = timeout;
  while (out.size() < max) {
    const uint64_t before = rebalances != nullptr ? *rebalances : 0;
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, static_cast<int>(wait.count()));
    if (rebalances != nullptr && *rebalances != before) out.clear();
    if (m == nullptr) break;
    std::unique_ptr<rd_kafka_message_t, decltype(&rd_kafka_message_destroy)> owned(m, rd_kafka_message_destroy);
    switch (m->err) {
      case RD_KAFKA_RESP_ERR_NO_ERROR: {
        InMessage in;
        in.topic = rd_kafka_topic_name(m->rkt);
        in.partition = m->partition;
        in.offset = m->offset;
        in.timestamp_ms = rd_kafka_message_timestamp(m, nullptr);
        if (m->key != nullptr) in.key.assign(static_cast<const char*>(m->key), m->key_len);
        if (m->payload != nullptr) in.value.assign(static_cast<const char*>(m->payload), m->len);
        in.headers = read_headers(m);
        out.push_back(std::move(in));
        break;
      }
      case RD_KAFKA_RESP_ERR__PARTITION_EOF:
      case RD_KAFKA_RESP_ERR__TIMED_OUT:
        break;  // information, not failure
      default:
        if (rd_kafka_fatal_error(rk, nullptr, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) {
          return fail(Errc::kUnavailable, fmt::format("consumer fatal error: {}", rd_kafka_message_errstr(m)));
        }
        spdlog::warn("consumer: {}", rd_kafka_message_errstr(m));
    }
    wait = std::chrono::milliseconds(0);  // take only what is already fetched
  }
  return out;
}

}  // namespace

namespace {

rd_kafka_topic_partition_list_t* to_list(const std::map<TopicPartition, int64_t>& offsets) {
  auto* list = rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size()));
  for (const auto& [tp, off] : offsets)
    rd_kafka_topic_partition_list_add(list, tp.topic.c_str(), tp.partition)->offset = off;
  return list;
}

}  // namespace

void KafkaConsumer::commit_async(const std::map<TopicPartition, int64_t>& next_offsets) {
  if (next_offsets.empty() || impl_->closed) return;
  auto* list = to_list(next_offsets);
  // Async: the answer comes to commit_cb in a later poll (and close() waits
  // for commits in flight).
  const auto err = rd_kafka_commit(impl_->rk, list, 1);
  rd_kafka_topic_partition_list_destroy(list);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) commit_cb(impl_->rk, err, nullptr, impl_.get());
}

Status KafkaConsumer::pause(const std::vector<TopicPartition>& parts) { return set_paused(*impl_, parts, true); }

Status KafkaConsumer::resume(const std::vector<TopicPartition>& parts) { return set_paused(*impl_, parts, false); }

ConsumerFactory KafkaConsumer::factory(KafkaOptions options, std::string group_id, std::vector<std::string> topics) {
  return [options = std::move(options), group_id = std::move(group_id),
          topics = std::move(topics)](RebalanceHooks hooks) -> Result<std::unique_ptr<Consumer>> {
    auto c = create(options, group_id, topics, std::move(hooks));
    if (!c) return std::unexpected(c.error());
    return std::unique_ptr<Consumer>(std::move(*c));
  };
}

void KafkaConsumer::close() {
  if (impl_->closed || impl_->rk == nullptr) return;
  impl_->closed = true;
  rd_kafka_consumer_close(impl_->rk);
}

std::vector<TopicPartition> KafkaConsumer::assignment() const { return impl_->assigned; }

std::optional<int64_t> KafkaConsumer::log_end(const TopicPartition& tp) const {
  int64_t low = 0;
  int64_t high = 0;
  // librdkafka's cached watermarks: the high one comes with every fetch response.
  if (rd_kafka_get_watermark_offsets(impl_->rk, tp.topic.c_str(), tp.partition, &low, &high) !=
          RD_KAFKA_RESP_ERR_NO_ERROR ||
      high < 0) {
    return std::nullopt;
  }
  return high;
}

// ---------------------------------------------------------------- reader

struct TopicReader::Impl {
  rd_kafka_t* rk = nullptr;
  ~Impl() {
    if (rk != nullptr) {
      rd_kafka_assign(rk, nullptr);
      rd_kafka_destroy(rk);
    }
  }
};

TopicReader::TopicReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TopicReader::~TopicReader() = default;

Result<std::unique_ptr<TopicReader>> TopicReader::create(const KafkaOptions& options) {
  // A group id is required by the consumer API, but assign() never joins it
  // and nothing is committed: the stages' groups are not touched.
  auto conf = make_conf(options, {{"group.id", "starling-reader"},
                                  {"enable.auto.commit", "false"},
                                  {"enable.auto.offset.store", "false"},
                                  {"enable.partition.eof", "false"},
                                  kFetchQueueByBytes});
  if (!conf) return std::unexpected(conf.error());
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf->get(), err, sizeof err);
  if (rk == nullptr) return fail(Errc::kInvalidArgument, fmt::format("kafka reader: {}", err));
  (void)conf.value().release();
  rd_kafka_poll_set_consumer(rk);
  auto impl = std::make_unique<Impl>();
  impl->rk = rk;
  return std::unique_ptr<TopicReader>(new TopicReader(std::move(impl)));
}

Result<int> TopicReader::partitions(const std::string& topic, std::chrono::milliseconds timeout) {
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(impl_->rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  const auto err = rd_kafka_metadata(impl_->rk, 0, rkt, &md, static_cast<int>(timeout.count()));
  rd_kafka_topic_destroy(rkt);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return fail(Errc::kUnavailable, fmt::format("metadata of topic {}: {}", topic, rd_kafka_err2str(err)));
  }
  std::unique_ptr<const rd_kafka_metadata_t, decltype(&rd_kafka_metadata_destroy)> owned(md, rd_kafka_metadata_destroy);
  if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR || md->topics[0].partition_cnt == 0) {
    return fail(Errc::kNotFound, fmt::format("topic {} does not exist", topic));
  }
  return md->topics[0].partition_cnt;
}

Result<std::pair<int64_t, int64_t>> TopicReader::watermarks(const TopicPartition& tp,
                                                            std::chrono::milliseconds timeout) {
  int64_t low = 0;
  int64_t high = 0;
  const auto err = rd_kafka_query_watermark_offsets(impl_->rk, tp.topic.c_str(), tp.partition, &low, &high,
                                                    static_cast<int>(timeout.count()));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return fail(Errc::kUnavailable, fmt::format("offsets of {}/{}: {}", tp.topic, tp.partition, rd_kafka_err2str(err)));
  }
  return std::pair{low, high};
}

Result<int64_t> TopicReader::offset_for_time(const TopicPartition& tp, int64_t ts_ms,
                                             std::chrono::milliseconds timeout) {
  auto* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, tp.topic.c_str(), tp.partition)->offset = ts_ms;
  const auto err = rd_kafka_offsets_for_times(impl_->rk, list, static_cast<int>(timeout.count()));
  const int64_t offset = list->elems[0].offset;
  const auto perr = list->elems[0].err;
  rd_kafka_topic_partition_list_destroy(list);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR || perr != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return fail(Errc::kUnavailable, fmt::format("offset of {}/{} at time {}: {}", tp.topic, tp.partition, ts_ms,
                                                rd_kafka_err2str(err != RD_KAFKA_RESP_ERR_NO_ERROR ? err : perr)));
  }
  if (offset >= 0) return offset;
  // -1: no message at or after that time.
  auto w = watermarks(tp, timeout);
  if (!w) return std::unexpected(w.error());
  return w->second;
}

Status TopicReader::assign(const std::map<TopicPartition, int64_t>& starts) {
  auto* list = rd_kafka_topic_partition_list_new(static_cast<int>(starts.size()));
  for (const auto& [tp, off] : starts)
    rd_kafka_topic_partition_list_add(list, tp.topic.c_str(), tp.partition)->offset = off;
  const auto err = rd_kafka_assign(impl_->rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    return fail(Errc::kUnavailable, fmt::format("assign: {}", rd_kafka_err2str(err)));
  return {};
}

Result<std::vector<InMessage>> TopicReader::poll_batch(std::size_t max, std::chrono::milliseconds timeout) {
  return poll_messages(impl_->rk, max, timeout);
}

// ---------------------------------------------------------------- admin

Result<std::map<TopicPartition, int64_t>> committed_offsets(const KafkaOptions& options, const std::string& group,
                                                            const std::vector<TopicPartition>& parts,
                                                            std::chrono::milliseconds timeout) {
  std::map<TopicPartition, int64_t> out;
  if (parts.empty()) return out;
  // A consumer handle with the group's id that never subscribes: OffsetFetch
  // to the group's coordinator without joining (the members keep theirs).
  auto conf = make_conf(options, {{"group.id", group}, {"enable.auto.commit", "false"}});
  if (!conf) return std::unexpected(conf.error());
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf->get(), err, sizeof err);
  if (rk == nullptr) return fail(Errc::kInvalidArgument, fmt::format("kafka consumer: {}", err));
  (void)conf.value().release();
  std::unique_ptr<rd_kafka_t, decltype(&rd_kafka_destroy)> owned(rk, rd_kafka_destroy);
  std::map<TopicPartition, int64_t> asked;
  for (const auto& tp : parts) asked[tp] = RD_KAFKA_OFFSET_INVALID;
  auto* list = to_list(asked);
  const auto e = rd_kafka_committed(rk, list, static_cast<int>(timeout.count()));
  Status st;
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    st = fail(Errc::kUnavailable, fmt::format("committed offsets of group {}: {}", group, rd_kafka_err2str(e)));
  }
  for (int i = 0; st && i < list->cnt; ++i) {
    const auto& el = list->elems[i];
    if (el.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      st = fail(Errc::kUnavailable, fmt::format("committed offset of group {} on {}/{}: {}", group, el.topic,
                                                el.partition, rd_kafka_err2str(el.err)));
      break;
    }
    out[{el.topic, el.partition}] = el.offset < 0 ? -1 : el.offset;
  }
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_consumer_close(rk);
  if (!st) return std::unexpected(st.error());
  return out;
}

Result<std::vector<PartitionLag>> group_lag(const KafkaOptions& options, const std::string& group,
                                            const std::vector<std::string>& topics, std::chrono::milliseconds timeout) {
  auto reader = TopicReader::create(options);
  if (!reader) return std::unexpected(reader.error());
  std::vector<PartitionLag> out;
  std::vector<TopicPartition> parts;
  for (const auto& topic : topics) {
    auto n = (*reader)->partitions(topic, timeout);
    if (!n) {
      if (n.error().code == Errc::kNotFound) continue;
      return std::unexpected(n.error());
    }
    for (int p = 0; p < *n; ++p) {
      PartitionLag l;
      l.tp = {topic, p};
      auto w = (*reader)->watermarks(l.tp, timeout);
      if (!w) return std::unexpected(w.error());
      std::tie(l.log_start, l.log_end) = *w;
      parts.push_back(l.tp);
      out.push_back(std::move(l));
    }
  }
  auto committed = committed_offsets(options, group, parts, timeout);
  if (!committed) return std::unexpected(committed.error());
  std::map<TopicPartition, std::size_t> behind;  // where the first unprocessed record is, by index into out
  std::map<TopicPartition, int64_t> starts;
  for (std::size_t i = 0; i < out.size(); ++i) {
    auto& l = out[i];
    if (auto it = committed->find(l.tp); it != committed->end()) l.committed = it->second;
    const int64_t next = std::max(l.committed, l.log_start);
    l.lag = std::max<int64_t>(0, l.log_end - next);
    if (l.lag > 0) {
      behind[l.tp] = i;
      starts[l.tp] = next;
    }
  }
  if (starts.empty()) return out;
  // The first unprocessed record of each lagging partition: its timestamp
  // says how old the oldest work is.
  if (auto st = (*reader)->assign(starts); !st) return std::unexpected(st.error());
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!behind.empty() && std::chrono::steady_clock::now() < deadline) {
    auto batch = (*reader)->poll_batch(1000, std::chrono::milliseconds(200));
    if (!batch) return std::unexpected(batch.error());
    for (const auto& m : *batch) {
      auto it = behind.find({m.topic, m.partition});
      if (it == behind.end()) continue;
      out[it->second].oldest_unprocessed_ms = m.timestamp_ms;
      behind.erase(it);
    }
  }
  return out;
}

Result<AdminClient> admin_client(const KafkaOptions& options) {
  auto conf = make_conf(options, {});
  if (!conf) return std::unexpected(conf.error());
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf->get(), err, sizeof err);
  if (rk == nullptr) return fail(Errc::kInvalidArgument, fmt::format("kafka admin: {}", err));
  (void)conf.value().release();  // rd_kafka_new took it
  return AdminClient(rk, rd_kafka_destroy);
}

Status create_topics(const KafkaOptions& options, const std::vector<TopicSpec>& topics,
                     std::chrono::milliseconds timeout) {
  auto owned = admin_client(options);
  if (!owned) return std::unexpected(owned.error());
  rd_kafka_t* rk = owned->get();
  char err[512];

  std::vector<rd_kafka_NewTopic_t*> specs;
  for (const auto& t : topics) {
    auto* nt = rd_kafka_NewTopic_new(t.name.c_str(), t.partitions, t.replication, err, sizeof err);
    if (nt == nullptr) {
      for (auto* s : specs) rd_kafka_NewTopic_destroy(s);
      return fail(Errc::kInvalidArgument, fmt::format("topic {}: {}", t.name, err));
    }
    specs.push_back(nt);
  }
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t* opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_operation_timeout(opts, static_cast<int>(timeout.count()), err, sizeof err);
  rd_kafka_CreateTopics(rk, specs.data(), specs.size(), opts, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, static_cast<int>(timeout.count()) + 1000);
  Status result;
  if (ev == nullptr) {
    result = fail(Errc::kTimeout, "create topics: no answer from the broker");
  } else if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    result = fail(Errc::kUnavailable, fmt::format("create topics: {}", rd_kafka_event_error_string(ev)));
  } else {
    size_t n = 0;
    const auto* res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    for (size_t i = 0; i < n; ++i) {
      const auto e = rd_kafka_topic_result_error(res[i]);
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        result = fail(Errc::kUnavailable, fmt::format("create topic {}: {}", rd_kafka_topic_result_name(res[i]),
                                                      rd_kafka_topic_result_error_string(res[i])));
        break;
      }
    }
  }
  if (ev != nullptr) rd_kafka_event_destroy(ev);
  rd_kafka_AdminOptions_destroy(opts);
  rd_kafka_queue_destroy(q);
  for (auto* s : specs) rd_kafka_NewTopic_destroy(s);
  return result;
}

}  // namespace starling::kafka
