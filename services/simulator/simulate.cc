#include "services/simulator/simulate.h"

#include <fmt/format.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cmath>
#include <memory>
#include <utility>  // before asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include "services/common/ids.h"
#include "services/common/text.h"
#include "services/common/time.h"

namespace starling::simulator {

using nlohmann::json;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// A JSON string literal of `s` (which may hold any bytes of a user's prefix).
void append_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<unsigned>(c));
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

}  // namespace

json Reading::to_json() const {
  json r = {{"event_id", event_id},
            {"device_id", device_id},
            {"ride_id", ride_id},
            {"event_time", rfc3339_trimmed(event_time_ms)},
            {"lat", lat},
            {"lon", lon},
            {"speed_kmh", speed_kmh},
            {"temperature_c", temperature_c},
            {"odometer_km", odometer_km},
            {"status", riding ? "RIDING" : "PARKED"}};
  if (battery_pct) r["battery_pct"] = *battery_pct;
  return r;
}

void Reading::append_json(std::string& out) const {
  auto it = std::back_inserter(out);
  out += "{\"event_id\":";
  append_string(out, event_id);
  out += ",\"device_id\":";
  append_string(out, device_id);
  out += ",\"ride_id\":";
  append_string(out, ride_id);
  fmt::format_to(it, ",\"event_time\":\"{}\",\"lat\":{},\"lon\":{},\"speed_kmh\":{}", rfc3339_trimmed(event_time_ms),
                 lat, lon, speed_kmh);
  if (battery_pct) fmt::format_to(it, ",\"battery_pct\":{}", *battery_pct);
  fmt::format_to(it, ",\"temperature_c\":{},\"odometer_km\":{},\"status\":\"{}\"}}", temperature_c, odometer_km,
                 riding ? "RIDING" : "PARKED");
}

EventStream::EventStream(const SimOptions& o)
    : o_(o), rng_(o.seed), total_(static_cast<uint64_t>(std::max(0, o.events))) {
  for (int b = 0; b < std::max(1, o.bikes); ++b) {
    // Around Lisbon, where EcoWheels rents its bikes.
    const double lat = 38.70 + u_(rng_) * 0.1;
    const double lon = -9.20 + u_(rng_) * 0.1;
    const double battery = 60 + u_(rng_) * 40;
    const double odometer = 1000 * u_(rng_);
    const double temperature = 12 + u_(rng_) * 10;
    bikes_.push_back({fmt::format("bike-{:04d}", b), lat, lon, battery, odometer, temperature});
  }
  // A resend repeats one of the last batch + 99 readings: keep those only.
  if (o.tricky > 0) recent_cap_ = static_cast<std::size_t>(std::max(1, o.batch)) + 100;
  start_ms_ = now_ms() - static_cast<int64_t>(total_) * o.event_spacing_ms;
}

bool EventStream::next(Reading& e) {
  if (produced_ >= total_) return false;
  const auto i = static_cast<int64_t>(produced_);
  auto& bike = bikes_[produced_ % bikes_.size()];
  if (u_(rng_) < 0.02) ++bike.ride;
  const double speed = std::max(0.0, 18 + 8 * std::sin(static_cast<double>(i) * 0.1) + 4 * (u_(rng_) - 0.5));
  bike.lat += (u_(rng_) - 0.5) * 1e-3;
  bike.lon += (u_(rng_) - 0.5) * 1e-3;
  bike.battery = std::max(1.0, bike.battery - 0.05);
  bike.odometer += speed / 3600.0;
  const int64_t at = start_ms_ + i * o_.event_spacing_ms;
  e.event_id = fmt::format("{}{}-{:08d}", o_.id_prefix, bike.id, i);
  e.fault.clear();
  e.device_id = bike.id;
  e.ride_id = fmt::format("{}-r{}", bike.id, bike.ride);
  e.event_time_ms = at;
  e.lat = bike.lat;
  e.lon = bike.lon;
  e.speed_kmh = speed;
  e.battery_pct = bike.battery;
  e.temperature_c = bike.temperature;
  e.odometer_km = bike.odometer;
  e.riding = speed > 1;
  if (u_(rng_) < o_.fault_rate) {
    // The faults a real fleet shows: a glitching speed sensor, a battery
    // gauge out of range or silent, and a GPS fix off the planet.
    switch (static_cast<int>(u_(rng_) * 4)) {
      case 0:
        e.fault = "range:speed_kmh";
        e.speed_kmh = 180 + u_(rng_) * 100;
        break;
      case 1:
        e.fault = "range:battery_pct";
        e.battery_pct = 140.0;
        break;
      case 2:
        e.fault = "required:battery_pct";
        e.battery_pct.reset();
        break;
      default:
        e.fault = "range:lat";
        e.lat = 123.4;
        break;
    }
  }
  if (o_.tricky > 0 && u_(rng_) < o_.tricky) {
    switch (static_cast<int>(u_(rng_) * 4)) {
      case 0:
        e.ride_id = fmt::format("räd-\U0001F6B2-{}-ü", bike.ride);
        break;
      case 1:
        e.event_time_ms = at - int64_t{3} * 3'600'000;
        break;
      case 2:
        e.event_time_ms = at - 30'000;
        break;
      default: {
        // A resend from at least one request back: the same event again.
        const auto back = static_cast<std::size_t>(std::max(1, o_.batch)) + static_cast<std::size_t>(u_(rng_) * 100);
        if (recent_.size() >= back && !recent_[recent_.size() - back].fault.starts_with("dedupe")) {
          e = recent_[recent_.size() - back];
          e.fault = "dedupe:event_id";
        }
        break;
      }
    }
  }
  if (recent_cap_ > 0) {
    if (recent_.size() == recent_cap_) recent_.pop_front();
    recent_.push_back(e);
  }
  ++produced_;
  return true;
}

