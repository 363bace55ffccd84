#include "services/broker/broker.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <functional>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "services/common/text.h"

namespace starling::broker {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

namespace {

constexpr int32_t kMaxPartitionsPerTopic = 1000;
// The decoder keeps every assignment of a topic it may create.
static_assert(CreateTopicsRequest::kMaxKeptAssignments >= kMaxPartitionsPerTopic);

int64_t wall_ms() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A manual assignment of partitions first..first+count-1: each exactly once,
// each on this node alone (as CreateTopics and CreatePartitions take it).
Result<void> check_assignment(const std::vector<CreateTopicsRequest::Assignment>& assignments, int32_t count,
                              int32_t first, int32_t node_id) {
  std::vector<bool> seen(static_cast<size_t>(count));
  for (const auto& a : assignments) {
    if (a.partition < first || a.partition >= first + count || seen[static_cast<size_t>(a.partition - first)]) {
      return fail(
          ErrorCode::kInvalidReplicaAssignment,
          fmt::format("assigned partitions must be {}..{} each once, got {}", first, first + count - 1, a.partition));
    }
    seen[static_cast<size_t>(a.partition - first)] = true;
    if (a.replica_count == 0) {
      return fail(ErrorCode::kInvalidReplicaAssignment, fmt::format("partition {} has no replica", a.partition));
    }
    for (int32_t id : a.broker_ids) {
      if (id != node_id) {
        return fail(ErrorCode::kInvalidReplicaAssignment,
                    fmt::format("partition {} is assigned to broker {}; this single-node broker is node {}",
                                a.partition, id, node_id));
      }
    }
    if (a.replica_count > 1) {
      return fail(ErrorCode::kInvalidReplicaAssignment,
                  fmt::format("partition {} names broker {} more than once", a.partition, node_id));
    }
  }
  return {};
}

}  // namespace

bool valid_topic_name(const std::string& name) {
  if (name.empty() || name.size() > 249 || name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

Broker::Broker(asio::any_io_executor ex, BrokerConfig config) : ex_(std::move(ex)), config_(std::move(config)) {
  config_.log.sync = config_.flush_interval_ms > 0 ? LogConfig::Sync::kInterval : LogConfig::Sync::kDeferred;
  if (config_.max_open_segment_files == 0) config_.max_open_segment_files = default_max_open_segment_files();
  config_.log.files = std::make_shared<FileCache>(config_.max_open_segment_files);
  flusher_ = std::make_unique<Flusher>(ex_);
  fs::create_directories(config_.data_dir / "logs");
  store_ = std::make_unique<MetadataStore>(config_.data_dir / "meta");
  auto topics = store_->load_topics();
  for (const auto& [name, stored] : topics) {
    Topic t;
    auto topic_config = parse_topic_config(stored.configs);
    if (!topic_config) throw std::runtime_error(fmt::format("topic {}: {}", name, topic_config.error().message));
    t.config = std::move(*topic_config);
    for (int32_t p = 0; p < stored.partitions; ++p)
      t.partitions.push_back(PartitionLog::open(partition_dir(name, p), log_config(t.config)));
    topics_.emplace(name, std::move(t));
  }
  // Directories of topics whose deletion was interrupted by a crash, and of
  // partitions a crash kept CreatePartitions from recording.
  for (const auto& entry : fs::directory_iterator(config_.data_dir / "logs")) {
    auto name = entry.path().filename().string();
    auto dash = name.rfind('-');
    auto stored = dash == std::string::npos ? topics.end() : topics.find(name.substr(0, dash));
    int32_t partition = -1;
    if (stored != topics.end()) {
      const char* digits = name.c_str() + dash + 1;
      auto [end, ec] = std::from_chars(digits, name.c_str() + name.size(), partition);
      if (ec != std::errc() || end != name.c_str() + name.size()) partition = -1;
    }
    if (stored == topics.end() || partition < 0 || partition >= stored->second.partitions) {
      spdlog::info("removing orphaned log directory {}", entry.path().string());
      fs::remove_all(entry.path());
    }
  }
  groups_ = std::make_unique<GroupCoordinator>(
      ex_, *store_,
      [this](const std::string& t, int32_t p) {
        auto it = topics_.find(t);
        return it != topics_.end() && p >= 0 && p < static_cast<int32_t>(it->second.partitions.size());
      },
      config_.groups);
  spdlog::info("opened {} topics from {}", topics_.size(), config_.data_dir.string());
}

Broker::~Broker() { flush_all(); }

void Broker::start() {
  last_flush_ = last_retention_ = Clock::now();
  asio::co_spawn(ex_, maintenance_loop(), asio::detached);
}

void Broker::flush_all() {
  for (auto& [name, t] : topics_) {
    for (auto& p : t.partitions) {
      if (auto r = p->flush(); !r) spdlog::error("flush of {} failed: {}", name, r.error().message);
    }
  }
}

void Broker::refresh_metrics() {
  auto& m = metrics();
  std::set<std::string> partitions;
  std::map<std::pair<std::string, int32_t>, int64_t> end_offsets;
  for (const auto& [name, t] : topics_) {
    for (size_t i = 0; i < t.partitions.size(); ++i) {
      const auto& lg = t.partitions[i];
      const Labels labels{{"topic", name}, {"partition", std::to_string(i)}};
      m.gauge("starling_broker_log_end_offset", "High watermark of a partition: the next offset a consumer can read",
              labels)
          .set(static_cast<double>(lg->high_watermark()));
      m.gauge("starling_broker_log_start_offset", "First offset still in a partition's log", labels)
          .set(static_cast<double>(lg->log_start_offset()));
      m.gauge("starling_broker_log_size_bytes", "Bytes of a partition's segment files", labels)
          .set(static_cast<double>(lg->size_bytes()));
      partitions.insert(render_labels(labels));
      end_offsets[{name, static_cast<int32_t>(i)}] = lg->high_watermark();
    }
  }
  std::set<std::string> committed;
  groups_->for_each_committed([&](const std::string& group, const std::string& topic, int32_t partition,
                                  int64_t offset) {
    const Labels labels{{"group", group}, {"topic", topic}, {"partition", std::to_string(partition)}};
    m.gauge("starling_broker_group_committed_offset", "Offset a consumer group last committed for a partition", labels)
        .set(static_cast<double>(offset));
    // Lag: records below the high watermark the group has not committed past.
    auto end = end_offsets.find({topic, partition});
    const double lag =
        end == end_offsets.end() || offset < 0 ? 0 : static_cast<double>(std::max<int64_t>(0, end->second - offset));
    m.gauge("starling_broker_group_lag", "High watermark minus the group's committed offset (0 for a deleted topic)",
            labels)
        .set(lag);
    committed.insert(render_labels(labels));
  });
  m.retain_gauges("starling_broker_log_end_offset", partitions);
  m.retain_gauges("starling_broker_log_start_offset", partitions);
  m.retain_gauges("starling_broker_log_size_bytes", partitions);
  m.retain_gauges("starling_broker_group_committed_offset", committed);
  m.retain_gauges("starling_broker_group_lag", committed);
  m.gauge("starling_broker_topics", "Topics in the broker").set(static_cast<double>(topics_.size()));
}

asio::awaitable<void> Broker::maintenance_loop() {
  asio::steady_timer timer(ex_);
  // 50 ms bounds both the session-timeout precision and, in interval mode,
  // how late a flush can be.
  const milliseconds tick = config_.flush_interval_ms > 0
                                ? std::min(milliseconds(50), milliseconds(config_.flush_interval_ms))
                                : milliseconds(50);
  for (;;) {
    timer.expires_after(tick);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    auto now = Clock::now();
    groups_->tick(now);
    if (config_.flush_interval_ms > 0 && now - last_flush_ >= milliseconds(config_.flush_interval_ms)) {
      flush_all();
      last_flush_ = now;
    }
    if (now - last_retention_ >= std::chrono::seconds(1)) {
      last_retention_ = now;
      int64_t wall = wall_ms();
      for (auto& [name, t] : topics_) {
        for (auto& p : t.partitions) p->apply_retention(wall);
      }
    }
  }
}

fs::path Broker::partition_dir(const std::string& topic, int32_t partition) const {
  return config_.data_dir / "logs" / fmt::format("{}-{}", topic, partition);
}

PartitionLog* Broker::log(const std::string& topic, int32_t partition) {
  auto it = topics_.find(topic);
  if (it == topics_.end() || partition < 0 || partition >= static_cast<int32_t>(it->second.partitions.size())) {
    return nullptr;
  }
  return it->second.partitions[static_cast<size_t>(partition)].get();
}

size_t Broker::max_message_bytes(const std::string& topic) const {
  auto it = topics_.find(topic);
  int32_t limit = config_.message_max_bytes;
  if (it != topics_.end()) limit = it->second.config.max_message_bytes.value_or(limit);
  return static_cast<size_t>(limit);
}

Result<void> Broker::create_topic(const std::string& name, int32_t partitions, const TopicConfig& config) {
  if (!valid_topic_name(name)) {
    return fail(ErrorCode::kInvalidTopic, fmt::format("invalid topic name '{}'", excerpt(name)));
  }
  if (topics_.count(name) != 0) return fail(ErrorCode::kTopicAlreadyExists, fmt::format("topic '{}' exists", name));
  // Each partition keeps at least one file open, so the count is bounded well
  // below typical descriptor limits.
  if (partitions <= 0 || partitions > kMaxPartitionsPerTopic) {
    return fail(ErrorCode::kInvalidPartitions, fmt::format("partition count must be 1..{}", kMaxPartitionsPerTopic));
  }
  // Logs first, then the durable topic record: a topic that is recorded can
  // always be opened at the next start.
  Topic t;
  try {
    for (int32_t p = 0; p < partitions; ++p)
      t.partitions.push_back(PartitionLog::open(partition_dir(name, p), log_config(config)));
  } catch (const std::exception& e) {
    t.partitions.clear();
    for (int32_t p = 0; p < partitions; ++p) {
      std::error_code ec;
      fs::remove_all(partition_dir(name, p), ec);
    }
    return fail(ErrorCode::kKafkaStorageError, e.what());
  }
  if (auto r = store_->put_topic(name, {partitions, config.values}); !r) return r;
  t.config = config;
  topics_.emplace(name, std::move(t));
  spdlog::info("created topic {} with {} partitions{}", name, partitions,
               config.max_message_bytes ? fmt::format(", max.message.bytes {}", *config.max_message_bytes) : "");
  return {};
}

Result<Broker::NewTopic> Broker::check_new_topic(const CreateTopicsRequest::Topic& t) const {
  if (!valid_topic_name(t.name)) {
    return fail(ErrorCode::kInvalidTopic, fmt::format("invalid topic name '{}'", excerpt(t.name)));
  }
  if (topics_.count(t.name) != 0) return fail(ErrorCode::kTopicAlreadyExists, fmt::format("topic '{}' exists", t.name));
  NewTopic out;
  if (t.assignment_count > 0) {
    // As in Kafka: an assignment decides both counts, so they must be -1.
    if (t.num_partitions != -1 || t.replication_factor != -1) {
      return fail(ErrorCode::kInvalidRequest,
                  "with a manual replica assignment, num_partitions and replication_factor must be -1");
    }
    if (t.assignment_count > kMaxPartitionsPerTopic) {
      return fail(ErrorCode::kInvalidPartitions, fmt::format("partition count must be 1..{}", kMaxPartitionsPerTopic));
    }
    if (auto r = check_assignment(t.assignments, t.assignment_count, 0, config_.node_id); !r) {
      return std::unexpected(r.error());
    }
    out.partitions = t.assignment_count;
  } else {
    if (t.replication_factor != -1 && t.replication_factor != 1) {
      return fail(ErrorCode::kInvalidReplicationFactor, "a single-node broker supports replication factor 1 only");
    }
    out.partitions = t.num_partitions == -1 ? config_.default_partitions : t.num_partitions;
    if (out.partitions <= 0 || out.partitions > kMaxPartitionsPerTopic) {
      return fail(ErrorCode::kInvalidPartitions, fmt::format("partition count must be 1..{}", kMaxPartitionsPerTopic));
    }
  }
  if (t.config_count > CreateTopicsRequest::kMaxKeptConfigs) {
    return fail(ErrorCode::kInvalidConfig,
                fmt::format("{} configs given, at most {}", t.config_count, CreateTopicsRequest::kMaxKeptConfigs));
  }
  auto topic_config = parse_topic_config(t.configs);
  if (!topic_config) return std::unexpected(topic_config.error());
  out.config = std::move(*topic_config);
  return out;
}

LogConfig Broker::log_config(const TopicConfig& config) const {
  LogConfig c = config_.log;
  if (config.segment_bytes) c.segment_bytes = static_cast<uint64_t>(*config.segment_bytes);
  c.retention_ms = config.retention_ms.value_or(c.retention_ms);
  c.retention_bytes = config.retention_bytes.value_or(c.retention_bytes);
  return c;
}

Result<void> Broker::create_partitions(const CreatePartitionsRequest::Topic& t, bool validate_only) {
  auto it = topics_.find(t.name);
  if (it == topics_.end()) {
    return fail(ErrorCode::kUnknownTopicOrPartition, fmt::format("unknown topic '{}'", excerpt(t.name)));
  }
  Topic& topic = it->second;
  const auto current = static_cast<int32_t>(topic.partitions.size());
  if (t.count <= current) {
    return fail(
        ErrorCode::kInvalidPartitions,
        fmt::format("topic '{}' has {} partitions; the new count must be more, got {}", t.name, current, t.count));
  }
  if (t.count > kMaxPartitionsPerTopic) {
    return fail(ErrorCode::kInvalidPartitions, fmt::format("partition count must be 1..{}", kMaxPartitionsPerTopic));
  }
  if (t.assignment_count) {
    if (*t.assignment_count != t.count - current) {
      return fail(ErrorCode::kInvalidReplicaAssignment,
                  fmt::format("{} new partitions but {} assignments", t.count - current, *t.assignment_count));
    }
    std::vector<CreateTopicsRequest::Assignment> assignments = t.assignments;
    for (auto& a : assignments) a.partition += current;
    if (auto r = check_assignment(assignments, t.count - current, current, config_.node_id); !r) return r;
  }
  if (validate_only) return {};
  // Logs first, then the durable record: a recorded partition can always be
  // opened, and a log a crash left unrecorded is removed at the next start.
  std::vector<std::unique_ptr<PartitionLog>> added;
  auto remove_added = [&] {
    added.clear();
    for (int32_t p = current; p < t.count; ++p) {
      std::error_code ec;
      fs::remove_all(partition_dir(t.name, p), ec);
    }
  };
  try {
    for (int32_t p = current; p < t.count; ++p)
      added.push_back(PartitionLog::open(partition_dir(t.name, p), log_config(topic.config)));
  } catch (const std::exception& e) {
    remove_added();
    return fail(ErrorCode::kKafkaStorageError, e.what());
  }
  if (auto r = store_->put_topic(t.name, {t.count, topic.config.values}); !r) {
    remove_added();
    return r;
  }
  for (auto& lg : added) topic.partitions.push_back(std::move(lg));
  spdlog::info("topic {} grown from {} to {} partitions", t.name, current, t.count);
  return {};
}

Result<void> Broker::set_topic_config(const std::string& name, TopicConfig config) {
  auto it = topics_.find(name);
  if (it == topics_.end()) return fail(ErrorCode::kUnknownTopicOrPartition, fmt::format("unknown topic '{}'", name));
  Topic& topic = it->second;
  if (auto r = store_->put_topic(name, {static_cast<int32_t>(topic.partitions.size()), config.values}); !r) return r;
  topic.config = std::move(config);
  const LogConfig lc = log_config(topic.config);
  for (auto& p : topic.partitions) p->set_limits(lc.segment_bytes, lc.retention_ms, lc.retention_bytes);
  std::string values;
  for (const auto& [k, v] : topic.config.values) values += fmt::format("{}{}={}", values.empty() ? "" : ", ", k, v);
  spdlog::info("topic {} configs are now: {}", name, values.empty() ? "the broker's" : values);
  return {};
}

Result<void> Broker::delete_topic(const std::string& name) {
  auto it = topics_.find(name);
  if (it == topics_.end()) return fail(ErrorCode::kUnknownTopicOrPartition, fmt::format("unknown topic '{}'", name));
  if (auto r = store_->delete_topic(name); !r) return r;
  int32_t count = static_cast<int32_t>(it->second.partitions.size());
  topics_.erase(it);
  for (int32_t p = 0; p < count; ++p) {
    std::error_code ec;
    fs::remove_all(partition_dir(name, p), ec);
  }
  for (int32_t p = 0; p < count; ++p) notify_fetchers(name, p);
  spdlog::info("deleted topic {}", name);
  return {};
}

void Broker::notify_fetchers(const std::string& topic, int32_t partition) {
  auto key = std::make_pair(topic, partition);
  for (auto* w : fetch_waiters_) {
    if (w->watched.count(key) != 0) w->pending->wake();
  }
}

asio::awaitable<Result<Reply>> Broker::handle(Bytes frame, std::string client_host) {
  const auto start = Clock::now();
  int16_t api_key = -1;
  int16_t api_version = -1;
  auto reply = co_await dispatch(std::move(frame), std::move(client_host), api_key, api_version);
  metrics_.request(api_key, api_version, std::chrono::duration<double>(Clock::now() - start).count());
  co_return reply;
}

asio::awaitable<Result<Reply>> Broker::dispatch(Bytes frame, std::string client_host, int16_t& api_key,
                                                int16_t& api_version) {
  Reader r(frame);
  // Bytes that are not UTF-8 become U+FFFD, as in Kafka's (Java) decoder.
  r.set_text_fix([](std::string& s) {
    if (!is_utf8(s)) s = utf8_safe(s);
  });
  auto header = decode_request_header(r);
  if (!header) co_return std::unexpected(header.error());
  RequestHeader& h = *header;
  api_key = h.api_key;
  api_version = h.api_version;
  auto api = find_api(h.api_key);
  if (!api) co_return fail(ErrorCode::kInvalidRequest, fmt::format("unsupported api key {}", h.api_key));
  const bool known_version = h.api_version >= api->min_version && h.api_version <= api->max_version;
  if (known_version && api->flexible(h.api_version)) {
    // Request header v2: the header's own tagged fields, then a flexible body.
    h.flexible = true;
    r.set_flexible(true);
    r.tags();
    if (!r.ok()) co_return fail(ErrorCode::kInvalidRequest, "request header's tagged fields are malformed");
  }
  if (h.api_key == static_cast<int16_t>(ApiKey::kApiVersions)) co_return co_await handle_api_versions(h, r);
  if (!known_version) {
    co_return fail(ErrorCode::kUnsupportedVersion, fmt::format("api key {} version {} not in [{}, {}]", h.api_key,
                                                               h.api_version, api->min_version, api->max_version));
  }
  Serve serve_api = route(api->key);
  if (serve_api == nullptr) co_return fail(ErrorCode::kInvalidRequest, "unhandled api");
  co_return co_await (this->*serve_api)(h, r, client_host);
}

namespace {
template <class T>
constexpr bool kIsAwaitable = false;
template <class T>
constexpr bool kIsAwaitable<asio::awaitable<T>> = true;
}  // namespace

template <auto decode, auto handler>
asio::awaitable<Result<Reply>> Broker::serve(const RequestHeader& h, Reader& r, const std::string& client_host) {
  auto req = decode(r, h.api_version);
  if (!req) co_return std::unexpected(req.error());
  // Only JoinGroup takes the client host (DescribeGroups reports it).
  auto call = [&] {
    if constexpr (std::is_invocable_v<decltype(handler), Broker*, const RequestHeader&, decltype(std::move(*req)),
                                      std::string>) {
      return std::invoke(handler, this, h, std::move(*req), client_host);
    } else {
      return std::invoke(handler, this, h, std::move(*req));
    }
  };
  if constexpr (kIsAwaitable<decltype(call())>) {
    co_return co_await call();
  } else {
    co_return call();
  }
}

Broker::Serve Broker::route(ApiKey key) {
  switch (key) {
    case ApiKey::kProduce:
      return &Broker::serve<decode_produce, &Broker::handle_produce>;
    case ApiKey::kFetch:
      return &Broker::serve<decode_fetch, &Broker::handle_fetch>;
    case ApiKey::kListOffsets:
      return &Broker::serve<decode_list_offsets, &Broker::handle_list_offsets>;
    case ApiKey::kMetadata:
      return &Broker::serve<decode_metadata, &Broker::handle_metadata>;
    case ApiKey::kOffsetCommit:
      return &Broker::serve<decode_offset_commit, &Broker::handle_offset_commit>;
    case ApiKey::kOffsetFetch:
      return &Broker::serve<decode_offset_fetch, &Broker::handle_offset_fetch>;
    case ApiKey::kFindCoordinator:
      return &Broker::serve<decode_find_coordinator, &Broker::handle_find_coordinator>;
    case ApiKey::kJoinGroup:
      return &Broker::serve<decode_join_group, &Broker::handle_join_group>;
    case ApiKey::kHeartbeat:
      return &Broker::serve<decode_heartbeat, &Broker::handle_heartbeat>;
    case ApiKey::kLeaveGroup:
      return &Broker::serve<decode_leave_group, &Broker::handle_leave_group>;
    case ApiKey::kSyncGroup:
      return &Broker::serve<decode_sync_group, &Broker::handle_sync_group>;
    case ApiKey::kDescribeGroups:
      return &Broker::serve<decode_describe_groups, &Broker::handle_describe_groups>;
    case ApiKey::kListGroups:
      return &Broker::serve<decode_list_groups, &Broker::handle_list_groups>;
    case ApiKey::kCreateTopics:
      return &Broker::serve<decode_create_topics, &Broker::handle_create_topics>;
    case ApiKey::kDeleteTopics:
      return &Broker::serve<decode_delete_topics, &Broker::handle_delete_topics>;
    case ApiKey::kInitProducerId:
      return &Broker::serve<decode_init_producer_id, &Broker::handle_init_producer_id>;
    case ApiKey::kCreatePartitions:
      return &Broker::serve<decode_create_partitions, &Broker::handle_create_partitions>;
    case ApiKey::kDeleteRecords:
      return &Broker::serve<decode_delete_records, &Broker::handle_delete_records>;
    case ApiKey::kDescribeConfigs:
      return &Broker::serve<decode_describe_configs, &Broker::handle_describe_configs>;
    case ApiKey::kAlterConfigs:
      return &Broker::serve<decode_alter_configs, &Broker::handle_alter_configs>;
    case ApiKey::kIncrementalAlterConfigs:
      return &Broker::serve<decode_incremental_alter_configs, &Broker::handle_incremental_alter_configs>;
    case ApiKey::kDeleteGroups:
      return &Broker::serve<decode_delete_groups, &Broker::handle_delete_groups>;
    case ApiKey::kApiVersions:  // answered before the version check, see handle()
      break;
  }
  return nullptr;
}

}  // namespace starling::broker
