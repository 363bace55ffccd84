#include "services/broker/server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <deque>
#include <optional>
#include <utility>

namespace starling::broker {

using asio::ip::tcp;

Server::Server(asio::io_context& io, RequestHandler& handler, const tcp::endpoint& listen, ServerConfig config)
    : io_(io),
      handler_(handler),
      config_(config),
      acceptor_(io),
      inflight_(io.get_executor(), config.max_inflight_request_bytes) {
  acceptor_.open(listen.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(listen);
  acceptor_.listen();
}

namespace {

/// Completion of a detached coroutine: logs an exception that escaped it
/// (asio::detached would drop it without a word).
auto log_escaped(const char* what) {
  return [what](const std::exception_ptr& e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      spdlog::error("{} failed: {}", what, x.what());
    } catch (...) {
      spdlog::error("{} failed with a non-exception", what);
    }
  };
}

}  // namespace

void Server::start() { asio::co_spawn(io_, accept_loop(), log_escaped("accept loop")); }

void Server::stop() {
  boost::system::error_code ec;
  (void)acceptor_.close(ec);
  for (const auto& s : sockets_) (void)s->close(ec);
  sockets_.clear();
}

asio::awaitable<void> ByteBudget::acquire(Frame frame, size_t n) {
  if ((waiters_.empty() || oldest_partly_read(frame)) && may_take(frame, n)) {
    take(frame, n);
    co_return;
  }
  auto granted = std::make_shared<Pending<bool>>(ex_);
  waiters_.push_back({frame, n, granted});
  while (!granted->result) co_await granted->wait_until(Clock::time_point::max());
}

void ByteBudget::end_frame(Frame frame) {
  partly_read_.erase(frame);
  admit();
}

void ByteBudget::release(size_t n) {
  in_use_ -= std::min(n, in_use_);
  admit();
}

void ByteBudget::admit() {
  auto grant = [this](const std::deque<Waiter>::iterator& it) {
    take(it->frame, it->n);
    it->granted->complete(true);
    return waiters_.erase(it);
  };
  while (!waiters_.empty() && may_take(waiters_.front().frame, waiters_.front().n)) grant(waiters_.begin());
  if (partly_read_.empty()) return;
  auto oldest =
      std::find_if(waiters_.begin(), waiters_.end(), [this](const Waiter& w) { return oldest_partly_read(w.frame); });
  if (oldest != waiters_.end()) grant(oldest);
}

namespace {

// Out of descriptors (or kernel memory) the pending connection stays in the
// backlog and accept fails again at once: retrying without a pause spins a
// core and floods the log. Open connections keep being served meanwhile, and
// closing them frees descriptors.
constexpr auto kMinAcceptBackoff = std::chrono::milliseconds(100);
constexpr auto kMaxAcceptBackoff = std::chrono::seconds(1);

bool out_of_resources(const boost::system::error_code& ec) {
  if (&ec.category() != &boost::system::system_category()) return false;
  int e = ec.value();
  return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

}  // namespace

asio::awaitable<void> Server::accept_loop() {
  asio::steady_timer pause(io_);
  Clock::duration backoff = kMinAcceptBackoff;
  while (acceptor_.is_open()) {
    bool back_off = false;
    try {
      boost::system::error_code ec;
      auto socket =
          std::make_shared<tcp::socket>(co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec)));
      if (ec) {
        if (ec == asio::error::operation_aborted) co_return;
        back_off = out_of_resources(ec);
        if (accept_warnings_.allow(Clock::now())) {
          spdlog::warn("accept failed: {} ({} connections open, {} more failures not logged){}", ec.message(),
                       sockets_.size(), accept_warnings_.take_suppressed(),
                       back_off ? fmt::format("; retrying in {} ms",
                                              std::chrono::duration_cast<std::chrono::milliseconds>(backoff).count())
                                : "");
        }
      } else if (sockets_.size() >= config_.max_connections) {
        backoff = kMinAcceptBackoff;
        if (connection_cap_warnings_.allow(Clock::now())) {
          auto remote = socket->remote_endpoint(ec);
          spdlog::warn("closing new connection from {}: --max-connections {} reached ({} more not logged)",
                       ec ? "?" : remote.address().to_string(), config_.max_connections,
                       connection_cap_warnings_.take_suppressed());
        }
        (void)socket->close(ec);
      } else {
        backoff = kMinAcceptBackoff;
        (void)socket->set_option(tcp::no_delay(true), ec);
        sockets_.insert(socket);
        asio::co_spawn(io_, session(socket), log_escaped("connection"));
      }
    } catch (const std::exception& e) {
      spdlog::error("accept loop: {}", e.what());
      back_off = true;
    }
    if (back_off) {
      boost::system::error_code ec;
      pause.expires_after(backoff);
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      backoff = std::min<Clock::duration>(backoff * 2, kMaxAcceptBackoff);
    }
  }
}

