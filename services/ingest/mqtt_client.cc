#include "services/ingest/mqtt_client.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <deque>
#include <future>
#include <mutex>
#include <random>
#include <thread>
#include <utility>  // before asio: Boost 1.74's awaitable.hpp uses std::exchange
#include <vector>

#include "services/common/metrics.h"
#include "services/common/tls.h"

namespace starling::ingest {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

bool parse_mqtt_address(const std::string& address, std::string& host, uint16_t& port) {
  const auto colon = address.rfind(':');
  host = address.substr(0, colon);
  port = 1883;
  if (colon != std::string::npos) {
    const auto p = address.substr(colon + 1);
    if (p.empty() || p.size() > 5 || !std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return false;
    }
    const int v = std::stoi(p);
    if (v <= 0 || v > 65535) return false;
    port = static_cast<uint16_t>(v);
  }
  return !host.empty();
}

namespace {

// Control packet types (MQTT 3.1.1 §2.2.1), high nibble of the first byte.
constexpr uint8_t kConnect = 1, kConnack = 2, kPublish = 3, kPuback = 4, kSubscribe = 8, kSuback = 9, kPingreq = 12,
                  kPingresp = 13, kDisconnect = 14;
// Larger packets are refused (mosquitto's own default message_size_limit is
// 256 MiB; a device event batch is far below this).
constexpr std::size_t kMaxPacket = 64u << 20;

void put_u16(std::string& out, uint16_t v) {
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v & 0xff);
}
void put_str(std::string& out, const std::string& s) {
  put_u16(out, static_cast<uint16_t>(s.size()));
  out += s;
}
std::string packet(uint8_t first, const std::string& body) {
  std::string out(1, static_cast<char>(first));
  std::size_t n = body.size();
  do {
    uint8_t b = n % 128;
    n /= 128;
    if (n > 0) b |= 0x80;
    out += static_cast<char>(b);
  } while (n > 0);
  return out + body;
}

Gauge& connected_gauge() {
  static auto& g = metrics().gauge("starling_ingest_mqtt_connected", "1 while connected and subscribed to mosquitto");
  return g;
}
Counter& connects_total() {
  static auto& c =
      metrics().counter("starling_ingest_mqtt_connects_total", "MQTT sessions established (CONNACK+SUBACK)");
  return c;
}

}  // namespace

struct MqttClient::Impl : std::enable_shared_from_this<MqttClient::Impl> {
  struct Inflight {
    uint16_t id = 0;
    bool done = false;
  };

  using TlsLayer = ssl::stream<tcp::socket&>;

  MqttClientOptions opts;
  MqttHandler handler;
  std::shared_ptr<ssl::context> tls_context;  // set when opts.tls()
  asio::io_context io;
  tcp::socket socket{io};
  // This connection's TLS layer over `socket` (null without TLS). A new one
  // per connection; every pending operation holds the one it runs on, so a
  // dropped connection's late completions never touch the next one's.
  std::shared_ptr<TlsLayer> tls;
  tcp::resolver resolver{io};
  asio::steady_timer reconnect_timer{io};
  asio::steady_timer ping_timer{io};
  std::thread thread;

  // Only touched on the io thread.
  uint64_t gen = 0;  // one per connection attempt; stale callbacks compare it
  bool open = false;
  bool stopping = false;
  bool ping_outstanding = false;
  std::chrono::milliseconds backoff{0};
  std::vector<char> in;  // bytes read, not yet parsed
  std::array<char, std::size_t{64} * 1024> chunk{};
  std::deque<std::string> out;
  bool writing = false;
  std::deque<std::shared_ptr<Inflight>> inflight;  // QoS 1, in arrival order

  std::atomic<bool> up{false};
  std::atomic<bool> idle{true};  // nothing left to write
  std::atomic<std::size_t> unanswered{0};
  mutable std::mutex error_mu;
  std::string error;

  void set_error(const std::string& e) {
    std::lock_guard lock(error_mu);
    error = e;
  }

