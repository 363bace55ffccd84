#include "services/broker/broker.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

namespace starling::broker {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

namespace {

constexpr int32_t kMaxPartitionsPerTopic = 1000;

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

}  // namespace starling::broker
