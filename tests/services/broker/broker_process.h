#pragma once

// Starts the real starling-broker executable for integration tests: port 0,
// a temporary data directory, output captured to files, and the process
// always reaped (SIGTERM, then SIGKILL) so a failing test leaks nothing.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace starling::broker::testing {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/broker-it-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

inline std::string read_file(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class BrokerProcess {
 public:
  /// `fd_limit` > 0: the broker runs with RLIMIT_NOFILE (soft and hard) set
  /// to it, as under `ulimit -n`.
  BrokerProcess(fs::path data_dir, std::vector<std::string> extra_args = {}, rlim_t fd_limit = 0)
      : data_dir_(std::move(data_dir)), extra_(std::move(extra_args)), fd_limit_(fd_limit) {
    start();
  }
  ~BrokerProcess() { stop(); }

  void start() {
    fs::create_directories(data_dir_);
    fs::path port_file = data_dir_ / "port";
    fs::remove(port_file);
    log_ = data_dir_ / ("broker-" + std::to_string(++starts_) + ".log");
    // STARLING_BROKER_BIN runs the tests against another build of the broker
    // (for example the one before a change, to see a new test fail).
    const char* bin = std::getenv("STARLING_BROKER_BIN");
    std::vector<std::string> args = {
        bin != nullptr ? std::string(bin) : std::string(STARLING_BIN_DIR) + "/starling-broker",
        "--listen",
        listen_,
        "--data-dir",
        (data_dir_ / "data").string(),
        "--port-file",
        port_file.string()};
    // Tests join groups at once rather than after Kafka's 3 s wait for more
    // members, unless one asks for the wait.
    const std::string delay_flag = "--group-initial-rebalance-delay-ms";
    if (std::find(extra_.begin(), extra_.end(), delay_flag) == extra_.end()) args.insert(args.end(), {delay_flag, "0"});
    args.insert(args.end(), extra_.begin(), extra_.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      FILE* out = std::freopen(log_.c_str(), "w", stderr);
      (void)out;
      ::dup2(STDERR_FILENO, STDOUT_FILENO);
      if (fd_limit_ > 0) {
        rlimit lim{fd_limit_, fd_limit_};
        if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) ::_exit(126);
      }
      std::vector<char*> argv;
      argv.reserve(args.size() + 1);
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!fs::exists(port_file)) {
      if (std::chrono::steady_clock::now() > deadline || !alive()) {
        stop();
        throw std::runtime_error("starling-broker did not start: " + read_file(log_));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    address_ = read_file(port_file);
    while (!address_.empty() && (address_.back() == '\n' || address_.back() == ' ')) address_.pop_back();
  }

  /// Starts it again on the port it had, so that running clients reconnect
  /// to the same bootstrap address (after kill9() or stop()).
  void restart_on_same_port() {
    listen_ = address_;
    start();
  }

  /// SIGTERM and wait; SIGKILL after 10 s. Returns the exit status.
  int stop() {
    if (pid_ <= 0) return 0;
    ::kill(pid_, SIGTERM);
    int status = wait_for_exit(std::chrono::seconds(10));
    return status;
  }

  void kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    wait_for_exit(std::chrono::seconds(10));
  }

  bool alive() {
    if (pid_ <= 0) return false;
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      last_status_ = status;
      return false;
    }
    return true;
  }

  const std::string& bootstrap() const { return address_; }
  pid_t pid() const { return pid_; }
  /// Resident set size in KiB (0 when unknown).
  long rss_kib() const {
    std::ifstream f("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return 0;
  }
  uint16_t port() const { return static_cast<uint16_t>(std::stoi(address_.substr(address_.rfind(':') + 1))); }
  std::string log() const { return read_file(log_); }
  int last_status() const { return last_status_; }

 private:
  int wait_for_exit(std::chrono::seconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (alive()) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        last_status_ = status;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return last_status_;
  }

  fs::path data_dir_;
  std::vector<std::string> extra_;
  rlim_t fd_limit_ = 0;
  std::string listen_ = "127.0.0.1:0";
  fs::path log_;
  pid_t pid_ = -1;
  int starts_ = 0;
  int last_status_ = 0;
  std::string address_;
};

/// Any child process with stdout (and stderr) captured to a file; killed
/// with SIGKILL and reaped on destruction.
class ChildProcess {
 public:
  ChildProcess(std::vector<std::string> args, fs::path out) : out_(std::move(out)) {
    pid_ = ::fork();
    if (pid_ == 0) {
      FILE* f = std::freopen(out_.c_str(), "w", stdout);
      (void)f;
      FILE* e = std::freopen((out_.string() + ".err").c_str(), "w", stderr);
      (void)e;
      std::vector<char*> argv;
      argv.reserve(args.size() + 1);
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~ChildProcess() { kill9(); }
  /// SIGTERM and wait up to `timeout` for it to exit (then SIGKILL).
  void terminate(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill9();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pid_ = -1;
  }
  void kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  std::string output() const { return read_file(out_); }

 private:
  fs::path out_;
  pid_t pid_ = -1;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

/// Runs `cmd` under sh, killed after `timeout_s` seconds.
inline CommandResult run_command(const std::string& cmd, int timeout_s) {
  std::string full = "timeout -s KILL " + std::to_string(timeout_s) + " sh -c '" + cmd + "' 2>&1";
  CommandResult r;
  FILE* p = ::popen(full.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

/// Runs a shell command bounded by `timeout_s` seconds, returning stdout.
inline std::string run(const std::string& cmd, int timeout_s = 30) {
  std::string full = "timeout -s KILL " + std::to_string(timeout_s) + " sh -c '" + cmd + "' 2>/dev/null";
  FILE* p = ::popen(full.c_str(), "r");
  if (!p) return {};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

inline std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string l;
  while (std::getline(ss, l)) {
    if (!l.empty()) out.push_back(l);
  }
  return out;
}

}  // namespace starling::broker::testing