  void connect() {
    if (stopping) return;
    ++gen;
    const auto g = gen;
    in.clear();
    out.clear();
    writing = false;
    inflight.clear();
    ping_outstanding = false;
    tls.reset();
    resolver.async_resolve(
        opts.host, std::to_string(opts.port),
        [self = this, g](boost::system::error_code ec, const tcp::resolver::results_type& r) {
          if (g != self->gen) return;
          if (ec) return self->drop("resolving " + self->opts.host + ": " + ec.message());
          asio::async_connect(self->socket, r, [self, g](boost::system::error_code ec, const tcp::endpoint&) {
            if (g != self->gen) return;
            if (ec)
              return self->drop(fmt::format("connecting to {}:{}: {}", self->opts.host, self->opts.port, ec.message()));
            boost::system::error_code ignore;
            (void)self->socket.set_option(tcp::no_delay(true), ignore);
            self->secure(g);
          });
        });
  }

  // The TLS handshake, when configured; then the MQTT session starts.
  void secure(uint64_t g) {
    if (!tls_context) return session(g);
    tls = std::make_shared<TlsLayer>(socket, *tls_context);
    // The certificate must name the host (a DNS name, or an IP address SAN);
    // SNI only for names (RFC 6066 has no IP addresses).
    boost::system::error_code not_ip;
    (void)asio::ip::make_address(opts.host, not_ip);
    if (not_ip && SSL_set_tlsext_host_name(tls->native_handle(), opts.host.c_str()) != 1) {
      return drop("TLS: bad host name " + opts.host);
    }
    tls->set_verify_callback(ssl::host_name_verification(opts.host));
    tls->async_handshake(ssl::stream_base::client, [self = this, g, keep = tls](boost::system::error_code ec) {
      if (g != self->gen) return;
      if (ec)
        return self->drop(fmt::format("TLS handshake with {}:{}: {}", self->opts.host, self->opts.port, ec.message()));
      self->session(g);
    });
  }

  void session(uint64_t g) {
    open = true;
    send_connect();
    read();
    arm_ping(g);
  }

  // Reads and writes go through the TLS layer when there is one.
  template <class Buffers, class Done>
  void write_all(const Buffers& buffers, Done&& done) {
    if (tls) {
      asio::async_write(*tls, buffers,
                        [keep = tls, done = std::forward<Done>(done)](boost::system::error_code ec,
                                                                      std::size_t n) mutable { done(ec, n); });
    } else {
      asio::async_write(socket, buffers, std::forward<Done>(done));
    }
  }
  template <class Buffers, class Done>
  void read_some(const Buffers& buffers, Done&& done) {
    if (tls) {
      tls->async_read_some(buffers, [keep = tls, done = std::forward<Done>(done)](
                                        boost::system::error_code ec, std::size_t n) mutable { done(ec, n); });
    } else {
      socket.async_read_some(buffers, std::forward<Done>(done));
    }
  }

  void send_connect() {
    std::string body;
    put_str(body, "MQTT");
    body += static_cast<char>(4);  // protocol level 3.1.1
    uint8_t flags = 0;             // clean session 0: the session (and what it holds) survives us
    if (!opts.username.empty()) flags |= 0x80;
    if (!opts.password.empty()) flags |= 0x40;
    body += static_cast<char>(flags);
    put_u16(body, opts.keep_alive_s);
    put_str(body, opts.client_id);
    if (!opts.username.empty()) put_str(body, opts.username);
    if (!opts.password.empty()) put_str(body, opts.password);
    send(packet(kConnect << 4, body));
  }

  void send_subscribe() {
    std::string body;
    put_u16(body, 1);  // packet id; only one SUBSCRIBE per connection
    put_str(body, opts.topic_filter);
    body += static_cast<char>(1);  // QoS 1
    send(packet((kSubscribe << 4) | 0x02, body));
  }

  void send(std::string pkt) {
    idle = false;
    out.push_back(std::move(pkt));
    if (!writing) write_next();
  }

  void write_next() {
    if (out.empty() || !open) {
      writing = false;
      idle = true;
      return;
    }
    writing = true;
    const auto g = gen;
    write_all(asio::buffer(out.front()), [self = this, g](boost::system::error_code ec, std::size_t) {
      if (g != self->gen) return;
      if (ec) return self->drop("writing: " + ec.message());
      self->out.pop_front();
      self->write_next();
    });
  }

  void read() {
    const auto g = gen;
    read_some(asio::buffer(chunk), [self = this, g](boost::system::error_code ec, std::size_t n) {
      if (g != self->gen) return;
      if (ec)
        return self->drop(ec == asio::error::eof ? "mosquitto closed the connection" : "reading: " + ec.message());
      self->in.insert(self->in.end(), self->chunk.data(), self->chunk.data() + n);
      if (!self->parse()) return;
      self->read();
    });
  }

