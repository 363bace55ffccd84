#include "services/simulator/mqtt_fleet.h"

#include <fmt/format.h>
#include <mosquitto.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "services/common/ids.h"

namespace starling::simulator {

namespace {

using Clock = std::chrono::steady_clock;

// One libmosquitto client; its network thread calls back on_publish.
class Fleet {
 public:
  explicit Fleet(const std::string& client_id) {
    mosquitto_lib_init();
    m_ = mosquitto_new(client_id.c_str(), true, this);
    if (m_ == nullptr) return;
    mosquitto_max_inflight_messages_set(m_, kMqttInFlight);
    mosquitto_publish_callback_set(m_, [](mosquitto*, void* self, int mid) { static_cast<Fleet*>(self)->acked(mid); });
    mosquitto_disconnect_callback_set(m_, [](mosquitto*, void* self, int rc) {
      if (rc != 0) static_cast<Fleet*>(self)->dropped(rc);
    });
  }
  ~Fleet() {
    if (m_ != nullptr) {
      if (started_) {
        mosquitto_disconnect(m_);
        mosquitto_loop_stop(m_, false);
      }
      mosquitto_destroy(m_);
    }
    mosquitto_lib_cleanup();
  }
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;

  Status connect(const std::string& address) {
    if (m_ == nullptr) return fail(Errc::kInternal, "mosquitto_new failed");
    const auto colon = address.rfind(':');
    int port = 0;
    if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
      return fail(Errc::kInvalidArgument, fmt::format("--mqtt '{}': expected host:port", address));
    }
    try {
      port = std::stoi(address.substr(colon + 1));
    } catch (const std::exception&) {
      port = 0;
    }
    if (port < 1 || port > 65535)
      return fail(Errc::kInvalidArgument, fmt::format("--mqtt '{}': expected a port from 1 to 65535", address));
    if (const int rc = mosquitto_connect(m_, address.substr(0, colon).c_str(), port, 30); rc != MOSQ_ERR_SUCCESS) {
      return fail(Errc::kUnavailable, fmt::format("MQTT {}: {}", address, mosquitto_strerror(rc)));
    }
    if (const int rc = mosquitto_loop_start(m_); rc != MOSQ_ERR_SUCCESS) {
      return fail(Errc::kInternal, fmt::format("MQTT {}: {}", address, mosquitto_strerror(rc)));
    }
    started_ = true;
    return {};
  }

  // Publishes one message due at `due`, waiting while kMqttInFlight are unacknowledged.
  Status publish(const std::string& topic, const std::string& payload, Clock::time_point due, uint64_t events) {
    {
      std::unique_lock lock(mu_);
      // Bounded: a mosquitto that stops acknowledging without dropping the
      // connection fails the run instead of holding it for ever.
      if (!cv_.wait_for(lock, std::chrono::seconds(60),
                        [&] { return in_flight_.size() < static_cast<std::size_t>(kMqttInFlight) || error_; })) {
        return fail(Errc::kTimeout,
                    fmt::format("mosquitto acknowledged none of {} messages for 60 s", in_flight_.size()));
      }
      if (error_) return fail(Errc::kUnavailable, *error_);
    }
    // Not under mu_: libmosquitto's network thread calls acked() while it
    // holds its own locks. So a PUBACK may come before the mid is recorded.
    int mid = 0;
    const int rc =
        mosquitto_publish(m_, &mid, topic.c_str(), static_cast<int>(payload.size()), payload.data(), 1, false);
    if (rc != MOSQ_ERR_SUCCESS)
      return fail(Errc::kUnavailable, fmt::format("MQTT publish: {}", mosquitto_strerror(rc)));
    std::lock_guard lock(mu_);
    if (auto early = early_acks_.find(mid); early != early_acks_.end()) {
      record(due, early->second, events);
      early_acks_.erase(early);
    } else {
      in_flight_[mid] = {due, events};
    }
    return {};
  }

  // Waits until every message was acknowledged, or the bound passed.
  Status drain(std::chrono::seconds bound) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, bound, [&] { return in_flight_.empty() || error_; })) {
      return fail(Errc::kTimeout, fmt::format("{} messages not acknowledged by mosquitto after {} s", in_flight_.size(),
                                              bound.count()));
    }
    if (error_) return fail(Errc::kUnavailable, *error_);
    return {};
  }

  SimResult& result() { return res_; }
  std::mutex& mu() { return mu_; }

 private:
  void acked(int mid) {
    const auto now = Clock::now();
    std::lock_guard lock(mu_);
    auto it = in_flight_.find(mid);
    if (it == in_flight_.end()) {
      early_acks_[mid] = now;
      return;
    }
    record(it->second.first, now, it->second.second);
    in_flight_.erase(it);
    cv_.notify_all();
  }
  void record(Clock::time_point due, Clock::time_point at, uint64_t events) {
    res_.latency.record(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::max(at - due, Clock::duration{0})).count()));
    ++res_.sagas;
    res_.accepted += events;
  }
  void dropped(int rc) {
    std::lock_guard lock(mu_);
    error_ = fmt::format("mosquitto dropped the connection: {}", mosquitto_strerror(rc));
    cv_.notify_all();
  }

  mosquitto* m_ = nullptr;
  bool started_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<int, std::pair<Clock::time_point, uint64_t>> in_flight_;  // mid → (due, events)
  std::map<int, Clock::time_point> early_acks_;                      // PUBACKs before publish() returned
  std::optional<std::string> error_;
  SimResult res_;
};

}  // namespace

Result<SimResult> simulate_mqtt(const SimOptions& o, const std::string& address,
                                const std::function<void(uint64_t, uint64_t)>& progress) {
  Fleet fleet(fmt::format("starling-fleet-{}", random_id().substr(0, 12)));
  if (auto st = fleet.connect(address); !st) return std::unexpected(st.error());
  EventStream stream(o);
  const auto t0 = Clock::now();
  Reading r;
  std::string payload;
  uint64_t k = 0;
  uint64_t valid = 0;
  uint64_t faulty = 0;
  std::vector<std::string> valid_ids;
  std::vector<std::string> faulty_ids;
  while (stream.next(r)) {
    const auto due = t0 + std::chrono::duration_cast<Clock::duration>(request_due(k++, 1, o.rate));
    if (o.rate > 0) std::this_thread::sleep_until(due);
    payload.clear();
    r.append_json(payload);
    if (auto st = fleet.publish(fmt::format("starling/{}/{}/events", o.pipeline, r.device_id), payload,
                                o.rate > 0 ? due : Clock::now(), 1);
        !st) {
      return std::unexpected(st.error());
    }
    (r.fault.empty() ? valid : faulty) += 1;
    if (o.keep_ids) (r.fault.empty() ? valid_ids : faulty_ids).push_back(r.event_id);
    if (progress && k % 1000 == 0) progress(k, stream.total());
  }
  if (auto st = fleet.drain(std::chrono::seconds(120)); !st) return std::unexpected(st.error());
  if (progress) progress(k, stream.total());
  std::lock_guard lock(fleet.mu());
  SimResult res = std::move(fleet.result());
  res.requests = k;
  res.sent = k;
  res.valid = valid;
  res.faulty = faulty;
  res.valid_ids = std::move(valid_ids);
  res.faulty_ids = std::move(faulty_ids);
  res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return res;
}

}  // namespace starling::simulator
