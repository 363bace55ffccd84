#pragma once

// Small RAII helpers over the librdkafka C API for integration tests.
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace starling::broker::testing {

struct Delivery {
  int32_t partition = -1;
  int64_t offset = -1;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  std::string value;
};

struct Received {
  int32_t partition = -1;
  int64_t offset = -1;
  std::string value;
  std::map<std::string, std::string> headers;
};

using Props = std::map<std::string, std::string>;

struct KafkaDeleter {
  void operator()(rd_kafka_t* rk) const {
    if (rk) rd_kafka_destroy(rk);
  }
};
using KafkaPtr = std::unique_ptr<rd_kafka_t, KafkaDeleter>;

inline rd_kafka_conf_t* make_conf(const std::string& bootstrap, const Props& props) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  auto set = [&](const std::string& k, const std::string& v) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      throw std::runtime_error(k + ": " + err);
    }
  };
  set("bootstrap.servers", bootstrap);
  set("broker.address.family", "v4");
  for (const auto& [k, v] : props) set(k, v);
  return conf;
}

class Producer {
 public:
  Producer(const std::string& bootstrap, const Props& props) {
    rd_kafka_conf_t* conf = make_conf(bootstrap, props);
    rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
      auto* self = static_cast<Producer*>(opaque);
      self->deliveries_.push_back(
          {m->partition, m->offset, m->err, std::string(static_cast<const char*>(m->payload), m->len)});
    });
    rd_kafka_conf_set_opaque(conf, this);
    char err[512];
    rk_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err));
    if (!rk_) throw std::runtime_error(err);
  }

  void produce(const std::string& topic, const std::string& value, int32_t partition = RD_KAFKA_PARTITION_UA,
               const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    for (;;) {
      rd_kafka_headers_t* hdrs = nullptr;
      if (!headers.empty()) {
        hdrs = rd_kafka_headers_new(headers.size());
        for (const auto& [k, v] : headers)
          rd_kafka_header_add(hdrs, k.c_str(), -1, v.data(), static_cast<ssize_t>(v.size()));
      }
      rd_kafka_resp_err_t e =
          rd_kafka_producev(rk_.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
                            RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR) return;
      if (hdrs) rd_kafka_headers_destroy(hdrs);
      if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) throw std::runtime_error(rd_kafka_err2str(e));
      rd_kafka_poll(rk_.get(), 10);
    }
  }

  /// Returns true when everything was delivered within the timeout.
  bool flush(int timeout_ms = 30000) { return rd_kafka_flush(rk_.get(), timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR; }
  void poll(int ms = 0) { rd_kafka_poll(rk_.get(), ms); }
  const std::vector<Delivery>& deliveries() const { return deliveries_; }
  rd_kafka_t* get() { return rk_.get(); }

 private:
  KafkaPtr rk_;
  std::vector<Delivery> deliveries_;
};

class Consumer {
 public:
  /// With "statistics.interval.ms" in `props`, stats() is the latest
  /// statistics JSON, delivered by consume().
  Consumer(const std::string& bootstrap, const Props& props) {
    rd_kafka_conf_t* conf = make_conf(bootstrap, props);
    rd_kafka_conf_set_stats_cb(conf, [](rd_kafka_t*, char* json, size_t len, void* opaque) {
      auto* self = static_cast<Consumer*>(opaque);
      self->stats_.assign(json, len);
      ++self->stats_count_;
      return 0;  // librdkafka frees json
    });
    rd_kafka_conf_set_opaque(conf, this);
    char err[512];
    rk_.reset(rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err));
    if (!rk_) throw std::runtime_error(err);
    rd_kafka_poll_set_consumer(rk_.get());
  }
  ~Consumer() {
    if (rk_) rd_kafka_consumer_close(rk_.get());
  }

  void assign(const std::string& topic, int partitions, int64_t offset = RD_KAFKA_OFFSET_BEGINNING) {
    auto* list = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = offset;
    rd_kafka_assign(rk_.get(), list);
    rd_kafka_topic_partition_list_destroy(list);
  }
  void subscribe(const std::string& topic) {
    auto* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic.c_str(), RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk_.get(), list);
    rd_kafka_topic_partition_list_destroy(list);
  }

  /// Polls until `count` messages arrived or the timeout passed.
  std::vector<Received> consume(size_t count, std::chrono::milliseconds timeout) {
    std::vector<Received> out;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (out.size() < count && std::chrono::steady_clock::now() < deadline) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_.get(), 100);
      if (!m) continue;
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        Received r{m->partition, m->offset, std::string(static_cast<const char*>(m->payload), m->len), {}};
        rd_kafka_headers_t* hdrs = nullptr;
        if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
          const char* name;
          const void* val;
          size_t size;
          for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
            r.headers[name] = std::string(static_cast<const char*>(val), size);
          }
        }
        out.push_back(std::move(r));
      } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        last_error_ = m->err;
      }
      rd_kafka_message_destroy(m);
    }
    return out;
  }

  const std::string& stats() const { return stats_; }
  size_t stats_count() const { return stats_count_; }

  rd_kafka_resp_err_t commit_sync() { return rd_kafka_commit(rk_.get(), nullptr, 0); }
  rd_kafka_resp_err_t last_error() const { return last_error_; }
  rd_kafka_t* get() { return rk_.get(); }

 private:
  KafkaPtr rk_;
  rd_kafka_resp_err_t last_error_ = RD_KAFKA_RESP_ERR_NO_ERROR;
  std::string stats_;
  size_t stats_count_ = 0;
};

}  // namespace starling::broker::testing