  // Handles every complete packet in `in`; false when the connection was dropped.
  bool parse() {
    std::size_t pos = 0;
    const auto g = gen;
    while (in.size() - pos >= 2) {
      std::size_t len = 0, mult = 1, i = pos + 1;
      bool complete = false;
      for (int k = 0; k < 4 && i < in.size(); ++k, ++i) {
        const auto b = static_cast<uint8_t>(in[i]);
        len += (b & 0x7f) * mult;
        mult *= 128;
        if (!(b & 0x80)) {
          complete = true;
          ++i;
          break;
        }
        if (k == 3) {
          drop("malformed remaining length");
          return false;
        }
      }
      if (!complete) break;
      if (len > kMaxPacket) {
        drop(fmt::format("a packet of {} bytes is larger than the {} bytes allowed", len, kMaxPacket));
        return false;
      }
      if (in.size() - i < len) break;
      const auto first = static_cast<uint8_t>(in[pos]);
      handle_packet(first, std::string_view(in.data() + i, len));
      if (g != gen) return false;  // handling dropped the connection
      pos = i + len;
    }
    in.erase(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(pos));
    return true;
  }

  static uint16_t u16(std::string_view b, std::size_t at) {
    return static_cast<uint16_t>((static_cast<uint8_t>(b[at]) << 8) | static_cast<uint8_t>(b[at + 1]));
  }

  void handle_packet(uint8_t first, std::string_view body) {
    switch (first >> 4) {
      case kConnack: {
        if (body.size() < 2) return drop("short CONNACK");
        if (body[1] != 0) {
          static const char* reasons[] = {"",
                                          "unacceptable protocol version",
                                          "client id rejected",
                                          "server unavailable",
                                          "bad user name or password",
                                          "not authorized"};
          const auto rc = static_cast<uint8_t>(body[1]);
          return drop(
              fmt::format("mosquitto refused the connection: {}", rc < 6 ? reasons[rc] : "code " + std::to_string(rc)));
        }
        spdlog::info("MQTT connected to {}:{} as {} (session present: {})", opts.host, opts.port, opts.client_id,
                     (body[0] & 1) != 0);
        // Subscribing again is harmless when the session already has it, and
        // keeps a changed filter in effect.
        return send_subscribe();
      }
      case kSuback: {
        if (body.size() < 3) return drop("short SUBACK");
        if (static_cast<uint8_t>(body[2]) == 0x80)
          return drop("mosquitto refused the subscription to " + opts.topic_filter);
        spdlog::info("MQTT subscribed to {} (QoS {})", opts.topic_filter, static_cast<int>(body[2]));
        backoff = 0ms;
        up = true;
        connected_gauge().set(1);
        connects_total().add();
        set_error("");
        return;
      }
      case kPublish:
        return on_publish(first, body);
      case kPingresp:
        ping_outstanding = false;
        return;
      default:
        return drop(fmt::format("unexpected packet type {}", first >> 4));
    }
  }

  void on_publish(uint8_t first, std::string_view body) {
    MqttMessage m;
    m.dup = (first & 0x08) != 0;
    m.qos = (first >> 1) & 0x03;
    m.retain = (first & 0x01) != 0;
    if (m.qos > 1) return drop("QoS 2 PUBLISH on a QoS 1 subscription");
    if (body.size() < 2) return drop("short PUBLISH");
    const std::size_t tlen = u16(body, 0);
    std::size_t at = 2 + tlen;
    if (body.size() < at + (m.qos ? 2 : 0)) return drop("short PUBLISH");
    m.topic.assign(body.substr(2, tlen));
    uint16_t id = 0;
    if (m.qos == 1) {
      id = u16(body, at);
      at += 2;
    }
    // While stopping, a new message is left unanswered: mosquitto keeps it
    // for the next run.
    if (stopping) return;
    m.payload.assign(body.substr(at));
    if (m.qos == 0) return handler(std::move(m), [](MqttAck) {});
    auto entry = std::make_shared<Inflight>();
    entry->id = id;
    inflight.push_back(entry);
    ++unanswered;
    const auto g = gen;
    std::weak_ptr<Impl> weak = shared_from_this();
    auto answered = std::make_shared<std::atomic<bool>>(false);
    handler(std::move(m), [weak, g, entry, answered](MqttAck a) {
      if (answered->exchange(true)) return;  // exactly once, whatever the caller does
      auto self = weak.lock();
      if (!self) return;
      asio::post(self->io, [weak, g, entry, a] {
        auto self = weak.lock();
        if (!self) return;
        --self->unanswered;
        // An answer for an earlier connection: that message comes again anyway.
        if (g != self->gen) return;
        if (a == MqttAck::kRedeliver)
          return self->drop("a message could not be persisted; reconnecting for redelivery");
        entry->done = true;
        while (!self->inflight.empty() && self->inflight.front()->done) {
          std::string body;
          put_u16(body, self->inflight.front()->id);
          self->send(packet(kPuback << 4, body));
          self->inflight.pop_front();
        }
      });
    });
  }

