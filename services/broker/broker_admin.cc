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

asio::awaitable<Reply> Broker::handle_api_versions(const RequestHeader& h, Reader& body) {
  // A version we do not know is answered in the v0 format with
  // UNSUPPORTED_VERSION and our ranges, as Kafka does, so the client retries
  // with a version from the list; its body is not decoded. v3 (flexible)
  // carries the client's software name and version: a body that is not
  // well-formed is answered with INVALID_REQUEST in the v3 format.
  const auto range = find_api(static_cast<int16_t>(ApiKey::kApiVersions));
  const bool supported = range && h.api_version >= range->min_version && h.api_version <= range->max_version;
  ErrorCode error = supported ? ErrorCode::kNone : ErrorCode::kUnsupportedVersion;
  if (supported && h.api_version >= 3) {
    body.string();  // client_software_name
    body.string();  // client_software_version
    body.tags();
    if (!body.ok() || body.remaining() != 0) error = ErrorCode::kInvalidRequest;
  }
  Response resp(h);  // header v0 at every version (KIP-511)
  auto& w = resp.w;
  w.i16(code(error));
  w.array_len(supported_apis().size());
  for (const auto& a : supported_apis()) {
    w.i16(static_cast<int16_t>(a.key));
    w.i16(a.min_version);
    w.i16(a.max_version);
    w.tags();
  }
  if (supported && h.api_version >= 1) w.i32(0);  // throttle_time_ms
  w.tags();
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
  Response resp(h);
  auto& w = resp.w;
  if (v >= 3) w.i32(0);
  w.array_len(1);
  w.i32(config_.node_id);
  w.string(config_.advertised_host);
  w.i32(config_.advertised_port);
  if (v >= 1) w.nullable_string(std::nullopt);  // rack
  w.tags();
  if (v >= 2) w.nullable_string(config_.cluster_id);
  if (v >= 1) w.i32(config_.node_id);  // controller
  w.array_len(results.size());
  for (const auto& [name, err] : results) {
    w.i16(code(err));
    w.string(name);
    if (v >= 10) {
      // The zero topic id: this broker names topics only. Clients then
      // fetch by name (librdkafka falls back to Fetch v12).
      for (int i = 0; i < 2; ++i) w.i64(0);
    }
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
      w.tags();
    }
    if (v >= 8) w.i32(kNoAuthorizedOperations);
    w.tags();
  }
  if (v >= 8 && v <= 10) w.i32(kNoAuthorizedOperations);  // cluster operations, gone in v11 (KIP-700)
  w.tags();
  return resp.done();
}

Reply Broker::handle_create_topics(const RequestHeader& h, const CreateTopicsRequest& req) {
  const int16_t v = h.api_version;
  Response resp(h);
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
  Response resp(h);
  auto& w = resp.w;
  if (h.api_version >= 1) w.i32(0);
  w.array_len(req.names.size());
  for (const auto& n : req.names) {
    auto r = delete_topic(n);
    w.string(n);
    w.i16(code(r ? ErrorCode::kNone : r.error().code));
    w.tags();
  }
  w.tags();
  return resp.done();
}

Reply Broker::handle_create_partitions(const RequestHeader& h, const CreatePartitionsRequest& req) {
  // A topic named twice is refused both times, as in Kafka.
  std::map<std::string, int> named;
  for (const auto& t : req.topics) ++named[t.name];
  Response resp(h);
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
    w.tags();
  }
  w.tags();
  return resp.done();
}

Reply Broker::handle_init_producer_id(const RequestHeader& h, const InitProducerIdRequest& req) {
  Response resp(h);
  auto& w = resp.w;
  w.i32(0);
  if (req.transactional_id) {
    w.i16(code(ErrorCode::kInvalidRequest));  // transactions are not supported
    w.i64(-1);
    w.i16(-1);
    w.tags();
    return resp.done();
  }
  auto id = store_->next_producer_id();
  w.i16(code(id ? ErrorCode::kNone : ErrorCode::kKafkaStorageError));
  w.i64(id ? *id : -1);
  w.i16(id ? 0 : -1);
  w.tags();
  return resp.done();
}

}  // namespace starling::broker
