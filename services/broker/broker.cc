#include "services/broker/broker.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

namespace starling::broker {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

namespace {

constexpr int32_t kNoAuthorizedOperations = INT32_MIN;  // "not requested" in Kafka
constexpr int32_t kMaxPartitionsPerTopic = 1000;

/// Starts a response frame: size placeholder, then header v0 (correlation id).
class Response {
 public:
  explicit Response(int32_t correlation_id) {
    size_at_ = w.reserve_i32();
    (void)size_at_;
    w.i32(correlation_id);
  }
  /// Writes a bytes field whose content becomes its own buffer.
  void bytes_by_move(Bytes data) {
    w.i32(static_cast<int32_t>(data.size()));
    if (data.empty()) return;
    size_ += w.size();
    parts_.push_back(w.take());
    w = Writer();
    size_ += data.size();
    parts_.push_back(std::move(data));
  }
  Reply done() {
    size_ += w.size();
    parts_.push_back(w.take());
    auto& first = parts_.front();
    store_be32(first.data(), static_cast<int32_t>(size_ - 4));
    return Reply{std::move(parts_)};
  }
  Writer w;

 private:
  size_t size_at_;
  size_t size_ = 0;
  std::vector<Bytes> parts_;
};

int16_t code(ErrorCode e) { return static_cast<int16_t>(e); }

int64_t wall_ms() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

bool valid_topic_name(const std::string& name) {
  if (name.empty() || name.size() > 249 || name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'; });
}

Broker::Broker(asio::any_io_executor ex, BrokerConfig config) : ex_(std::move(ex)), config_(std::move(config)) {
  config_.log.sync = config_.flush_interval_ms > 0 ? LogConfig::Sync::kInterval : LogConfig::Sync::kDeferred;
  flusher_ = std::make_unique<Flusher>(ex_);
  fs::create_directories(config_.data_dir / "logs");
  store_ = std::make_unique<MetadataStore>(config_.data_dir / "meta");
  auto topics = store_->load_topics();
  for (const auto& [name, count] : topics) {
    Topic t;
    for (int32_t p = 0; p < count; ++p) t.partitions.push_back(PartitionLog::open(partition_dir(name, p), config_.log));
    topics_.emplace(name, std::move(t));
  }
  // Directories of topics whose deletion was interrupted by a crash.
  for (const auto& entry : fs::directory_iterator(config_.data_dir / "logs")) {
    auto name = entry.path().filename().string();
    auto dash = name.rfind('-');
    if (dash == std::string::npos || topics.count(name.substr(0, dash)) == 0) {
      spdlog::info("removing orphaned log directory {}", entry.path().string());
      fs::remove_all(entry.path());
    }
  }
  groups_ = std::make_unique<GroupCoordinator>(ex_, *store_, [this](const std::string& t, int32_t p) {
    auto it = topics_.find(t);
    return it != topics_.end() && p >= 0 && p < static_cast<int32_t>(it->second.partitions.size());
  });
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

Result<void> Broker::create_topic(const std::string& name, int32_t partitions) {
  if (!valid_topic_name(name)) return fail(ErrorCode::kInvalidTopic, fmt::format("invalid topic name '{}'", name));
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
    for (int32_t p = 0; p < partitions; ++p) t.partitions.push_back(PartitionLog::open(partition_dir(name, p), config_.log));
  } catch (const std::exception& e) {
    t.partitions.clear();
    for (int32_t p = 0; p < partitions; ++p) {
      std::error_code ec;
      fs::remove_all(partition_dir(name, p), ec);
    }
    return fail(ErrorCode::kKafkaStorageError, e.what());
  }
  if (auto r = store_->put_topic(name, partitions); !r) return r;
  topics_.emplace(name, std::move(t));
  spdlog::info("created topic {} with {} partitions", name, partitions);
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
  Reader r(frame);
  auto header = decode_request_header(r);
  if (!header) co_return std::unexpected(header.error());
  const RequestHeader& h = *header;
  if (h.api_key == static_cast<int16_t>(ApiKey::kApiVersions)) co_return co_await handle_api_versions(h);
  auto api = find_api(h.api_key);
  if (!api) co_return fail(ErrorCode::kInvalidRequest, fmt::format("unsupported api key {}", h.api_key));
  if (h.api_version < api->min_version || h.api_version > api->max_version) {
    co_return fail(ErrorCode::kUnsupportedVersion,
                   fmt::format("api key {} version {} not in [{}, {}]", h.api_key, h.api_version, api->min_version,
                               api->max_version));
  }
  const int16_t v = h.api_version;
  switch (api->key) {
    case ApiKey::kProduce: {
      auto req = decode_produce(r, v);
      if (!req) co_return std::unexpected(req.error());
      co_return co_await handle_produce(h, *req);
    }
    case ApiKey::kFetch: {
      auto req = decode_fetch(r, v);
      if (!req) co_return std::unexpected(req.error());
      co_return co_await handle_fetch(h, *req);
    }
    case ApiKey::kListOffsets: {
      auto req = decode_list_offsets(r, v);
      if (!req) co_return std::unexpected(req.error());
      co_return handle_list_offsets(h, *req);
    }
    case ApiKey::kMetadata: {
      auto req = decode_metadata(r, v);
      if (!req) co_return std::unexpected(req.error());
      co_return handle_metadata(h, *req);
    }
    case ApiKey::kOffsetCommit: {
      auto req = decode_offset_commit(r, v);
      if (!req) co_return std::unexpected(req.error());
      co_return handle_offset_commit(h, *req);
    }
    case ApiKey::kOffsetFetch: {
      auto req = decode_offset_fetch(r, v);
      if (!req) co_return std::unexpected(req.error());
      co_return handle_offset_fetch(h, *req);
    }
    case ApiKey::kFindCoordinator: {
      auto req = decode_find_coordinator(r, v);
      if (!req) co_return std::unexpected(req.error());
      co_return handle_find_coordinator(h, *req);
    }
    case ApiKey::kJoinGroup: {
      auto req = decode_join_group(r, v);
      if (!req) co_return std::unexpected(req.error());
      co_return co_await handle_join_group(h, std::move(*req), client_host);
    }
    case ApiKey::kHeartbeat: {
      auto req = decode_heartbeat(r, v);
      if (!req) co_return std::unexpected(req.error());
      co_return handle_heartbeat(h, *req);
    }
    case ApiKey::kLeaveGroup: {
      auto req = decode_leave_group(r, v);
      if (!req) co_return std::unexpected(req.error());
      co_return handle_leave_group(h, *req);
    }
    case ApiKey::kSyncGroup: {
      auto req = decode_sync_group(r, v);
      if (!req) co_return std::unexpected(req.error());
      co_return co_await handle_sync_group(h, std::move(*req));
    }
    case ApiKey::kDescribeGroups: {
      auto req = decode_describe_groups(r, v);
      if (!req) co_return std::unexpected(req.error());
      co_return handle_describe_groups(h, *req);
    }
    case ApiKey::kListGroups: {
      if (r.remaining() != 0) co_return fail(ErrorCode::kInvalidRequest, "ListGroups request has trailing bytes");
      co_return handle_list_groups(h);
    }
    case ApiKey::kCreateTopics: {
      auto req = decode_create_topics(r, v);
      if (!req) co_return std::unexpected(req.error());
      co_return handle_create_topics(h, *req);
    }
    case ApiKey::kDeleteTopics: {
      auto req = decode_delete_topics(r, v);
      if (!req) co_return std::unexpected(req.error());
      co_return handle_delete_topics(h, *req);
    }
    case ApiKey::kInitProducerId: {
      auto req = decode_init_producer_id(r, v);
      if (!req) co_return std::unexpected(req.error());
      co_return handle_init_producer_id(h, *req);
    }
    case ApiKey::kApiVersions:
      break;
  }
  co_return fail(ErrorCode::kInvalidRequest, "unhandled api");
}

asio::awaitable<Reply> Broker::handle_api_versions(const RequestHeader& h) {
  // A version we do not know (v3+ is flexible) is answered in the v0 format
  // with UNSUPPORTED_VERSION and our ranges, as Kafka does, so the client
  // retries with a version from the list. The body is not decoded.
  auto range = *find_api(static_cast<int16_t>(ApiKey::kApiVersions));
  bool supported = h.api_version >= range.min_version && h.api_version <= range.max_version;
  Response resp(h.correlation_id);
  auto& w = resp.w;
  w.i16(code(supported ? ErrorCode::kNone : ErrorCode::kUnsupportedVersion));
  w.array_len(supported_apis().size());
  for (const auto& a : supported_apis()) {
    w.i16(static_cast<int16_t>(a.key));
    w.i16(a.min_version);
    w.i16(a.max_version);
  }
  if (supported && h.api_version >= 1) w.i32(0);  // throttle_time_ms
  co_return resp.done();
}

Result<Reply> Broker::handle_metadata(const RequestHeader& h, const MetadataRequest& req) {
  const int16_t v = h.api_version;
  std::vector<std::string> names;
  if (req.topics) {
    names = *req.topics;
  } else {
    for (const auto& [n, t] : topics_) names.push_back(n);
  }
  std::vector<std::pair<std::string, ErrorCode>> results;
  for (const auto& n : names) {
    ErrorCode e = ErrorCode::kNone;
    if (topics_.count(n) == 0) {
      if (!valid_topic_name(n)) {
        e = ErrorCode::kInvalidTopic;
      } else if (config_.auto_create_topics && req.allow_auto_topic_creation) {
        auto r = create_topic(n, config_.default_partitions);
        if (!r && r.error().code != ErrorCode::kTopicAlreadyExists) e = r.error().code;
      } else {
        e = ErrorCode::kUnknownTopicOrPartition;
      }
    }
    results.emplace_back(n, e);
  }
  Response resp(h.correlation_id);
  auto& w = resp.w;
  if (v >= 3) w.i32(0);
  w.array_len(1);
  w.i32(config_.node_id);
  w.string(config_.advertised_host);
  w.i32(config_.advertised_port);
  if (v >= 1) w.nullable_string(std::nullopt);  // rack
  if (v >= 2) w.nullable_string(config_.cluster_id);
  if (v >= 1) w.i32(config_.node_id);  // controller
  w.array_len(results.size());
  for (const auto& [name, err] : results) {
    w.i16(code(err));
    w.string(name);
    if (v >= 1) w.boolean(false);
    auto it = topics_.find(name);
    size_t count = err == ErrorCode::kNone && it != topics_.end() ? it->second.partitions.size() : 0;
    w.array_len(count);
    for (size_t p = 0; p < count; ++p) {
      w.i16(0);
      w.i32(static_cast<int32_t>(p));
      w.i32(config_.node_id);
      if (v >= 7) w.i32(0);  // leader epoch: a single node never changes leader
      w.array_len(1);
      w.i32(config_.node_id);
      w.array_len(1);
      w.i32(config_.node_id);
      if (v >= 5) w.array_len(0);
    }
    if (v >= 8) w.i32(kNoAuthorizedOperations);
  }
  if (v >= 8) w.i32(kNoAuthorizedOperations);
  return resp.done();
}

asio::awaitable<Reply> Broker::handle_produce(const RequestHeader& h, const ProduceRequest& req) {
  const int16_t v = h.api_version;
  struct PartResult {
    int32_t index;
    ErrorCode error;
    int64_t base_offset;
    int64_t log_start;
    int64_t durable_end_needed = -1;  // -1: nothing to wait for
  };
  std::vector<std::pair<std::string, std::vector<PartResult>>> results;
  bool acks_ok = req.acks == 0 || req.acks == 1 || req.acks == -1;
  for (const auto& t : req.topics) {
    std::vector<PartResult> parts;
    for (const auto& p : t.partitions) {
      PartResult pr{p.index, ErrorCode::kNone, -1, -1};
      PartitionLog* lg = log(t.name, p.index);
      if (!acks_ok) {
        pr.error = ErrorCode::kInvalidRequiredAcks;
      } else if (req.transactional_id) {
        // Transactions are out of scope (PRODUCT.md): idempotence is enough.
        pr.error = ErrorCode::kInvalidRequest;
      } else if (lg == nullptr) {
        pr.error = ErrorCode::kUnknownTopicOrPartition;
      } else if (!p.records) {
        pr.error = ErrorCode::kCorruptMessage;
      } else {
        auto batches = validate_record_set(*p.records, config_.max_batch_bytes);
        if (!batches) {
          pr.error = batches.error().code;
          spdlog::warn("produce to {}-{} rejected: {}", t.name, p.index, batches.error().message);
        } else if (std::any_of(batches->begin(), batches->end(), [](const auto& b) { return b.header.is_transactional(); })) {
          pr.error = ErrorCode::kInvalidRecord;
        } else {
          auto appended = lg->append(*p.records, *batches);
          if (!appended) {
            pr.error = appended.error().code;
            if (pr.error == ErrorCode::kKafkaStorageError) {
              spdlog::error("append to {}-{} failed: {}", t.name, p.index, appended.error().message);
            } else {
              spdlog::debug("append to {}-{} refused: {}", t.name, p.index, appended.error().message);
            }
          } else {
            pr.base_offset = appended->base_offset;
            pr.durable_end_needed = appended->durable_end_needed;
            if (config_.log.sync != LogConfig::Sync::kDeferred && !appended->duplicate) notify_fetchers(t.name, p.index);
          }
        }
        pr.log_start = lg->log_start_offset();
      }
      parts.push_back(pr);
    }
    results.emplace_back(t.name, std::move(parts));
  }
  if (config_.log.sync == LogConfig::Sync::kDeferred) {
    // Group commit: acknowledge (and let consumers see) the appends only once
    // fdatasync'ed. Other requests keep being served meanwhile.
    std::vector<int> fds;
    for (auto& [name, parts] : results) {
      for (auto& pr : parts) {
        PartitionLog* lg = pr.durable_end_needed >= 0 ? log(name, pr.index) : nullptr;
        if (lg == nullptr || lg->high_watermark() >= pr.durable_end_needed) continue;
        for (int fd : lg->unsynced_fds()) fds.push_back(fd);
      }
    }
    if (!fds.empty()) {
      bool ok = co_await flusher_->sync(fds);
      for (auto& [name, parts] : results) {
        for (auto& pr : parts) {
          if (pr.durable_end_needed < 0) continue;
          PartitionLog* lg = log(name, pr.index);  // looked up again: the topic may be gone
          if (!ok) {
            pr.error = ErrorCode::kKafkaStorageError;
          } else if (lg != nullptr) {
            int64_t before = lg->high_watermark();
            lg->mark_durable(pr.durable_end_needed);
            if (lg->high_watermark() > before) notify_fetchers(name, pr.index);
          }
        }
      }
    }
  }
  if (req.acks == 0) co_return Reply{};
  Response resp(h.correlation_id);
  auto& w = resp.w;
  w.array_len(results.size());
  for (const auto& [name, parts] : results) {
    w.string(name);
    w.array_len(parts.size());
    for (const auto& pr : parts) {
      w.i32(pr.index);
      w.i16(code(pr.error));
      w.i64(pr.base_offset);
      w.i64(-1);  // log_append_time_ms: CreateTime topics only
      if (v >= 5) w.i64(pr.log_start);
    }
  }
  w.i32(0);  // throttle_time_ms
  co_return resp.done();
}

asio::awaitable<Reply> Broker::handle_fetch(const RequestHeader& h, const FetchRequest& req) {
  const int16_t v = h.api_version;
  struct PartResult {
    int32_t index;
    ErrorCode error = ErrorCode::kNone;
    int64_t high_watermark = -1;
    int64_t log_start = -1;
    Bytes records;
  };
  using TopicResults = std::vector<std::pair<std::string, std::vector<PartResult>>>;
  auto deadline = Clock::now() + milliseconds(std::max(0, req.max_wait_ms));
  auto collect = [&](size_t& total, bool& any_error) {
    TopicResults out;
    total = 0;
    any_error = false;
    size_t budget = req.max_bytes > 0 ? static_cast<size_t>(req.max_bytes) : 0;
    for (const auto& t : req.topics) {
      std::vector<PartResult> parts;
      for (const auto& p : t.partitions) {
        PartResult pr;
        pr.index = p.index;
        PartitionLog* lg = log(t.name, p.index);
        if (lg == nullptr) {
          pr.error = ErrorCode::kUnknownTopicOrPartition;
          any_error = true;
        } else {
          pr.high_watermark = lg->high_watermark();
          pr.log_start = lg->log_start_offset();
          size_t limit = std::min<size_t>(static_cast<size_t>(std::max(0, p.partition_max_bytes)), budget > total ? budget - total : 0);
          auto rd = lg->read(p.fetch_offset, limit, /*allow_oversized_first=*/total == 0);
          if (!rd) {
            pr.error = rd.error().code;
            any_error = true;
          } else {
            total += rd->records.size();
            pr.records = std::move(rd->records);
          }
        }
        parts.push_back(std::move(pr));
      }
      out.emplace_back(t.name, std::move(parts));
    }
    return out;
  };

  size_t total = 0;
  bool any_error = false;
  TopicResults results = collect(total, any_error);
  if (!any_error && total < static_cast<size_t>(std::max(0, req.min_bytes)) && Clock::now() < deadline) {
    // Long poll: park until a produce to one of these partitions wakes us.
    FetchWaiter waiter;
    for (const auto& t : req.topics) {
      for (const auto& p : t.partitions) waiter.watched.emplace(t.name, p.index);
    }
    fetch_waiters_.push_back(&waiter);
    while (Clock::now() < deadline) {
      waiter.pending = std::make_shared<Pending<bool>>(ex_);
      co_await waiter.pending->wait_until(deadline);
      results = collect(total, any_error);
      if (any_error || total >= static_cast<size_t>(std::max(0, req.min_bytes))) break;
    }
    fetch_waiters_.erase(std::find(fetch_waiters_.begin(), fetch_waiters_.end(), &waiter));
  }

  Response resp(h.correlation_id);
  auto& w = resp.w;
  w.i32(0);  // throttle_time_ms
  if (v >= 7) {
    w.i16(0);
    w.i32(0);  // session id 0: no incremental fetch sessions
  }
  w.array_len(results.size());
  for (auto& [name, parts] : results) {
    w.string(name);
    w.array_len(parts.size());
    for (auto& pr : parts) {
      w.i32(pr.index);
      w.i16(code(pr.error));
      w.i64(pr.high_watermark);
      w.i64(pr.high_watermark);  // last stable offset: no transactions, so = high watermark
      if (v >= 5) w.i64(pr.log_start);
      w.array_len(0);  // aborted transactions
      if (v >= 11) w.i32(-1);  // preferred read replica
      resp.bytes_by_move(std::move(pr.records));
    }
  }
  co_return resp.done();
}

Reply Broker::handle_list_offsets(const RequestHeader& h, const ListOffsetsRequest& req) {
  const int16_t v = h.api_version;
  Response resp(h.correlation_id);
  auto& w = resp.w;
  if (v >= 2) w.i32(0);
  w.array_len(req.topics.size());
  for (const auto& t : req.topics) {
    w.string(t.name);
    w.array_len(t.partitions.size());
    for (const auto& p : t.partitions) {
      PartitionLog* lg = log(t.name, p.index);
      ErrorCode e = ErrorCode::kNone;
      int64_t ts = -1;
      int64_t offset = -1;
      if (lg == nullptr) {
        e = ErrorCode::kUnknownTopicOrPartition;
      } else if (p.timestamp == -2) {
        offset = lg->log_start_offset();
      } else if (p.timestamp == -1) {
        offset = lg->high_watermark();
      } else if (p.timestamp < 0) {
        e = ErrorCode::kInvalidRequest;
      } else {
        offset = lg->offset_for_timestamp(p.timestamp);
        if (offset >= 0) ts = p.timestamp;
      }
      w.i32(p.index);
      w.i16(code(e));
      w.i64(ts);
      w.i64(offset);
      if (v >= 4) w.i32(e == ErrorCode::kNone ? 0 : -1);
    }
  }
  return resp.done();
}

Reply Broker::handle_create_topics(const RequestHeader& h, const CreateTopicsRequest& req) {
  const int16_t v = h.api_version;
  Response resp(h.correlation_id);
  auto& w = resp.w;
  if (v >= 2) w.i32(0);
  w.array_len(req.topics.size());
  for (const auto& t : req.topics) {
    ErrorCode e = ErrorCode::kNone;
    std::optional<std::string> message;
    int32_t partitions = t.num_partitions == -1 ? config_.default_partitions : t.num_partitions;
    if (t.replication_factor != -1 && t.replication_factor != 1) {
      e = ErrorCode::kInvalidReplicationFactor;
      message = "a single-node broker supports replication factor 1 only";
    } else if (t.has_assignments) {
      e = ErrorCode::kInvalidRequest;
      message = "manual replica assignments are not supported";
    } else if (req.validate_only) {
      if (!valid_topic_name(t.name)) {
        e = ErrorCode::kInvalidTopic;
      } else if (topics_.count(t.name) != 0) {
        e = ErrorCode::kTopicAlreadyExists;
      } else if (partitions <= 0) {
        e = ErrorCode::kInvalidPartitions;
      }
    } else if (auto r = create_topic(t.name, partitions); !r) {
      e = r.error().code;
      message = r.error().message;
    }
    w.string(t.name);
    w.i16(code(e));
    if (v >= 1) w.nullable_string(message);
  }
  return resp.done();
}

Reply Broker::handle_delete_topics(const RequestHeader& h, const DeleteTopicsRequest& req) {
  Response resp(h.correlation_id);
  auto& w = resp.w;
  if (h.api_version >= 1) w.i32(0);
  w.array_len(req.names.size());
  for (const auto& n : req.names) {
    auto r = delete_topic(n);
    w.string(n);
    w.i16(code(r ? ErrorCode::kNone : r.error().code));
  }
  return resp.done();
}

Reply Broker::handle_init_producer_id(const RequestHeader& h, const InitProducerIdRequest& req) {
  Response resp(h.correlation_id);
  auto& w = resp.w;
  w.i32(0);
  if (req.transactional_id) {
    w.i16(code(ErrorCode::kInvalidRequest));  // transactions are not supported
    w.i64(-1);
    w.i16(-1);
    return resp.done();
  }
  auto id = store_->next_producer_id();
  w.i16(code(id ? ErrorCode::kNone : ErrorCode::kKafkaStorageError));
  w.i64(id ? *id : -1);
  w.i16(id ? 0 : -1);
  return resp.done();
}

Reply Broker::handle_find_coordinator(const RequestHeader& h, const FindCoordinatorRequest& req) {
  const int16_t v = h.api_version;
  Response resp(h.correlation_id);
  auto& w = resp.w;
  if (v >= 1) w.i32(0);
  bool ok = req.key_type == 0;  // groups only; transaction coordinators do not exist here
  w.i16(code(ok ? ErrorCode::kNone : ErrorCode::kCoordinatorNotAvailable));
  if (v >= 1) w.nullable_string(ok ? std::nullopt : std::optional<std::string>("transactions are not supported"));
  w.i32(ok ? config_.node_id : -1);
  w.string(ok ? config_.advertised_host : "");
  w.i32(ok ? config_.advertised_port : -1);
  return resp.done();
}

asio::awaitable<Reply> Broker::handle_join_group(const RequestHeader& h, JoinGroupRequest req, std::string host) {
  const int16_t v = h.api_version;
  auto r = co_await groups_->join(std::move(req), h.client_id.value_or(""), std::move(host));
  Response resp(h.correlation_id);
  auto& w = resp.w;
  if (v >= 2) w.i32(0);
  w.i16(code(r.error));
  w.i32(r.generation_id);
  w.string(r.protocol_name);
  w.string(r.leader);
  w.string(r.member_id);
  w.array_len(r.members.size());
  for (const auto& m : r.members) {
    w.string(m.member_id);
    if (v >= 5) w.nullable_string(m.group_instance_id);
    w.bytes(m.metadata);
  }
  co_return resp.done();
}

asio::awaitable<Reply> Broker::handle_sync_group(const RequestHeader& h, SyncGroupRequest req) {
  auto r = co_await groups_->sync(std::move(req));
  Response resp(h.correlation_id);
  auto& w = resp.w;
  if (h.api_version >= 1) w.i32(0);
  w.i16(code(r.error));
  w.bytes(r.assignment);
  co_return resp.done();
}

Reply Broker::handle_heartbeat(const RequestHeader& h, const HeartbeatRequest& req) {
  Response resp(h.correlation_id);
  auto& w = resp.w;
  if (h.api_version >= 1) w.i32(0);
  w.i16(code(groups_->heartbeat(req)));
  return resp.done();
}

Reply Broker::handle_leave_group(const RequestHeader& h, const LeaveGroupRequest& req) {
  auto errors = groups_->leave(req);
  Response resp(h.correlation_id);
  auto& w = resp.w;
  if (h.api_version >= 1) w.i32(0);
  if (h.api_version <= 2) {
    w.i16(code(errors.empty() ? ErrorCode::kNone : errors.front()));
  } else {
    w.i16(0);
    w.array_len(errors.size());
    for (size_t i = 0; i < errors.size(); ++i) {
      w.string(req.members[i].member_id);
      w.nullable_string(req.members[i].group_instance_id);
      w.i16(code(errors[i]));
    }
  }
  return resp.done();
}

Reply Broker::handle_offset_commit(const RequestHeader& h, const OffsetCommitRequest& req) {
  auto errors = groups_->commit(req);
  Response resp(h.correlation_id);
  auto& w = resp.w;
  if (h.api_version >= 3) w.i32(0);
  w.array_len(req.topics.size());
  size_t i = 0;
  for (const auto& t : req.topics) {
    w.string(t.name);
    w.array_len(t.partitions.size());
    for (const auto& p : t.partitions) {
      w.i32(p.index);
      w.i16(code(errors[i++]));
    }
  }
  return resp.done();
}

Reply Broker::handle_offset_fetch(const RequestHeader& h, const OffsetFetchRequest& req) {
  const int16_t v = h.api_version;
  auto results = groups_->fetch_offsets(req);
  // Group by topic, keeping first-seen order.
  std::vector<std::pair<std::string, std::vector<const GroupCoordinator::OffsetResult*>>> by_topic;
  for (const auto& r : results) {
    auto it = std::find_if(by_topic.begin(), by_topic.end(), [&](const auto& e) { return e.first == r.topic; });
    if (it == by_topic.end()) {
      by_topic.push_back({r.topic, {}});
      it = by_topic.end() - 1;
    }
    it->second.push_back(&r);
  }
  Response resp(h.correlation_id);
  auto& w = resp.w;
  if (v >= 3) w.i32(0);
  w.array_len(by_topic.size());
  for (const auto& [name, parts] : by_topic) {
    w.string(name);
    w.array_len(parts.size());
    for (const auto* p : parts) {
      w.i32(p->partition);
      w.i64(p->committed.offset);
      if (v >= 5) w.i32(p->committed.leader_epoch);
      w.nullable_string(p->committed.metadata);
      w.i16(code(p->error));
    }
  }
  if (v >= 2) w.i16(0);
  return resp.done();
}

Reply Broker::handle_list_groups(const RequestHeader& h) {
  auto groups = groups_->list_groups();
  Response resp(h.correlation_id);
  auto& w = resp.w;
  if (h.api_version >= 1) w.i32(0);
  w.i16(0);
  w.array_len(groups.size());
  for (const auto& [id, type] : groups) {
    w.string(id);
    w.string(type);
  }
  return resp.done();
}

Reply Broker::handle_describe_groups(const RequestHeader& h, const DescribeGroupsRequest& req) {
  const int16_t v = h.api_version;
  Response resp(h.correlation_id);
  auto& w = resp.w;
  if (v >= 1) w.i32(0);
  w.array_len(req.groups.size());
  for (const auto& id : req.groups) {
    auto d = groups_->describe(id);
    w.i16(code(d.error));
    w.string(d.group_id);
    w.string(d.state);
    w.string(d.protocol_type);
    w.string(d.protocol);
    w.array_len(d.members.size());
    for (const auto& m : d.members) {
      w.string(m.member_id);
      if (v >= 4) w.nullable_string(m.group_instance_id);
      w.string(m.client_id);
      w.string(m.client_host);
      w.bytes(m.metadata);
      w.bytes(m.assignment);
    }
    if (v >= 3) w.i32(kNoAuthorizedOperations);
  }
  return resp.done();
}

}  // namespace starling::broker