  void arm_ping(uint64_t g) {
    ping_timer.expires_after(std::chrono::seconds(std::max<int>(1, opts.keep_alive_s / 2)));
    ping_timer.async_wait([self = this, g](boost::system::error_code ec) {
      if (ec || g != self->gen) return;
      if (self->ping_outstanding) return self->drop("no PINGRESP within half the keep-alive");
      self->ping_outstanding = true;
      self->send(packet(kPingreq << 4, {}));
      self->arm_ping(g);
    });
  }

  // Ends this connection; messages it did not acknowledge stay in
  // mosquitto's session. Reconnects after the backoff unless stopping.
  void drop(const std::string& why) {
    ++gen;
    if (stopping) {
      spdlog::info("MQTT: {}", why);
    } else if (up) {
      spdlog::warn("MQTT connection to {}:{} lost: {}", opts.host, opts.port, why);
    } else {
      spdlog::warn("MQTT: {}", why);
    }
    set_error(why);
    up = false;
    connected_gauge().set(0);
    open = false;
    boost::system::error_code ignore;
    (void)socket.shutdown(tcp::socket::shutdown_both, ignore);
    (void)socket.close(ignore);
    resolver.cancel();
    ping_timer.cancel();
    inflight.clear();
    out.clear();
    writing = false;
    idle = true;
    if (stopping) return;
    backoff = std::clamp(backoff * 2, opts.min_backoff, opts.max_backoff);
    static thread_local std::minstd_rand rng(std::random_device{}());
    const auto wait = backoff / 2 + std::chrono::milliseconds(rng() % (backoff.count() / 2 + 1));
    reconnect_timer.expires_after(wait);
    reconnect_timer.async_wait([self = this](boost::system::error_code ec) {
      if (!ec) self->connect();
    });
  }
};

MqttClient::MqttClient(MqttClientOptions options, MqttHandler handler) : impl_(std::make_shared<Impl>()) {
  impl_->opts = std::move(options);
  impl_->handler = std::move(handler);
  if (impl_->opts.tls()) {
    try {
      impl_->tls_context = tls_client_context(impl_->opts.ca_file, impl_->opts.cert_file, impl_->opts.key_file);
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(std::string("MQTT: ") + e.what());
    }
  }
}

MqttClient::~MqttClient() { stop(0ms); }

void MqttClient::start() {
  auto* impl = impl_.get();
  asio::post(impl->io, [impl] { impl->connect(); });
  impl->thread = std::thread([impl] {
    auto guard = asio::make_work_guard(impl->io);
    impl->io.run();
  });
}

void MqttClient::stop(std::chrono::milliseconds drain) {
  // Handlers hold plain pointers (a shared one in the io queue would keep
  // the queue alive in a cycle); the io thread is joined before impl_ goes.
  auto* impl = impl_.get();
  if (!impl->thread.joinable()) return;
  asio::post(impl->io, [impl] { impl->stopping = true; });
  const auto deadline = std::chrono::steady_clock::now() + drain;
  while (impl->unanswered > 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  // The PUBACKs of the answers above are queued before this DISCONNECT, and
  // are written before it; the session stays, as clean session is 0.
  std::promise<void> queued;
  asio::post(impl->io, [impl, &queued] {
    if (impl->open) impl->send(packet(kDisconnect << 4, {}));
    queued.set_value();
  });
  queued.get_future().wait();
  for (int i = 0; i < 100 && !impl->idle; ++i) std::this_thread::sleep_for(10ms);
  asio::post(impl->io, [impl] {
    impl->drop("stopped");
    impl->reconnect_timer.cancel();
    impl->io.stop();
  });
  impl->thread.join();
}

bool MqttClient::connected() const { return impl_->up; }

std::string MqttClient::last_error() const {
  std::lock_guard lock(impl_->error_mu);
  return impl_->error;
}

}  // namespace starling::ingest
