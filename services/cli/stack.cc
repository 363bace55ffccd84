#include "services/cli/stack.h"

#include <csignal>
#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "broker-adapters/kafka/kafka.h"

namespace starling::cli {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

Stack::Stack(StackOptions options) : opts_(std::move(options)) {
  for (const auto& f : opts_.pipeline_files) pipelines_.push_back(load_pipeline(f));
}

Stack::~Stack() { stop(); }

std::string Stack::ingest_url() const { return fmt::format("http://127.0.0.1:{}", ingest_port_); }
std::string Stack::saga_url() const { return fmt::format("http://127.0.0.1:{}", saga_port_); }
std::string Stack::db_path(const std::string& pipeline) const {
  return (fs::path(opts_.data_dir) / ("load." + pipeline) / (pipeline + ".db")).string();
}
std::string Stack::log_path(const std::string& process) const {
  return (fs::path(opts_.data_dir) / "logs" / (process + ".log")).string();
}

Status Stack::spawn(Child& c) {
  auto proc = ChildProcess::spawn(c.argv, log_path(c.name));
  if (!proc) return std::unexpected(proc.error());
  c.proc = std::move(*proc);
  spdlog::info("started {} (pid {})", c.name, c.proc.pid());
  return {};
}

Status Stack::add(const std::string& name, std::vector<std::string> argv) {
  Child c;
  c.name = name;
  c.argv = std::move(argv);
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
    if (auto st = add("broker", {bin("starling-broker"), "--listen", "127.0.0.1:0", "--data-dir",
                                 (fs::path(opts_.data_dir) / "broker").string(), "--port-file", pf,
                                 "--log-level", opts_.log_level});
        !st) {
      return st;
    }
    auto addr = wait_for_file(pf, 30s);
    if (!addr) return fail(Errc::unavailable, "starling-broker did not start: " + addr.error().message +
                                                  "; see " + log_path("broker"));
    bootstrap_ = *addr;
    // Restarting the broker must keep its address, or clients lose it.
    std::lock_guard lock(mu_);
    auto& argv = children_.at("broker").argv;
    argv[2] = bootstrap_;
  } else {
    bootstrap_ = opts_.kafka;
  }
  spdlog::info("kafka at {}", bootstrap_);

  std::vector<kafka::TopicSpec> topics = {{kSagaTopic, 3}, {kOutcomeTopic, 1}};
  for (const auto& p : pipelines_) {
    for (const auto& t : {p.raw_topic(), p.clean_topic(), p.rejected_topic(), p.dlq_topic()}) topics.push_back({t, p.partitions});
  }
  if (auto st = kafka::create_topics({bootstrap_, "starling-up", {}}, topics); !st) {
    return fail(st.error().code, "creating topics: " + st.error().message);
  }

  std::vector<std::string> pipeline_args;
  for (const auto& f : opts_.pipeline_files) {
    pipeline_args.push_back("--pipeline");
    pipeline_args.push_back(fs::absolute(f).string());
  }
  auto common = [&](const std::string& name) {
    std::vector<std::string> a = {"--kafka", bootstrap_, "--log-level", opts_.log_level, "--instance", name,
                                  "--data-dir", (fs::path(opts_.data_dir) / name).string()};
    return a;
  };
  auto cat = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  const auto saga_pf = port_file("saga");
  const auto ingest_pf = port_file("ingest");
  if (auto st = add("saga", cat(cat({bin("starling-saga")}, common("saga")),
                                cat(pipeline_args, {"--listen", fmt::format("127.0.0.1:{}", opts_.saga_port),
                                                    "--port-file", saga_pf})));
      !st) {
    return st;
  }
  for (const auto& p : pipelines_) {
    const auto file = fs::absolute(p.file).string();
    if (auto st = add("clean." + p.name, cat(cat({bin("starling-clean")}, common("clean." + p.name)), {"--pipeline", file}));
        !st) {
      return st;
    }
    if (auto st = add("load." + p.name, cat(cat(cat({bin("starling-load")}, common("load." + p.name)), {"--pipeline", file}),
                                            opts_.load_args));
        !st) {
      return st;
    }
  }
  if (auto st = add("ingest", cat(cat({bin("starling-ingest")}, common("ingest")),
                                  cat(pipeline_args, {"--listen", fmt::format("127.0.0.1:{}", opts_.ingest_port),
                                                      "--port-file", ingest_pf})));
      !st) {
    return st;
  }
  for (auto [name, pf, port] : {std::tuple{"saga", saga_pf, &saga_port_}, std::tuple{"ingest", ingest_pf, &ingest_port_}}) {
    auto got = wait_for_file(pf, 30s);
    if (!got) return fail(Errc::unavailable, fmt::format("{} did not start: {}; see {}", name, got.error().message, log_path(name)));
    *port = static_cast<uint16_t>(std::stoi(*got));
    // A restarted service binds the same port, so clients keep working.
    std::lock_guard lock(mu_);
    auto& argv = children_.at(name).argv;
    for (std::size_t i = 0; i + 1 < argv.size(); ++i) {
      if (argv[i] == "--listen") argv[i + 1] = fmt::format("127.0.0.1:{}", *port);
    }
  }
  supervisor_ = std::thread([this] { supervise(); });
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
    if (!c.proc.running()) continue;
    const int st = c.proc.stop(15s);
    spdlog::info("stopped {} ({})", *it, WIFEXITED(st) ? fmt::format("exit {}", WEXITSTATUS(st))
                                                       : fmt::format("signal {}", WTERMSIG(st)));
  }
}

std::vector<std::string> Stack::processes() const { return order_; }

Status Stack::signal(const std::string& process, int sig) {
  std::lock_guard lock(mu_);
  auto it = children_.find(process);
  if (it == children_.end()) return fail(Errc::not_found, "no process " + process);
  it->second.proc.signal(sig);
  return {};
}

Status Stack::restart(const std::string& process) {
  std::lock_guard lock(mu_);
  auto it = children_.find(process);
  if (it == children_.end()) return fail(Errc::not_found, "no process " + process);
  if (it->second.proc.running()) return fail(Errc::invalid_argument, process + " is running");
  ++it->second.restarts;
  return spawn(it->second);
}

bool Stack::running(const std::string& process) {
  std::lock_guard lock(mu_);
  auto it = children_.find(process);
  return it != children_.end() && it->second.proc.running();
}

int Stack::restarts(const std::string& process) {
  std::lock_guard lock(mu_);
  auto it = children_.find(process);
  return it == children_.end() ? 0 : it->second.restarts;
}

}  // namespace starling::cli