std::vector<SimEvent> generate_events(const SimOptions& o) {
  EventStream stream(o);
  std::vector<SimEvent> out;
  out.reserve(stream.total());
  Reading r;
  while (stream.next(r)) out.push_back({r.event_id, r.fault, r.to_json()});
  return out;
}

std::chrono::nanoseconds request_due(uint64_t k, int batch, double rate) {
  if (rate <= 0) return std::chrono::nanoseconds(0);
  const double seconds = static_cast<double>(k) * static_cast<double>(std::max(1, batch)) / rate;
  return std::chrono::nanoseconds(static_cast<int64_t>(std::llround(seconds * 1e9)));
}

namespace {

// One request of the schedule, serialized once and re-sent as is on a retry.
struct Request {
  uint64_t k = 0;
  Clock::time_point due;
  std::string wire;  // request line, headers and body
  uint64_t events = 0;
  uint64_t faulty = 0;
  int attempt = 0;
  std::vector<std::string> valid_ids;  // keep_ids only
  std::vector<std::string> faulty_ids;
};

class Engine;

// Where a connection posts: one ingest instance.
struct Target {
  std::string host;  // host:port, the Host header
  std::string path;  // <base path>/v1/pipelines/<p>/events
  std::string describe;
  tcp::resolver::results_type endpoints;
};

// One keep-alive connection: sends the requests the engine hands it, one at
// a time, reconnecting after a broken one. Everything runs on the io thread.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::io_context& ioc, Engine& engine, const Target& target)
      : stream_(ioc), backoff_(ioc), engine_(engine), target_(target) {}
  const Target& target() const { return target_; }
  void send(Request req);
  void close() {
    beast::error_code ec;
    (void)stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
    connected_ = false;
    buffer_.clear();  // bytes of the old connection's stream
  }

 private:
  void attempt();
  void write();
  void answered(beast::error_code ec);
  void broken(const std::string& why);
  void retry(const std::string& why);

  beast::tcp_stream stream_;
  asio::steady_timer backoff_;
  Engine& engine_;
  const Target& target_;
  bool connected_ = false;
  beast::flat_buffer buffer_;
  std::optional<http::response_parser<http::string_body>> parser_;
  Request req_;
};

class Engine {
 public:
  Engine(const SimOptions& o, const std::function<void(uint64_t, uint64_t)>& progress)
      : o_(o), progress_(progress), stream_(o), tick_(ioc_) {}

