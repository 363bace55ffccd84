#pragma once

// A minimal blocking Kafka-protocol client over a TCP socket, for tests that
// must send exact (or deliberately broken) bytes.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <stdexcept>
#include <string>

#include "services/broker/wire.h"

namespace starling::broker::testing {

/// A request frame (size, header v1 with client id "raw-test", body).
inline Bytes request_frame(int16_t api_key, int16_t version, const Bytes& body, int32_t correlation_id = 1,
                           bool flexible_header = false) {
  Writer w;
  size_t at = w.reserve_i32();
  w.i16(api_key);
  w.i16(version);
  w.i32(correlation_id);
  w.nullable_string(std::string("raw-test"));
  if (flexible_header) w.i8(0);  // empty tagged fields (header v2)
  w.raw(body.data(), body.size());
  w.patch_i32(at, static_cast<int32_t>(w.size() - 4));
  return w.take();
}

class RawClient {
 public:
  explicit RawClient(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      throw std::runtime_error("connect failed");
  }
  ~RawClient() { ::close(fd_); }

  bool send_bytes(const Bytes& b) {
    size_t done = 0;
    while (done < b.size()) {
      ssize_t n = ::send(fd_, b.data() + done, b.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  /// Frames a request with header v1 and sends it.
  bool send_request(int16_t api_key, int16_t version, const Bytes& body, int32_t correlation_id = 1,
                    bool flexible_header = false) {
    return send_bytes(request_frame(api_key, version, body, correlation_id, flexible_header));
  }

  /// Reads one response frame (without the size); nullopt on close/timeout.
  std::optional<Bytes> read_frame(int timeout_ms = 5000) {
    uint8_t size_buf[4];
    if (!read_exact(size_buf, 4, timeout_ms)) return std::nullopt;
    Bytes frame(static_cast<size_t>(load_be32(size_buf)));
    if (!read_exact(frame.data(), frame.size(), timeout_ms)) return std::nullopt;
    return frame;
  }

  /// Sends a request and returns the response body after the correlation id.
  std::optional<Bytes> call(int16_t api_key, int16_t version, const Bytes& body) {
    if (!send_request(api_key, version, body, 7)) return std::nullopt;
    auto f = read_frame();
    if (!f || f->size() < 4 || load_be32(f->data()) != 7) return std::nullopt;
    return Bytes(f->begin() + 4, f->end());
  }

  /// As call(), at a flexible version: request header v2 (an empty tagged
  /// field section after the client id), and the response header's tagged
  /// fields (v1; ApiVersions answers with header v0) read and dropped.
  std::optional<Bytes> call_flexible(int16_t api_key, int16_t version, const Bytes& body) {
    if (!send_request(api_key, version, body, 7, /*flexible_header=*/true)) return std::nullopt;
    auto f = read_frame();
    if (!f || f->size() < 4 || load_be32(f->data()) != 7) return std::nullopt;
    Reader r(ByteView(*f).subspan(4));
    r.set_flexible(true);
    if (api_key != 18) r.tags();
    if (!r.ok()) return std::nullopt;
    return Bytes(f->begin() + 4 + static_cast<std::ptrdiff_t>(r.position()), f->end());
  }

  /// True when the peer closed the connection within the timeout.
  bool closed_by_peer(int timeout_ms = 5000) {
    uint8_t b;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    return ::recv(fd_, &b, 1, 0) <= 0;
  }

 private:
  bool read_exact(uint8_t* buf, size_t n, int timeout_ms) {
    while (n > 0) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, timeout_ms) <= 0) return false;
      ssize_t r = ::recv(fd_, buf, n, 0);
      if (r <= 0) return false;
      buf += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  }
  int fd_ = -1;
};

}  // namespace starling::broker::testing
