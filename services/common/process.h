#pragma once
// Child processes for the supervisor (`starling up`) and for tests that run
// the real executables and kill them at the worst moment.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "services/common/error.h"

namespace starling {

class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  /// Kills (SIGKILL) and reaps a child still running: a test that fails
  /// half-way leaves no process behind.
  ~ChildProcess();

  /// Starts argv[0] (a path) with stdout and stderr appended to `log_file`
  /// (inherited when empty). The child dies with this process
  /// (PR_SET_PDEATHSIG), not with the thread that called spawn (process.cc).
  /// `user`, when we are root, is who the child runs as (PostgreSQL refuses
  /// to run as root). `env` adds to (or overrides in) our environment.
  static Result<ChildProcess> spawn(const std::vector<std::string>& argv, const std::string& log_file = {},
                                    const std::string& user = {},
                                    const std::vector<std::pair<std::string, std::string>>& env = {});

  pid_t pid() const { return pid_; }
  /// The wait status once the child has exited (after running() saw it).
  std::optional<int> exit_status() const { return status_; }
  bool running();
  void signal(int sig) const;
  /// Waits up to `timeout` for exit; returns the wait status, or nullopt.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  /// SIGTERM, then SIGKILL after `grace`. Returns the wait status.
  int stop(std::chrono::milliseconds grace = std::chrono::seconds(10));

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

/// Polls until `path` exists and is non-empty, returning its first line.
Result<std::string> wait_for_file(const std::string& path, std::chrono::milliseconds timeout);

/// The folder of the running executable (so `starling up` finds its siblings).
std::string executable_dir();

/// A loopback TCP port that was free a moment ago (0 if none could be had),
/// for servers that cannot bind port 0 and report it (mosquitto, PostgreSQL).
uint16_t free_loopback_port();

/// Whether something accepts TCP connections on 127.0.0.1:`port` now.
bool loopback_accepts(uint16_t port);

/// Whether process `pid` runs (not a zombie nobody reaped): how a command
/// tells a run of its own that died from one still going (replay, backfill).
bool process_alive(int64_t pid);

/// User + system CPU seconds process `pid` (0: this one) has used, from
/// /proc/<pid>/stat; 0 when it cannot be read (a process gone).
double process_cpu_seconds(int64_t pid = 0);

}  // namespace starling