  Result<SimResult> run() {
    if (o_.batch < 1) return fail(Errc::kInvalidArgument, "--batch: expected at least 1");
    if (o_.connections < 1) return fail(Errc::kInvalidArgument, "--connections: expected at least 1");
    // One ingest or several (instances of one stage): connection i posts to
    // the i-th address, round robin, and keeps it across retries.
    for (const auto& url : split_commas(o_.url)) {
      auto target = resolve(url);
      if (!target) return std::unexpected(target.error());
      targets_.push_back(std::move(*target));
    }
    if (targets_.empty()) return fail(Errc::kInvalidArgument, "--url: expected an http:// address");
    if (static_cast<std::size_t>(o_.connections) < targets_.size()) {
      return fail(Errc::kInvalidArgument, fmt::format("--connections {}: expected at least one per --url ({} given)",
                                                      o_.connections, targets_.size()));
    }
    // One Idempotency-Key per request, kept across its retries: a retry after
    // a 503 (some events may be in Kafka already) re-sends the same saga.
    run_id_ = random_id().substr(0, 12);
    res_.requests = (stream_.total() + static_cast<uint64_t>(o_.batch) - 1) / static_cast<uint64_t>(o_.batch);
    for (int c = 0; c < o_.connections; ++c) {
      conns_.push_back(std::make_shared<Connection>(ioc_, *this, targets_[c % targets_.size()]));
      idle_.push_back(conns_.back().get());
    }
    t0_ = Clock::now();
    pump();
    ioc_.run();
    for (auto& c : conns_) c->close();
    if (error_) return std::unexpected(*error_);
    return std::move(res_);
  }

  int timeout_ms() const { return o_.timeout_ms; }
  int max_retries() const { return o_.max_retries; }

  void count_retry() { ++res_.retries; }

  void failed(Error e) {
    if (!error_) error_ = std::move(e);
    ioc_.stop();
  }

  // A request answered 202 with `body`; its connection is free again.
  void accepted(Connection* c, Request& req, const std::string& body) {
    const auto now = Clock::now();
    try {
      const auto receipt = json::parse(body);
      if (!receipt.at("refused").empty()) {
        return failed(
            Error{Errc::kInvalidArgument, fmt::format("ingest refused records of a simulated batch: {}", body)});
      }
      res_.accepted += receipt.at("accepted").get<uint64_t>();
      if (o_.keep_ids) res_.saga_ids.push_back(receipt.at("saga_id").get<std::string>());
    } catch (const json::exception& e) {
      return failed(Error{Errc::kInternal, fmt::format("{}: a 202 that is not a receipt ({}): {}", c->target().describe,
                                                       e.what(), body)});
    }
    res_.latency.record(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::max(now - req.due, Clock::duration{0})).count()));
    ++res_.sagas;
    res_.sent += req.events;
    res_.faulty += req.faulty;
    res_.valid += req.events - req.faulty;
    if (o_.keep_ids) {
      res_.valid_ids.insert(res_.valid_ids.end(), std::make_move_iterator(req.valid_ids.begin()),
                            std::make_move_iterator(req.valid_ids.end()));
      res_.faulty_ids.insert(res_.faulty_ids.end(), std::make_move_iterator(req.faulty_ids.begin()),
                             std::make_move_iterator(req.faulty_ids.end()));
    }
    res_.seconds = std::chrono::duration<double>(now - t0_).count();
    if (progress_) progress_(res_.sent, stream_.total() - res_.unsent);
    idle_.push_back(c);
    pump();
  }

 private:
  // Starts every request that is due while a connection is free, then waits
  // for the next due time (or for a connection to come back).
  void pump() {
    while (!idle_.empty() && next_ < res_.requests) {
      const auto now = Clock::now();
      if (o_.give_up_after_s > 0 && now - t0_ > std::chrono::duration<double>(o_.give_up_after_s)) {
        res_.unsent = stream_.total() - std::min(stream_.total(), next_ * static_cast<uint64_t>(o_.batch));
        next_ = res_.requests;
        break;
      }
      const auto due = t0_ + std::chrono::duration_cast<Clock::duration>(request_due(next_, o_.batch, o_.rate));
      if (due > now) {
        tick_.expires_at(due);
        tick_.async_wait([this](beast::error_code ec) {
          if (!ec) pump();
        });
        return;
      }
      if (o_.rate > 0 && now - due > std::chrono::milliseconds(1)) ++res_.late_starts;
      Connection* c = idle_.front();
      idle_.pop_front();
      c->send(build(c->target(), next_, o_.rate > 0 ? due : now));
      ++next_;
    }
  }

  Result<Target> resolve(const std::string& url) {
    if (!url.starts_with("http://")) {
      return fail(Errc::kInvalidArgument,
                  fmt::format("--url '{}': the simulator posts over http:// only (several: comma-separated)", url));
    }
    const auto rest = url.substr(7);
    const auto hostport = rest.substr(0, rest.find('/'));
    const auto colon = hostport.rfind(':');
    Target t;
    t.host = hostport;
    t.path = fmt::format("{}/v1/pipelines/{}/events", rest.substr(hostport.size()), o_.pipeline);
    t.describe = "POST " + url + t.path;
    try {
      tcp::resolver resolver(ioc_);
      t.endpoints = resolver.resolve(hostport.substr(0, colon),
                                     colon == std::string::npos ? std::string("80") : hostport.substr(colon + 1));
    } catch (const beast::system_error& e) {
      return fail(Errc::kUnavailable, fmt::format("{}: {}", url, e.code().message()));
    }
    return t;
  }

  Request build(const Target& to, uint64_t k, Clock::time_point due) {
    Request req;
    req.k = k;
    req.due = due;
    body_.clear();
    body_ += '[';
    Reading r;
    for (int n = 0; n < o_.batch && stream_.next(r); ++n) {
      if (n > 0) body_ += ',';
      r.append_json(body_);
      ++req.events;
      if (!r.fault.empty()) ++req.faulty;
      if (o_.keep_ids) (r.fault.empty() ? req.valid_ids : req.faulty_ids).push_back(r.event_id);
    }
    body_ += ']';
    req.wire = fmt::format(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nIdempotency-Key: sim-{}-{}\r\n"
        "Content-Length: {}\r\n\r\n",
        to.path, to.host, run_id_, k * static_cast<uint64_t>(o_.batch), body_.size());
    req.wire += body_;
    return req;
  }

  SimOptions o_;
  std::function<void(uint64_t, uint64_t)> progress_;
  EventStream stream_;
  asio::io_context ioc_;
  asio::steady_timer tick_;
  std::vector<Target> targets_;  // never resized after run() starts: connections point into it
  std::string run_id_;
  std::string body_;
  std::vector<std::shared_ptr<Connection>> conns_;
  std::deque<Connection*> idle_;  // first in, first out: every connection takes its turn
  uint64_t next_ = 0;             // the next request of the schedule to start
  Clock::time_point t0_;
  SimResult res_;
  std::optional<Error> error_;
};

