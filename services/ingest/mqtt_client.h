#pragma once
// A minimal MQTT 3.1.1 subscriber on Boost.Asio, for the ingest bridge.
//
// Why not libmosquitto: in 2.0.11 (Debian 12) lib/handle_publish.c sends the
// PUBACK of a QoS 1 PUBLISH *before* it calls on_message, and has no manual
// acknowledgement. A crash between that PUBACK and Kafka's delivery report
// would lose the message. Here the application acknowledges: a PUBACK goes
// out only when the handler says so, so an unacknowledged message stays in
// mosquitto's persistent session and is redelivered.
//
// The subset: CONNECT (clean session 0), SUBSCRIBE (one filter, QoS 1),
// PUBLISH in (QoS 0/1), PUBACK out in the order the PUBLISHes came (MQTT
// 3.1.1 §4.6), PINGREQ keep-alive, DISCONNECT, and reconnect with backoff.
// No TLS, QoS 2 or outgoing PUBLISH.
//
// Threading: one io thread runs the connection. The handler is called on it
// and must not block; `ack` may be called from any thread, exactly once.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace starling::ingest {

struct MqttClientOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 1883;
  /// The persistent session belongs to this id: keep it stable across
  /// restarts, and never run two clients with the same one.
  std::string client_id = "starling-ingest";
  std::string username;  // empty: anonymous
  std::string password;
  // TLS when any of these is set. mosquitto's certificate must be signed by
  // `ca_file` (PEM; the system's CAs when empty) and name `host`; `cert_file`
  // and `key_file` are a client certificate, for a listener with
  // require_certificate. There is no mode that skips verification.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  bool tls() const { return !ca_file.empty() || !cert_file.empty() || !key_file.empty(); }
  std::string topic_filter = "starling/+/+/events";
  uint16_t keep_alive_s = 30;
  std::chrono::milliseconds min_backoff{100};
  std::chrono::milliseconds max_backoff{5000};
};

struct MqttMessage {
  std::string topic;
  std::string payload;
  int qos = 0;
  bool dup = false;  // mosquitto sent it before (a redelivery)
  bool retain = false;
};

/// What the handler decided for one message. `ack`: send the PUBACK (the
/// message is safe, or can never succeed). `redeliver`: no PUBACK, and the
/// connection is dropped and made again, so mosquitto sends it once more.
enum class MqttAck { kAck, kRedeliver };
using MqttAckFn = std::function<void(MqttAck)>;
using MqttHandler = std::function<void(MqttMessage, MqttAckFn)>;

/// Parses "host:port" (port defaults to 1883).
bool parse_mqtt_address(const std::string& address, std::string& host, uint16_t& port);

class MqttClient {
 public:
  /// Reads the TLS files, if any: one that is missing, unreadable or wrong
  /// throws std::runtime_error naming it (startup only).
  MqttClient(MqttClientOptions options, MqttHandler handler);
  /// stop(0) if still running.
  ~MqttClient();
  MqttClient(const MqttClient&) = delete;
  MqttClient& operator=(const MqttClient&) = delete;

  /// Starts the io thread, which connects (and reconnects) on its own.
  void start();
  /// Takes no new message, waits up to `drain` for the handler to answer the
  /// ones it has (sending their PUBACKs), then DISCONNECTs. Whatever is still
  /// unanswered stays in mosquitto's session for the next run. Idempotent.
  void stop(std::chrono::milliseconds drain);

  /// Connected and subscribed.
  bool connected() const;
  /// Why the last connection ended or failed ("" when none did).
  std::string last_error() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace starling::ingest
