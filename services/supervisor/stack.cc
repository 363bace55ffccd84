#include "services/supervisor/stack.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/kafka_properties.h"
#include "services/common/text.h"

namespace starling::supervisor {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

Result<std::map<std::string, int>> parse_instances(const std::string& spec) {
  std::map<std::string, int> out;
  for (const auto& entry : split_commas(spec)) {
    const auto eq = entry.find('=');
    const auto stage = entry.substr(0, eq);
    if (std::find(kScalableStages.begin(), kScalableStages.end(), stage) == kScalableStages.end()) {
      return fail(Errc::kInvalidArgument, fmt::format("--instances: '{}': expected a stage of {}, then =N",
                                                      excerpt(entry), fmt::join(kScalableStages, ", ")));
    }
    int n = 0;
    const auto digits = eq == std::string::npos ? std::string() : entry.substr(eq + 1);
    const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size() || n < 1 || n > kMaxInstances) {
      return fail(Errc::kInvalidArgument, fmt::format("--instances: '{}': expected {}=N with N from 1 to {}",
                                                      excerpt(entry), stage, kMaxInstances));
    }
    if (!out.emplace(stage, n).second) {
      return fail(Errc::kInvalidArgument, fmt::format("--instances: {} is given twice", stage));
    }
  }
  return out;
}

std::string instance_name(const std::string& base, int i) { return i == 1 ? base : fmt::format("{}.{}", base, i); }

Stack::Stack(StackOptions options) : opts_(std::move(options)) {
  for (const auto& f : opts_.pipeline_files) pipelines_.push_back(load_pipeline(f));
}

Stack::~Stack() { stop(); }

std::string Stack::url(const std::string& process) const {
  auto it = ports_.find(process);
  return fmt::format("http://127.0.0.1:{}", it == ports_.end() ? 0 : it->second);
}
std::string Stack::ingest_url() const { return url("ingest"); }
std::string Stack::saga_url() const { return url("saga"); }
int Stack::instances(const std::string& stage) const {
  auto it = opts_.instances.find(stage);
  return it == opts_.instances.end() ? 1 : it->second;
}
std::vector<std::string> Stack::urls(const std::string& stage) const {
  std::vector<std::string> out;
  for (int i = 1; i <= instances(stage); ++i) out.push_back(url(instance_name(stage, i)));
  return out;
}
std::vector<std::string> Stack::ingest_urls() const { return urls("ingest"); }
std::vector<std::string> Stack::saga_urls() const { return urls("saga"); }
std::string Stack::db_path(const std::string& pipeline) const {
  return (fs::path(opts_.data_dir) / ("load." + pipeline) / (pipeline + ".db")).string();
}
std::string Stack::log_path(const std::string& process) const {
  return (fs::path(opts_.data_dir) / "logs" / (process + ".log")).string();
}

Status Stack::spawn(Child& c) {
  auto proc = ChildProcess::spawn(c.argv, log_path(c.name), {}, c.env);
  if (!proc) return std::unexpected(proc.error());
  c.proc = std::move(*proc);
  spdlog::info("started {} (pid {})", c.name, c.proc.pid());
  return {};
}

Status Stack::add(const std::string& name, std::vector<std::string> argv,
                  std::vector<std::pair<std::string, std::string>> env) {
  // The stack reaches its services over plain HTTP on loopback: a
  // STARLING_TLS_* exported in the user's shell (meant for a service run on
  // its own) must not turn ingest and saga to HTTPS under it. Blank is unset
  // for the services' flags.
  for (const char* var : {"STARLING_TLS_CERT", "STARLING_TLS_KEY", "STARLING_TLS_CLIENT_CA"}) {
    if (std::none_of(env.begin(), env.end(), [&](const auto& kv) { return kv.first == var; }))
      env.emplace_back(var, "");
  }
  Child c;
  c.name = name;
  c.argv = std::move(argv);
  c.env = std::move(env);
  if (auto st = spawn(c); !st) return st;
  std::lock_guard lock(mu_);
  order_.push_back(name);
  children_.emplace(name, std::move(c));
  return {};
}