void Connection::send(Request req) {
  req_ = std::move(req);
  attempt();
}

void Connection::attempt() {
  if (connected_) return write();
  stream_.expires_after(std::chrono::milliseconds(engine_.timeout_ms()));
  stream_.async_connect(target_.endpoints, [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
    if (ec) return self->broken("connect: " + ec.message());
    self->connected_ = true;
    self->stream_.socket().set_option(tcp::no_delay(true));
    self->write();
  });
}

void Connection::write() {
  stream_.expires_after(std::chrono::milliseconds(engine_.timeout_ms()));
  asio::async_write(stream_, asio::buffer(req_.wire), [self = shared_from_this()](beast::error_code ec, std::size_t) {
    if (ec) return self->broken("write: " + ec.message());
    self->parser_.emplace();
    self->parser_->body_limit(1 << 20);
    http::async_read(self->stream_, self->buffer_, *self->parser_,
                     [self](beast::error_code ec, std::size_t) { self->answered(ec); });
  });
}

void Connection::answered(beast::error_code ec) {
  if (ec || !parser_) return broken("read: " + ec.message());
  auto& res = parser_->get();
  const auto status = static_cast<int>(res.result_int());
  if (!res.keep_alive()) close();
  if (status == 202) return engine_.accepted(this, req_, res.body());
  if (status == 503 || status == 429 || status == 409) return retry(fmt::format("{} {}", status, res.body()));
  engine_.failed(Error{Errc::kUnavailable, fmt::format("{}: {} {}", target_.describe, status, res.body())});
}

void Connection::broken(const std::string& why) {
  close();
  retry("broken connection (" + why + ")");
}

void Connection::retry(const std::string& why) {
  if (req_.attempt >= engine_.max_retries()) {
    return engine_.failed(Error{Errc::kUnavailable,
                                fmt::format("{}: {} (gave up after {} retries)", target_.describe, why, req_.attempt)});
  }
  ++req_.attempt;
  engine_.count_retry();
  backoff_.expires_after(std::chrono::milliseconds(100 * req_.attempt));
  backoff_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (!ec) self->attempt();
  });
}

}  // namespace

Result<SimResult> simulate(const SimOptions& o, const std::function<void(uint64_t, uint64_t)>& progress) {
  Engine engine(o, progress);
  return engine.run();
}

}  // namespace starling::simulator
