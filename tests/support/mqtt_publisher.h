#pragma once
// A device publishing to a loopback mosquitto with libmosquitto (QoS 1, clean
// session), for the MQTT integration and hostile tests.

#include <fmt/format.h>
#include <mosquitto.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

namespace starling::testing {

// A device: libmosquitto, QoS 1, clean session. Counts mosquitto's PUBACKs.
// libmosquitto's loop uses select(): create it before the process holds more
// than 1,000 descriptors, or its socket cannot be watched.
class Publisher {
 public:
  explicit Publisher(uint16_t port) {
    mosquitto_lib_init();
    m_ = mosquitto_new(fmt::format("device-{}-{}", ::getpid(), next_id++).c_str(), true, this);
    mosquitto_publish_callback_set(m_, [](mosquitto*, void* self, int) { ++static_cast<Publisher*>(self)->acked_; });
    // Keep many messages in flight, as a busy gateway would.
    mosquitto_int_option(m_, MOSQ_OPT_SEND_MAXIMUM, 100);
    ok_ = mosquitto_connect(m_, "127.0.0.1", port, 30) == MOSQ_ERR_SUCCESS &&
          mosquitto_loop_start(m_) == MOSQ_ERR_SUCCESS;
  }
  ~Publisher() {
    mosquitto_disconnect(m_);
    mosquitto_loop_stop(m_, false);
    mosquitto_destroy(m_);
  }
  bool ok() const { return ok_; }
  /// False when libmosquitto refused it (then it is not waited for).
  bool publish(const std::string& topic, const std::string& payload) {
    ++sent_;
    if (mosquitto_publish(m_, nullptr, topic.c_str(), static_cast<int>(payload.size()), payload.data(), 1, false) ==
        MOSQ_ERR_SUCCESS) {
      return true;
    }
    --sent_;
    return false;
  }
  /// Waits (bounded) until mosquitto acknowledged everything published.
  bool wait_acked(std::chrono::seconds bound) {
    const auto end = std::chrono::steady_clock::now() + bound;
    while (acked_ < sent_ && std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return acked_ >= sent_;
  }

 private:
  static inline std::atomic<int> next_id{0};
  mosquitto* m_ = nullptr;
  bool ok_ = false;
  std::atomic<int> sent_{0};
  std::atomic<int> acked_{0};
};

}  // namespace starling::testing