/// Per-connection pipeline state shared by the reader, the writer and the watchdog.
struct Pipeline {
  explicit Pipeline(const asio::any_io_executor& ex) : watchdog_timer(ex) {}
  std::deque<std::shared_ptr<Pending<Result<Reply>>>> slots;  // in request order
  std::shared_ptr<Pending<bool>> writer_wakeup;
  std::shared_ptr<Pending<bool>> reader_wakeup;
  bool reader_done = false;
  bool writing = false;  // a reply is being sent
  // What the watchdog goes by. Idle time counts from the last byte received
  // or reply sent, and only while nothing is in flight.
  Clock::time_point last_activity = Clock::now();
  // Set from the first byte of a frame until it is read whole.
  std::optional<Clock::time_point> frame_deadline;
  // The reader waits on the broker (a free slot, budget bytes), not on the
  // client: neither timeout runs, and the frame deadline moves by the wait.
  bool paused = false;
  asio::steady_timer watchdog_timer;
};

namespace {

/// While alive, the reader is waiting on the broker, not on its client.
class PausedReader {
 public:
  explicit PausedReader(Pipeline& pipe) : pipe_(pipe), since_(Clock::now()) { pipe_.paused = true; }
  ~PausedReader() {
    pipe_.paused = false;
    if (pipe_.frame_deadline) *pipe_.frame_deadline += Clock::now() - since_;
  }
  PausedReader(const PausedReader&) = delete;
  PausedReader& operator=(const PausedReader&) = delete;

 private:
  Pipeline& pipe_;
  Clock::time_point since_;
};

// Up to this many requests of one connection are processed concurrently
// (librdkafka keeps at most 5 produce requests in flight); replies still
// leave in request order.
constexpr size_t kMaxInFlight = 16;
constexpr size_t kReadChunk = 1u << 20;

}  // namespace

asio::awaitable<void> Server::session(std::shared_ptr<tcp::socket> socket) {
  boost::system::error_code ec;
  auto remote = socket->remote_endpoint(ec);
  std::string peer = ec ? "?" : remote.address().to_string();
  auto pipe = std::make_shared<Pipeline>(io_.get_executor());
  asio::co_spawn(io_, writer(socket, pipe, peer), log_escaped("writer"));
  asio::co_spawn(io_, watchdog(socket, pipe, peer), log_escaped("connection watchdog"));
  try {
    co_await read_requests(socket, pipe, peer);
  } catch (const std::exception& e) {
    spdlog::error("{}: closing connection: reader failed: {}", peer, e.what());
  }
  pipe->reader_done = true;
  if (pipe->writer_wakeup) pipe->writer_wakeup->wake();
  pipe->watchdog_timer.cancel();
  (void)socket->close(ec);
}

Clock::time_point Server::deadline(const Pipeline& pipe) const {
  if (pipe.paused) return Clock::time_point::max();
  if (pipe.frame_deadline) return *pipe.frame_deadline;
  // A request in flight (a parked Fetch, say) is not idleness on the wire.
  if (!pipe.slots.empty() || pipe.writing) return Clock::time_point::max();
  return pipe.last_activity + config_.connections_max_idle;
}

