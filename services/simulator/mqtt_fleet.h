#pragma once
// The simulated fleet over MQTT: each reading is one QoS 1 message to
// `starling/<pipeline>/<device_id>/events` on a mosquitto, as a device that
// publishes what it measures would send it. starling-ingest's bridge turns
// each message into one saga (services/ingest/README.md, MQTT).

#include <functional>
#include <string>

#include "services/common/error.h"
#include "services/simulator/simulate.h"

namespace starling::simulator {

/// Publishes `options.events` readings to mosquitto at `address` (host:port),
/// one message each, on the schedule request_due(k, 1, rate) (rate 0: as
/// fast as mosquitto acknowledges), with at most kMqttInFlight messages
/// unacknowledged. `batch`, `connections` and `url` do not apply. In the
/// result, `accepted` and `sagas` count mosquitto's PUBACKs (the message is
/// mosquitto's from then on; ingest's acknowledgement is to mosquitto, not to
/// the device), `latency` each PUBACK from the message's due time. A
/// connection mosquitto drops fails the run: QoS 1 messages in flight would
/// be resent by a new session only.
Result<SimResult> simulate_mqtt(const SimOptions& options, const std::string& address,
                                const std::function<void(uint64_t, uint64_t)>& progress = {});

inline constexpr int kMqttInFlight = 1000;

}  // namespace starling::simulator
