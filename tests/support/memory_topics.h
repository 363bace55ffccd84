#pragma once
// Topics held in memory behind saga::TopicSource, so the saga API's
// topic-reading endpoints run in unit tests without a broker. Offsets run
// from `low` (records before it are "deleted by retention"); a topic can be
// made unreachable to see the 503.

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "services/saga/topics_api.h"

namespace starling::testing {

class MemoryTopics {
 public:
  struct Topic {
    std::vector<std::vector<kafka::InMessage>> partitions;
    int64_t low = 0;  // the first offset still stored, in every partition
  };

  void create(const std::string& topic, int partitions) { topics_[topic].partitions.resize(partitions); }

  /// Appends to a partition (creating the topic with one partition more if
  /// needed); returns the offset.
  int64_t add(const std::string& topic, int32_t partition, std::string key, std::string value, int64_t timestamp_ms) {
    auto& t = topics_[topic];
    if (static_cast<int32_t>(t.partitions.size()) <= partition) t.partitions.resize(partition + 1);
    auto& log = t.partitions[partition];
    kafka::InMessage m;
    m.topic = topic;
    m.partition = partition;
    m.offset = t.low + static_cast<int64_t>(log.size());
    m.timestamp_ms = timestamp_ms;
    m.key = std::move(key);
    m.value = std::move(value);
    log.push_back(std::move(m));
    return log.back().offset;
  }

  std::map<std::string, Topic>& topics() { return topics_; }
  bool down = false;        // every call fails as Kafka being unreachable does
  std::size_t polls = 0;    // poll_batch calls, over all sources
  std::size_t created = 0;  // sources made

  saga::TopicSourceFactory factory() {
    return [this](const kafka::KafkaOptions&) -> Result<std::unique_ptr<saga::TopicSource>> {
      if (down) return fail(Errc::kUnavailable, "connect to 127.0.0.1:9: refused");
      ++created;
      return std::unique_ptr<saga::TopicSource>(new Source(*this));
    };
  }

 private:
  class Source final : public saga::TopicSource {
   public:
    explicit Source(MemoryTopics& t) : t_(t) {}
    Result<int> partitions(const std::string& topic, std::chrono::milliseconds) override {
      if (t_.down) return fail(Errc::kUnavailable, "metadata: all brokers are down");
      auto it = t_.topics_.find(topic);
      if (it == t_.topics_.end()) return fail(Errc::kNotFound, "topic " + topic + " does not exist");
      return static_cast<int>(it->second.partitions.size());
    }
    Result<std::pair<int64_t, int64_t>> watermarks(const kafka::TopicPartition& tp,
                                                   std::chrono::milliseconds) override {
      if (t_.down) return fail(Errc::kUnavailable, "watermarks: all brokers are down");
      const auto& t = t_.topics_.at(tp.topic);
      return std::make_pair(t.low, t.low + static_cast<int64_t>(t.partitions.at(tp.partition).size()));
    }
    Result<int64_t> offset_for_time(const kafka::TopicPartition& tp, int64_t ts_ms,
                                    std::chrono::milliseconds) override {
      const auto& t = t_.topics_.at(tp.topic);
      const auto& log = t.partitions.at(tp.partition);
      for (const auto& m : log) {
        if (m.timestamp_ms >= ts_ms) return m.offset;
      }
      return t.low + static_cast<int64_t>(log.size());
    }
    Status assign(const std::map<kafka::TopicPartition, int64_t>& starts) override {
      pos_ = starts;
      return {};
    }
    Result<std::vector<kafka::InMessage>> poll_batch(std::size_t max, std::chrono::milliseconds) override {
      ++t_.polls;
      if (t_.down) return fail(Errc::kUnavailable, "fetch: all brokers are down");
      std::vector<kafka::InMessage> out;
      // Round robin over the partitions, a few records each, as fetches interleave.
      bool more = true;
      while (out.size() < max && more) {
        more = false;
        for (auto& [tp, next] : pos_) {
          const auto& t = t_.topics_.at(tp.topic);
          const auto& log = t.partitions.at(tp.partition);
          for (int i = 0; i < 3 && out.size() < max; ++i) {
            const int64_t idx = next - t.low;
            if (idx < 0 || idx >= static_cast<int64_t>(log.size())) break;
            out.push_back(log[idx]);
            ++next;
            more = true;
          }
        }
      }
      return out;
    }

   private:
    MemoryTopics& t_;
    std::map<kafka::TopicPartition, int64_t> pos_;
  };

  std::map<std::string, Topic> topics_;
};

}  // namespace starling::testing
