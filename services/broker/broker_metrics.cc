#include "services/broker/broker_metrics.h"

#include "services/broker/messages.h"

namespace starling::broker {

namespace {

// From 100 µs (an answer from memory) to 30 s (a long poll, a join round).
const std::vector<double>& latency_buckets() {
  static const std::vector<double> b{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                     0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30};
  return b;
}

}  // namespace

std::string_view api_name(int16_t api_key) {
  // Kafka's names (clients/src/main/resources/common/message/*Request.json).
  switch (api_key) {
    case 0:
      return "Produce";
    case 1:
      return "Fetch";
    case 2:
      return "ListOffsets";
    case 3:
      return "Metadata";
    case 8:
      return "OffsetCommit";
    case 9:
      return "OffsetFetch";
    case 10:
      return "FindCoordinator";
    case 11:
      return "JoinGroup";
    case 12:
      return "Heartbeat";
    case 13:
      return "LeaveGroup";
    case 14:
      return "SyncGroup";
    case 15:
      return "DescribeGroups";
    case 16:
      return "ListGroups";
    case 18:
      return "ApiVersions";
    case 19:
      return "CreateTopics";
    case 20:
      return "DeleteTopics";
    case 21:
      return "DeleteRecords";
    case 22:
      return "InitProducerId";
    case 32:
      return "DescribeConfigs";
    case 33:
      return "AlterConfigs";
    case 37:
      return "CreatePartitions";
    case 42:
      return "DeleteGroups";
    case 44:
      return "IncrementalAlterConfigs";
    default:
      return "Unknown";
  }
}

void BrokerMetrics::request(int16_t api_key, int16_t version, double seconds) {
  // Keys outside the table share one series (a client's garbage cannot add series).
  const size_t slot = api_key >= 0 && static_cast<size_t>(api_key) < request_seconds_.size() - 1
                          ? static_cast<size_t>(api_key)
                          : request_seconds_.size() - 1;
  Histogram*& h = request_seconds_[slot];
  if (h == nullptr) {
    const std::string_view name = slot == request_seconds_.size() - 1 ? "Unknown" : api_name(api_key);
    h = &metrics().histogram("starling_broker_request_duration_seconds",
                             "Time from a request's frame read to its answer, per Kafka API (a long poll's wait "
                             "included); _count is the requests served",
                             latency_buckets(), {{"api", std::string(name)}});
  }
  h->observe(seconds);
  // Series are bounded by the supported table: unknown keys share slot 127,
  // versions outside an API's range share "other".
  const auto api = find_api(api_key);
  const bool served = api && version >= api->min_version && version <= api->max_version;
  const int32_t key = static_cast<int32_t>(slot << 16) | (served ? version : 0xffff);
  Counter*& c = requests_[key];
  if (c == nullptr) {
    const std::string_view name = slot == request_seconds_.size() - 1 ? "Unknown" : api_name(api_key);
    c = &metrics().counter("starling_broker_requests_total",
                           "Requests per Kafka API and version (\"other\": a version the broker does not serve)",
                           {{"api", std::string(name)}, {"version", served ? std::to_string(version) : "other"}});
  }
  c->add();
}

BrokerMetrics::TopicCounters& BrokerMetrics::topic(const std::string& name) {
  auto [it, inserted] = topics_.try_emplace(name);
  if (inserted) {
    it->second.in = &metrics().counter("starling_broker_bytes_in_total", "Record batch bytes appended to a topic's log",
                                       {{"topic", name}});
    it->second.out = &metrics().counter("starling_broker_bytes_out_total",
                                        "Record batch bytes returned by Fetch from a topic", {{"topic", name}});
  }
  return it->second;
}

void BrokerMetrics::bytes_in(const std::string& topic_name, uint64_t n) { topic(topic_name).in->add(n); }
void BrokerMetrics::bytes_out(const std::string& topic_name, uint64_t n) { topic(topic_name).out->add(n); }

Histogram& fsync_seconds() {
  static Histogram& h = metrics().histogram(
      "starling_broker_fsync_duration_seconds",
      "Time of one group commit's fdatasync (of every file it makes durable), before Produce is acknowledged",
      {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5});
  return h;
}

}  // namespace starling::broker