Status Stack::start() {
  fs::create_directories(fs::path(opts_.data_dir) / "logs");
  const auto bin = [&](const std::string& exe) { return (fs::path(opts_.bin_dir) / exe).string(); };
  auto port_file = [&](const std::string& name) {
    const auto p = (fs::path(opts_.data_dir) / (name + ".port")).string();
    fs::remove(p);
    return p;
  };

  if (opts_.kafka.empty()) {
    const auto pf = port_file("broker");
    // Every group of the stack has one member (one process per service and
    // pipeline), so Kafka's initial rebalance delay would only hold each
    // stage for 3 s at start and after every restart (README of the broker).
    const auto mpf = port_file("broker.metrics");
    if (auto st = add("broker", {bin("starling-broker"), "--listen", "127.0.0.1:0", "--data-dir",
                                 (fs::path(opts_.data_dir) / "broker").string(), "--port-file", pf, "--metrics-listen",
                                 "127.0.0.1:0", "--metrics-port-file", mpf, "--group-initial-rebalance-delay-ms", "0",
                                 "--log-level", opts_.log_level});
        !st) {
      return st;
    }
    auto addr = wait_for_file(pf, 30s);
    auto metrics_addr = addr ? wait_for_file(mpf, 30s) : addr;
    if (!addr || !metrics_addr) {
      return fail(Errc::kUnavailable, "starling-broker did not start: " + (addr ? metrics_addr : addr).error().message +
                                          "; see " + log_path("broker"));
    }
    bootstrap_ = *addr;
    broker_metrics_ = *metrics_addr;
    // Restarting the broker must keep its addresses, or clients and
    // Prometheus lose it.
    std::lock_guard lock(mu_);
    auto& argv = children_.at("broker").argv;
    argv[2] = bootstrap_;
    argv[8] = broker_metrics_;
  } else {
    bootstrap_ = opts_.kafka;
  }
  spdlog::info("kafka at {}", bootstrap_);

  std::vector<kafka::TopicSpec> topics = {{kSagaTopic, 3}, {kOutcomeTopic, 1}};
  for (const auto& p : pipelines_) {
    for (const auto& t : {p.raw_topic(), p.clean_topic(), p.rejected_topic(), p.dlq_topic(), p.raw_replay_topic(),
                          p.clean_replay_topic()}) {
      topics.push_back({t, p.partitions});
    }
  }
  auto props = user_kafka_properties(opts_.kafka_properties_file, opts_.kafka_properties);
  if (!props) return std::unexpected(props.error());
  if (auto st = kafka::create_topics({bootstrap_, "starling-up", props->values, props->origins}, topics); !st) {
    return fail(st.error().code, "creating topics: " + st.error().message);
  }

  if (opts_.mqtt == kLocalMqtt) {
    if (auto st = start_mosquitto(); !st) return st;
  } else {
    mqtt_ = opts_.mqtt;
  }

  // Every service serves HTTP (probes and /metrics; ingest's front door and
  // the saga API) on a port it picks and writes to <name>.port.
  const auto cat = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  auto service = [&](const std::string& name, const std::string& exe, const std::vector<std::string>& pipeline_files,
                     uint16_t port, const std::vector<std::string>& extra) {
    std::vector<std::string> files;
    files.reserve(pipeline_files.size());
    for (const auto& f : pipeline_files) files.push_back(fs::absolute(f).string());
    struct Setting {
      const char* flag;
      const char* env;
      std::string value;
    };
    const std::vector<Setting> settings = {
        {"--kafka", "STARLING_KAFKA_BOOTSTRAP", bootstrap_},
        {"--listen", "STARLING_LISTEN", fmt::format("127.0.0.1:{}", port)},
        {"--port-file", "STARLING_PORT_FILE", port_file(name)},
        {"--data-dir", "STARLING_DATA_DIR", (fs::path(opts_.data_dir) / name).string()},
        {"--log-level", "STARLING_LOG_LEVEL", opts_.log_level},
        {"--instance", "STARLING_INSTANCE", name},
    };
    if (opts_.config_by_env) {
      std::vector<std::pair<std::string, std::string>> env = {
          {"STARLING_PIPELINE", fmt::format("{}", fmt::join(files, ","))}};
      for (const auto& s : settings) env.emplace_back(s.env, s.value);
      if (!opts_.kafka_properties_file.empty()) {
        env.emplace_back("STARLING_KAFKA_PROPERTIES_FILE", fs::absolute(opts_.kafka_properties_file).string());
      }
      for (const auto& p : opts_.kafka_properties) {  // k=v as STARLING_KAFKA_K
        const auto eq = p.find('=');
        env.emplace_back(kafka_property_env_name(p.substr(0, eq)), eq == std::string::npos ? "" : p.substr(eq + 1));
      }
      return add(name, cat({bin(exe)}, extra), std::move(env));
    }
    std::vector<std::string> argv = {bin(exe)};
    for (const auto& f : files) argv.insert(argv.end(), {"--pipeline", f});
    for (const auto& s : settings) argv.insert(argv.end(), {s.flag, s.value});
    if (!opts_.kafka_properties_file.empty()) {
      argv.insert(argv.end(), {"--kafka-properties-file", fs::absolute(opts_.kafka_properties_file).string()});
    }
    for (const auto& p : opts_.kafka_properties) argv.insert(argv.end(), {"--kafka-property", p});
    return add(name, cat(argv, extra));
  };
  // A stage's instances: the first on the port asked for (if any), the
  // others on ports they pick; `per_instance` adds flags of instance i.
  auto stage = [&](const std::string& kind, const std::string& base, const std::string& exe,
                   const std::vector<std::string>& pipeline_files, uint16_t port, const std::vector<std::string>& extra,
                   const std::function<std::vector<std::string>(int)>& per_instance = {}) -> Status {
    for (int i = 1; i <= instances(kind); ++i) {
      auto args = extra;
      if (per_instance) {
        const auto more = per_instance(i);
        args.insert(args.end(), more.begin(), more.end());
      }
      if (auto st = service(instance_name(base, i), exe, pipeline_files, i == 1 ? port : 0, args); !st) return st;
    }
    return {};
  };
  // The console lists and controls the replays that `starling replay` runs
  // with this folder's default --state-dir.
  if (auto st = stage("saga", "saga", "starling-saga", opts_.pipeline_files, opts_.saga_port,
                      {"--replay-dir", (fs::path(opts_.data_dir) / "replays").string()});
      !st)
    return st;
  for (const auto& p : pipelines_) {
    if (auto st = stage("clean", "clean." + p.name, "starling-clean", {p.file}, 0, {}); !st) return st;
    // The loaders of a pipeline write one warehouse; with SQLite that is one
    // file, whose _starling_offsets the instance that gets a partition seeks to.
    auto load_args = opts_.load_args;
    if (instances("load") > 1) {
      fs::create_directories(fs::path(db_path(p.name)).parent_path());
      load_args.insert(load_args.end(), {"--db", db_path(p.name)});
    }
    if (auto st = stage("load", "load." + p.name, "starling-load", {p.file}, 0, load_args); !st) return st;
  }
  // Each instance its own MQTT session: one client id takes over the
  // other's session. Each session gets every message, and both ingest it as
  // the same saga (its id derives from the topic and payload), so the
  // second is redundant work, never a duplicate row.
  const auto mqtt_session = [this](int i) -> std::vector<std::string> {
    if (mqtt_.empty()) return {};
    return {"--mqtt", mqtt_, "--mqtt-client-id", i == 1 ? "starling-ingest" : fmt::format("starling-ingest-{}", i)};
  };
  if (auto st = stage("ingest", "ingest", "starling-ingest", opts_.pipeline_files, opts_.ingest_port, opts_.ingest_args,
                      mqtt_session);
      !st)
    return st;
  // One starling-extract polls every pipeline that declares a source.
  std::vector<std::string> sourced;
  for (const auto& p : pipelines_) {
    if (p.source) sourced.push_back(p.file);
  }
  if (!sourced.empty()) {
    if (auto st = service("extract", "starling-extract", sourced, 0, {}); !st) return st;
  }
  for (const auto& name : order_) {
    if (name == "broker" || name == "mosquitto") continue;  // no HTTP of ours
    auto got = wait_for_file((fs::path(opts_.data_dir) / (name + ".port")).string(), 30s);
    if (!got)
      return fail(Errc::kUnavailable,
                  fmt::format("{} did not start: {}; see {}", name, got.error().message, log_path(name)));
    const auto port = static_cast<uint16_t>(std::stoi(*got));
    ports_[name] = port;
    // A restarted service binds the same port, so clients keep working.
    const auto listen = fmt::format("127.0.0.1:{}", port);
    std::lock_guard lock(mu_);
    auto& c = children_.at(name);
    for (std::size_t i = 0; i + 1 < c.argv.size(); ++i) {
      if (c.argv[i] == "--listen") c.argv[i + 1] = listen;
    }
    for (auto& [var, value] : c.env) {
      if (var == "STARLING_LISTEN") value = listen;
    }
  }
  supervisor_ = std::thread([this] { supervise(); });
  return {};
}

