// Broker handlers of the admin APIs: ApiVersions, Metadata, CreateTopics, DeleteTopics, InitProducerId,
// CreatePartitions.
#include <fmt/format.h>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "services/broker/broker.h"
#include "services/broker/response.h"
#include "services/common/text.h"

namespace starling::broker {

asio::awaitable<Reply> Broker::handle_api_versions(const RequestHeader& h) {
  // A version we do not know (v3+ is flexible) is answered in the v0 format
  // with UNSUPPORTED_VERSION and our ranges, as Kafka does, so the client
  // retries with a version from the list. The body is not decoded.
  const auto range = find_api(static_cast<int16_t>(ApiKey::kApiVersions));
  bool supported = range && h.api_version >= range->min_version && h.api_version <= range->max_version;
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

Reply Broker::handle_metadata(const RequestHeader& h, const MetadataRequest& req) {
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

Reply Broker::handle_create_topics(const RequestHeader& h, const CreateTopicsRequest& req) {
  const int16_t v = h.api_version;
  Response resp(h.correlation_id);
  auto& w = resp.w;
  if (v >= 2) w.i32(0);
  w.array_len(req.topics.size());
  for (const auto& t : req.topics) {
    ErrorCode e = ErrorCode::kNone;
    std::optional<std::string> message;
    // validate_only: every check a creation makes, and the answer it would
    // get, but nothing created.
    Result<void> r;
    if (auto checked = check_new_topic(t); !checked) {
      r = std::unexpected(checked.error());
    } else if (!req.validate_only) {
      r = create_topic(t.name, checked->partitions, checked->config);
    }
    if (!r) {
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

Reply Broker::handle_create_partitions(const RequestHeader& h, const CreatePartitionsRequest& req) {
  // A topic named twice is refused both times, as in Kafka.
  std::map<std::string, int> named;
  for (const auto& t : req.topics) ++named[t.name];
  Response resp(h.correlation_id);
  auto& w = resp.w;
  w.i32(0);  // throttle_time_ms
  w.array_len(req.topics.size());
  for (const auto& t : req.topics) {
    Result<void> r = named[t.name] > 1
                         ? fail(ErrorCode::kInvalidRequest, fmt::format("topic '{}' is named twice", excerpt(t.name)))
                         : create_partitions(t, req.validate_only);
    w.string(t.name);
    w.i16(code(r ? ErrorCode::kNone : r.error().code));
    w.nullable_string(r ? std::nullopt : std::optional<std::string>(r.error().message));
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

}  // namespace starling::broker