asio::awaitable<void> Server::watchdog(std::shared_ptr<tcp::socket> socket, std::shared_ptr<Pipeline> pipe,
                                       std::string peer) {
  // No deadline can come sooner than this after now, so waking this often
  // (or at the current deadline, if sooner) needs no signal from the reader
  // or writer when theirs move.
  const Clock::duration step = std::min<Clock::duration>(config_.connections_max_idle, config_.request_read_timeout);
  boost::system::error_code ec;
  while (!pipe->reader_done) {
    const auto now = Clock::now();
    const auto due = deadline(*pipe);
    if (now >= due) {
      if (pipe->frame_deadline) {
        ++stats_.closed_read_timeout;
        if (read_timeout_warnings_.allow(now)) {
          spdlog::warn(
              "{}: closing connection: a request did not arrive whole within {} ms "
              "(--request-read-timeout-ms; {} more not logged)",
              peer, config_.request_read_timeout.count(), read_timeout_warnings_.take_suppressed());
        }
      } else {
        ++stats_.closed_idle;
        spdlog::debug("{}: closing connection: idle for {} ms (--connections-max-idle-ms)", peer,
                      config_.connections_max_idle.count());
      }
      // The reader's pending read fails, so it releases its budget bytes and
      // ends the session.
      (void)socket->close(ec);
      co_return;
    }
    pipe->watchdog_timer.expires_at(due - now < step ? due : now + step);
    co_await pipe->watchdog_timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<void> Server::read_requests(std::shared_ptr<tcp::socket> socket, std::shared_ptr<Pipeline> pipe,
                                            std::string peer) {
  boost::system::error_code ec;
  const size_t max_frame = config_.max_frame_bytes;
  for (;;) {
    // The read timeout runs from the first byte of a frame. (available()
    // saves a trip through the reactor when the next frame is already here.)
    if (socket->available(ec) == 0 || ec) {
      co_await socket->async_wait(tcp::socket::wait_read, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    pipe->last_activity = Clock::now();
    pipe->frame_deadline = pipe->last_activity + config_.request_read_timeout;
    uint8_t size_buf[4];
    co_await asio::async_read(*socket, asio::buffer(size_buf), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    int32_t size = load_be32(size_buf);
    // The smallest valid request is a v1 header with a null client id: 10 bytes.
    if (size < 10 || static_cast<size_t>(size) > max_frame) {
      spdlog::warn("{}: closing connection: frame size {} outside [10, {}]", peer, size, max_frame);
      break;
    }
    // Before taking any of the shared budget: a client that does not read
    // its replies must not hold bytes of it while it waits for a slot.
    while (pipe->slots.size() >= kMaxInFlight) {
      PausedReader paused(*pipe);
      pipe->reader_wakeup = std::make_shared<Pending<bool>>(io_.get_executor());
      co_await pipe->reader_wakeup->wait_until(Clock::time_point::max());
    }
    // Grow the buffer as bytes arrive rather than trusting the announced
    // size, so idle clients announcing huge frames cannot pin memory.
    // Backpressure: each chunk waits for room in the broker-wide budget; the
    // handler gives the frame's bytes back when it is done.
    const auto frame_bytes = static_cast<size_t>(size);
    const ByteBudget::Frame ticket = inflight_.new_frame();
    Bytes frame;
    size_t got = 0;
    while (got < frame_bytes) {
      size_t chunk = std::min<size_t>(frame_bytes - got, kReadChunk);
      {
        PausedReader paused(*pipe);
        co_await inflight_.acquire(ticket, chunk);
      }
      frame.resize(got + chunk);
      co_await asio::async_read(*socket, asio::buffer(frame.data() + got, chunk),
                                asio::redirect_error(asio::use_awaitable, ec));
      got += chunk;
      if (ec) break;
    }
    inflight_.end_frame(ticket);
    if (ec) {
      inflight_.release(got);
      break;
    }
    pipe->frame_deadline.reset();
    pipe->last_activity = Clock::now();
    auto slot = std::make_shared<Pending<Result<Reply>>>(io_.get_executor());
    pipe->slots.push_back(slot);
    if (pipe->writer_wakeup) pipe->writer_wakeup->wake();
    // Handlers start in request order (posts run FIFO on the one thread), so
    // appends happen in order; a handler that parks (long-poll fetch, group
    // join, fsync) does not hold up the requests behind it.
    // A handler that throws fails its request: the writer logs that and
    // closes this connection only, after the replies before it.
    asio::co_spawn(
        io_,
        [this, slot, frame = std::move(frame), frame_bytes, peer]() mutable -> asio::awaitable<void> {
          Result<Reply> reply = fail(ErrorCode::kUnknownServerError, "request handler failed");
          try {
            reply = co_await handler_.handle(std::move(frame), peer);
          } catch (const std::exception& e) {
            reply = fail(ErrorCode::kUnknownServerError, fmt::format("request handler threw: {}", e.what()));
          } catch (...) {
            reply = fail(ErrorCode::kUnknownServerError, "request handler threw a non-exception");
          }
          inflight_.release(frame_bytes);
          slot->complete(std::move(reply));
        },
        log_escaped("request handler"));
  }
}

asio::awaitable<void> Server::writer(std::shared_ptr<tcp::socket> socket, std::shared_ptr<Pipeline> pipe,
                                     std::string peer) {
  boost::system::error_code ec;
  try {
    co_await write_replies(socket, pipe, peer);
  } catch (const std::exception& e) {
    spdlog::error("{}: closing connection: writer failed: {}", peer, e.what());
  }
  (void)socket->close(ec);
  sockets_.erase(socket);
}

asio::awaitable<void> Server::write_replies(std::shared_ptr<tcp::socket> socket, std::shared_ptr<Pipeline> pipe,
                                            const std::string& peer) {
  boost::system::error_code ec;
  for (;;) {
    if (pipe->slots.empty()) {
      if (pipe->reader_done) break;
      pipe->writer_wakeup = std::make_shared<Pending<bool>>(io_.get_executor());
      co_await pipe->writer_wakeup->wait_until(Clock::time_point::max());
      continue;
    }
    auto slot = pipe->slots.front();
    auto& done = slot->result;
    if (!done) co_await slot->wait_until(Clock::time_point::max());
    pipe->slots.pop_front();
    if (pipe->reader_wakeup) pipe->reader_wakeup->wake();
    if (!done) {
      spdlog::error("{}: closing connection: a reply slot woke without its reply", peer);
      break;
    }
    Result<Reply>& reply = *done;
    if (!reply) {
      spdlog::warn("{}: closing connection: {}", peer, reply.error().message);
      break;
    }
    if (!reply->buffers.empty()) {
      std::vector<asio::const_buffer> bufs;
      bufs.reserve(reply->buffers.size());
      for (const auto& b : reply->buffers) bufs.emplace_back(asio::buffer(b));
      pipe->writing = true;
      co_await asio::async_write(*socket, bufs, asio::redirect_error(asio::use_awaitable, ec));
      pipe->writing = false;
      if (ec) break;
    }
    pipe->last_activity = Clock::now();
  }
}

}  // namespace starling::broker