Status Stack::start_mosquitto() {
  constexpr const char* kMosquitto = "/usr/sbin/mosquitto";
  if (!fs::exists(kMosquitto)) {
    return fail(
        Errc::kUnavailable,
        fmt::format("--mqtt: no {} to start (apt-get install mosquitto), or give the host:port of one", kMosquitto));
  }
  const auto dir = fs::path(opts_.data_dir) / "mosquitto";
  fs::create_directories(dir);
  const uint16_t port = free_loopback_port();
  if (port == 0) return fail(Errc::kUnavailable, "--mqtt: no free loopback port for mosquitto");
  const auto conf = (dir / "mosquitto.conf").string();
  {
    // compose/mosquitto.conf's guarantees: sessions persisted, and room for
    // what devices publish while ingest is down.
    std::ofstream out(conf);
    out << fmt::format("listener {} 127.0.0.1\n", port) << "allow_anonymous true\n"
        << "persistence true\npersistence_location " << dir.string() << "/\n"
        << "autosave_interval 1\nmax_queued_messages 1000000\nmax_inflight_messages 100\n"
        << "log_dest stdout\nlog_type error\nlog_type warning\nlog_type notice\n"
        // As root, mosquitto would switch to the `mosquitto` user, who cannot write our folder.
        << (::geteuid() == 0 ? "user root\n" : "");
    if (!out) return fail(Errc::kIo, "--mqtt: cannot write " + conf);
  }
  if (auto st = add("mosquitto", {kMosquitto, "-c", conf}); !st) return st;
  mqtt_ = fmt::format("127.0.0.1:{}", port);
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!loopback_accepts(port)) {
    if (!running("mosquitto") || std::chrono::steady_clock::now() > deadline) {
      return fail(Errc::kUnavailable, "mosquitto did not start; see " + log_path("mosquitto"));
    }
    std::this_thread::sleep_for(50ms);
  }
  return {};
}

