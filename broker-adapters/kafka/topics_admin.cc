#include "broker-adapters/kafka/topics_admin.h"

#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <memory>

#include "broker-adapters/kafka/admin_client.h"

namespace starling::kafka {
namespace {

int ms(std::chrono::milliseconds t) { return static_cast<int>(t.count()); }

// Every topic's metadata. Asking for all topics (rather than one by name)
// never makes a broker that auto-creates topics create the one asked for.
Result<std::vector<TopicInfo>> read_metadata(rd_kafka_t* rk, std::chrono::milliseconds timeout) {
  const rd_kafka_metadata_t* md = nullptr;
  const auto err = rd_kafka_metadata(rk, 1, nullptr, &md, ms(timeout));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return fail(Errc::kUnavailable, fmt::format("metadata: {}", rd_kafka_err2str(err)));
  }
  std::unique_ptr<const rd_kafka_metadata_t, decltype(&rd_kafka_metadata_destroy)> owned(md, rd_kafka_metadata_destroy);
  std::vector<TopicInfo> out;
  for (int t = 0; t < md->topic_cnt; ++t) {
    const auto& mt = md->topics[t];
    if (mt.err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    TopicInfo info{mt.topic, {}};
    for (int p = 0; p < mt.partition_cnt; ++p) {
      const auto& mp = mt.partitions[p];
      PartitionInfo pi;
      pi.partition = mp.id;
      pi.leader = mp.leader;
      pi.replicas.assign(mp.replicas, mp.replicas + mp.replica_cnt);
      pi.isr.assign(mp.isrs, mp.isrs + mp.isr_cnt);
      info.partitions.push_back(std::move(pi));
    }
    std::sort(info.partitions.begin(), info.partitions.end(),
              [](const auto& a, const auto& b) { return a.partition < b.partition; });
    out.push_back(std::move(info));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

Status read_watermarks(rd_kafka_t* rk, TopicInfo& topic, std::chrono::milliseconds timeout) {
  for (auto& p : topic.partitions) {
    const auto err =
        rd_kafka_query_watermark_offsets(rk, topic.name.c_str(), p.partition, &p.low, &p.high, ms(timeout));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return fail(Errc::kUnavailable,
                  fmt::format("offsets of {}/{}: {}", topic.name, p.partition, rd_kafka_err2str(err)));
    }
  }
  return {};
}

// Runs one admin request whose result arrives on `q`: the event, or nullptr
// after the timeout (plus a second for the answer to travel).
using Event = std::unique_ptr<rd_kafka_event_t, decltype(&rd_kafka_event_destroy)>;
Event await_event(rd_kafka_queue_t* q, std::chrono::milliseconds timeout) {
  return {rd_kafka_queue_poll(q, ms(timeout) + 1000), rd_kafka_event_destroy};
}

}  // namespace

int64_t TopicInfo::records() const {
  int64_t n = 0;
  for (const auto& p : partitions) n += p.high - p.low;
  return n;
}

int TopicInfo::replication() const {
  return partitions.empty() ? 0 : static_cast<int>(partitions.front().replicas.size());
}

Result<std::vector<TopicInfo>> list_topics(const KafkaOptions& options, bool watermarks,
                                           std::chrono::milliseconds timeout) {
  auto rk = admin_client(options);
  if (!rk) return std::unexpected(rk.error());
  auto topics = read_metadata(rk->get(), timeout);
  if (!topics || !watermarks) return topics;
  for (auto& t : *topics) {
    if (auto st = read_watermarks(rk->get(), t, timeout); !st) return std::unexpected(st.error());
  }
  return topics;
}

Result<TopicInfo> describe_topic(const KafkaOptions& options, const std::string& topic,
                                 std::chrono::milliseconds timeout) {
  auto rk = admin_client(options);
  if (!rk) return std::unexpected(rk.error());
  auto topics = read_metadata(rk->get(), timeout);
  if (!topics) return std::unexpected(topics.error());
  auto it = std::find_if(topics->begin(), topics->end(), [&](const auto& t) { return t.name == topic; });
  if (it == topics->end()) return fail(Errc::kNotFound, fmt::format("topic {} does not exist", topic));
  if (auto st = read_watermarks(rk->get(), *it, timeout); !st) return std::unexpected(st.error());
  return std::move(*it);
}

Result<std::vector<TopicConfigEntry>> topic_configs(const KafkaOptions& options, const std::string& topic,
                                                    std::chrono::milliseconds timeout) {
  auto rk = admin_client(options);
  if (!rk) return std::unexpected(rk.error());
  std::unique_ptr<rd_kafka_queue_t, decltype(&rd_kafka_queue_destroy)> q(rd_kafka_queue_new(rk->get()),
                                                                         rd_kafka_queue_destroy);
  std::unique_ptr<rd_kafka_AdminOptions_t, decltype(&rd_kafka_AdminOptions_destroy)> opts(
      rd_kafka_AdminOptions_new(rk->get(), RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS), rd_kafka_AdminOptions_destroy);
  char err[512];
  rd_kafka_AdminOptions_set_request_timeout(opts.get(), ms(timeout), err, sizeof err);
  rd_kafka_ConfigResource_t* res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str());
  rd_kafka_DescribeConfigs(rk->get(), &res, 1, opts.get(), q.get());
  rd_kafka_ConfigResource_destroy(res);
  auto ev = await_event(q.get(), timeout);
  if (!ev) return fail(Errc::kTimeout, fmt::format("configs of topic {}: no answer from the broker", topic));
  if (rd_kafka_event_error(ev.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return fail(Errc::kUnavailable,
                fmt::format("configs of topic {}: {}", topic, rd_kafka_event_error_string(ev.get())));
  }
  size_t n = 0;
  const auto* resources =
      rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev.get()), &n);
  if (n != 1) return fail(Errc::kInternal, fmt::format("configs of topic {}: {} resources in the answer", topic, n));
  const auto rerr = rd_kafka_ConfigResource_error(resources[0]);
  if (rerr == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
    return fail(Errc::kNotFound, fmt::format("topic {} does not exist", topic));
  }
  if (rerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* why = rd_kafka_ConfigResource_error_string(resources[0]);
    return fail(Errc::kUnavailable,
                fmt::format("configs of topic {}: {}", topic, why != nullptr ? why : rd_kafka_err2str(rerr)));
  }
  size_t count = 0;
  const auto* entries = rd_kafka_ConfigResource_configs(resources[0], &count);
  std::vector<TopicConfigEntry> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    const auto* e = entries[i];
    const char* value = rd_kafka_ConfigEntry_value(e);
    out.push_back({rd_kafka_ConfigEntry_name(e), value != nullptr ? value : "",
                   rd_kafka_ConfigSource_name(rd_kafka_ConfigEntry_source(e)), rd_kafka_ConfigEntry_is_default(e) != 0,
                   rd_kafka_ConfigEntry_is_read_only(e) != 0, rd_kafka_ConfigEntry_is_sensitive(e) != 0});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

Result<bool> create_topic(const KafkaOptions& options, const NewTopicSpec& spec, std::chrono::milliseconds timeout) {
  auto rk = admin_client(options);
  if (!rk) return std::unexpected(rk.error());
  char err[512];
  std::unique_ptr<rd_kafka_NewTopic_t, decltype(&rd_kafka_NewTopic_destroy)> nt(
      rd_kafka_NewTopic_new(spec.name.c_str(), spec.partitions, spec.replication, err, sizeof err),
      rd_kafka_NewTopic_destroy);
  if (!nt) return fail(Errc::kInvalidArgument, fmt::format("topic {}: {}", spec.name, err));
  for (const auto& [k, v] : spec.configs) {
    if (rd_kafka_NewTopic_set_config(nt.get(), k.c_str(), v.c_str()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return fail(Errc::kInvalidArgument, fmt::format("topic {}: config {}={} refused", spec.name, k, v));
    }
  }
  std::unique_ptr<rd_kafka_queue_t, decltype(&rd_kafka_queue_destroy)> q(rd_kafka_queue_new(rk->get()),
                                                                         rd_kafka_queue_destroy);
  std::unique_ptr<rd_kafka_AdminOptions_t, decltype(&rd_kafka_AdminOptions_destroy)> opts(
      rd_kafka_AdminOptions_new(rk->get(), RD_KAFKA_ADMIN_OP_CREATETOPICS), rd_kafka_AdminOptions_destroy);
  rd_kafka_AdminOptions_set_operation_timeout(opts.get(), ms(timeout), err, sizeof err);
  rd_kafka_NewTopic_t* one = nt.get();
  rd_kafka_CreateTopics(rk->get(), &one, 1, opts.get(), q.get());
  auto ev = await_event(q.get(), timeout);
  if (!ev) return fail(Errc::kTimeout, fmt::format("create topic {}: no answer from the broker", spec.name));
  if (rd_kafka_event_error(ev.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return fail(Errc::kUnavailable,
                fmt::format("create topic {}: {}", spec.name, rd_kafka_event_error_string(ev.get())));
  }
  size_t n = 0;
  const auto* res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev.get()), &n);
  if (n != 1) return fail(Errc::kInternal, fmt::format("create topic {}: {} results in the answer", spec.name, n));
  const auto e = rd_kafka_topic_result_error(res[0]);
  const char* why = rd_kafka_topic_result_error_string(res[0]);
  const std::string message =
      fmt::format("create topic {}: {}", spec.name, why != nullptr && *why != '\0' ? why : rd_kafka_err2str(e));
  switch (e) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
      return true;
    case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
      return false;
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICA_ASSIGNMENT:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
      return fail(Errc::kInvalidArgument, message);
    default:
      return fail(Errc::kUnavailable, message);
  }
}

}  // namespace starling::kafka
