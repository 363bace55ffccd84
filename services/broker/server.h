#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <set>

#include "services/broker/asio.h"
#include "services/broker/broker.h"
#include "services/common/log_limit.h"

namespace starling::broker {

struct Pipeline;

struct ServerConfig {
  /// Frames larger than this close the connection (Kafka's socket.request.max.bytes).
  size_t max_frame_bytes = 100u << 20;
  /// Connections beyond this many are accepted and closed at once (Kafka's
  /// max.connections); each costs a descriptor and two coroutines.
  size_t max_connections = 1024;
  /// Bytes of request frames read and not yet handled, across all
  /// connections (Kafka's queued.max.request.bytes, 500 MiB there): past it a
  /// connection's next frame is not read until handlers finish.
  size_t max_inflight_request_bytes = 256u << 20;
  /// A connection with no request in flight that has received no bytes for
  /// this long is closed (Kafka's connections.max.idle.ms, same default). A
  /// parked long-poll Fetch is in flight, so its consumer is never idle.
  std::chrono::milliseconds connections_max_idle{600'000};
  /// Once the first byte of a frame has arrived, the rest must arrive within
  /// this, or the connection is closed and its budget bytes released. Time
  /// the reader spends waiting on the broker (in-flight slots, the byte
  /// budget) does not count: only the client's slowness does.
  std::chrono::milliseconds request_read_timeout{30'000};
};

/// Connections the server closed, by reason. I/O thread only.
struct ServerStats {
  uint64_t closed_idle = 0;
  uint64_t closed_read_timeout = 0;
};

/// The budget of request bytes in memory across all connections: read (in
/// chunks of at most 1 MiB, each taken before it is read) and not yet handled.
/// A reader that cannot take its next chunk stops reading its socket (TCP
/// backpressure) until handlers finish and release bytes. Waiters are
/// admitted in arrival order, so large frames are not starved by small ones.
///
/// Two exceptions keep it from deadlocking: a chunk is granted when nothing
/// is in use (so a frame larger than the whole budget gets through alone),
/// and the oldest partly read frame may always take its next chunk (so
/// frames half read by several connections cannot wait on each other
/// forever); the budget is exceeded by at most one frame. Charging chunks
/// as they are read, not the size a frame announces, means a client that
/// announces a large frame and stalls holds at most one chunk.
///
/// Threading: I/O thread only.
class ByteBudget {
 public:
  using Frame = uint64_t;
  ByteBudget(asio::any_io_executor ex, size_t limit) : ex_(std::move(ex)), limit_(limit) {}
  /// A new frame's id, for acquire() and end_frame().
  Frame new_frame() { return next_frame_++; }
  /// Returns once `n` more bytes of `frame` are granted; they are the
  /// caller's to release().
  asio::awaitable<void> acquire(Frame frame, size_t n);
  /// `frame` is read whole (or abandoned) and loses its priority.
  void end_frame(Frame frame);
  void release(size_t n);
  size_t in_use() const { return in_use_; }
  size_t waiting() const { return waiters_.size(); }

 private:
  struct Waiter {
    Frame frame;
    size_t n;
    std::shared_ptr<Pending<bool>> granted;
  };
  bool oldest_partly_read(Frame f) const { return !partly_read_.empty() && *partly_read_.begin() == f; }
  bool may_take(Frame f, size_t n) const { return in_use_ == 0 || in_use_ + n <= limit_ || oldest_partly_read(f); }
  void take(Frame f, size_t n) {
    in_use_ += n;
    partly_read_.insert(f);
  }
  /// Admits waiters: in order while they fit, and the oldest partly read frame.
  void admit();

  asio::any_io_executor ex_;
  size_t limit_;
  size_t in_use_ = 0;
  Frame next_frame_ = 0;
  std::set<Frame> partly_read_;
  std::deque<Waiter> waiters_;
};

/// Accepts TCP connections; per connection a reader coroutine reads
/// size-prefixed frames and starts a handler (the Broker's) for each, and a
/// writer coroutine sends the replies strictly in request order, and a
/// watchdog coroutine closes it when a frame is not read whole in time or it
/// has been idle too long. Oversized or undecodable frames close the
/// connection. When accept fails for want of descriptors it pauses (100 ms
/// doubling to 1 s) instead of spinning. ServerConfig has the limits.
///
/// Threading: runs on the io_context the Broker uses, on a single thread.
class Server {
 public:
  /// Binds and listens; throws at startup when the address is unusable.
  Server(asio::io_context& io, RequestHandler& handler, const asio::ip::tcp::endpoint& listen,
         ServerConfig config = {});
  asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
  void start();
  /// Stops accepting and closes every connection.
  void stop();
  size_t connection_count() const { return sockets_.size(); }
  const ByteBudget& inflight() const { return inflight_; }
  const ServerStats& stats() const { return stats_; }

 private:
  asio::awaitable<void> accept_loop();
  // Each coroutine that runs detached catches what its body throws, logs it
  // and closes the connection it serves, so nothing escapes it.
  asio::awaitable<void> session(std::shared_ptr<asio::ip::tcp::socket> socket);
  asio::awaitable<void> read_requests(std::shared_ptr<asio::ip::tcp::socket> socket, std::shared_ptr<Pipeline> pipe,
                                      std::string peer);
  asio::awaitable<void> writer(std::shared_ptr<asio::ip::tcp::socket> socket, std::shared_ptr<Pipeline> pipe,
                               std::string peer);
  asio::awaitable<void> write_replies(std::shared_ptr<asio::ip::tcp::socket> socket, std::shared_ptr<Pipeline> pipe,
                                      const std::string& peer);
  /// Closes the connection when its read timeout or idle timeout passes.
  asio::awaitable<void> watchdog(std::shared_ptr<asio::ip::tcp::socket> socket, std::shared_ptr<Pipeline> pipe,
                                 std::string peer);
  /// When `pipe`'s connection is due to be closed (Clock::time_point::max() if never).
  Clock::time_point deadline(const Pipeline& pipe) const;

  asio::io_context& io_;
  RequestHandler& handler_;
  ServerConfig config_;
  asio::ip::tcp::acceptor acceptor_;
  std::set<std::shared_ptr<asio::ip::tcp::socket>> sockets_;
  LogLimit accept_warnings_{std::chrono::seconds(1)};
  LogLimit connection_cap_warnings_{std::chrono::seconds(1)};
  LogLimit read_timeout_warnings_{std::chrono::seconds(1)};
  ByteBudget inflight_;
  ServerStats stats_;
};

}  // namespace starling::broker