void Stack::supervise() {
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      for (const auto& name : order_) {
        auto& c = children_.at(name);
        if (!c.wanted || c.proc.running()) continue;
        if (!opts_.restart_crashed) continue;
        if (auto st = c.proc.exit_status()) c.exits.push_back(*st);
        spdlog::warn("{} exited; restarting (restart #{})", name, c.restarts + 1);
        ++c.restarts;
        if (auto st = spawn(c); !st) spdlog::error("restart {}: {}", name, st.error().message);
      }
    }
    std::this_thread::sleep_for(200ms);
  }
}

void Stack::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (supervisor_.joinable()) supervisor_.join();
  // Front door first, broker last: each stage drains into a live broker.
  for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
    auto& c = children_.at(*it);
    if (c.proc.running()) {
      const int st = c.proc.stop(15s);
      spdlog::info("stopped {} ({})", *it,
                   WIFEXITED(st) ? fmt::format("exit {}", WEXITSTATUS(st)) : fmt::format("signal {}", WTERMSIG(st)));
    }
    std::lock_guard lock(mu_);
    if (auto st = c.proc.exit_status()) c.exits.push_back(*st);
  }
}

std::vector<std::string> Stack::processes() const { return order_; }

Status Stack::signal(const std::string& process, int sig) {
  std::lock_guard lock(mu_);
  auto it = children_.find(process);
  if (it == children_.end()) return fail(Errc::kNotFound, "no process " + process);
  it->second.proc.signal(sig);
  return {};
}

Status Stack::restart(const std::string& process) {
  std::lock_guard lock(mu_);
  auto it = children_.find(process);
  if (it == children_.end()) return fail(Errc::kNotFound, "no process " + process);
  if (it->second.proc.running()) return fail(Errc::kInvalidArgument, process + " is running");
  if (auto st = it->second.proc.exit_status()) it->second.exits.push_back(*st);
  ++it->second.restarts;
  return spawn(it->second);
}

bool Stack::running(const std::string& process) {
  std::lock_guard lock(mu_);
  auto it = children_.find(process);
  return it != children_.end() && it->second.proc.running();
}

std::vector<int> Stack::exits(const std::string& process) {
  std::lock_guard lock(mu_);
  auto it = children_.find(process);
  return it == children_.end() ? std::vector<int>{} : it->second.exits;
}

int Stack::restarts(const std::string& process) {
  std::lock_guard lock(mu_);
  auto it = children_.find(process);
  return it == children_.end() ? 0 : it->second.restarts;
}

}  // namespace starling::supervisor
