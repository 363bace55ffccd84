#include "services/common/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>

extern char** environ;

namespace starling {
namespace {

// Linux sends a child its PR_SET_PDEATHSIG when the *thread* that forked it
// ends, not when the process does (prctl(2)). The supervisor forks restarts
// on its own thread, which Stack::stop() ends before it drains the children:
// every restarted service was SIGKILLed there instead of drained. So every
// fork happens on this one thread, which lives as long as the process: the
// death signal then comes when the parent process is gone, which is what it
// is for, whichever thread asked for the child and however long that thread
// lives. (Draining before the supervisor thread ends would fix only Stack,
// and only as long as nobody else spawns from a thread that ends first.)
class ForkThread {
 public:
  static ForkThread& instance() {
    // Never destroyed: its thread must outlive every child, up to exit().
    static ForkThread* const fork_thread = new ForkThread;
    return *fork_thread;
  }

  /// fork() on the fork thread. In the child, `in_child` runs (async-signal-
  /// safe calls only: the parent has threads) and does not return. Returns
  /// fork()'s result, with its errno.
  pid_t fork(const std::function<void()>& in_child) {
    std::lock_guard one_at_a_time(call_mu_);
    std::unique_lock lock(mu_);
    job_ = &in_child;
    cv_.notify_all();
    cv_.wait(lock, [&] { return job_ == nullptr; });
    errno = errno_;
    return pid_;
  }

 private:
  ForkThread() {
    std::thread([this] { run(); }).detach();
  }

  void run() {
    // Children inherit the forking thread's signal mask through exec; they
    // start with none blocked, whichever thread created this one.
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, nullptr);
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return job_ != nullptr; });
      const pid_t pid = ::fork();
      if (pid == 0) {
        (*job_)();
        ::_exit(127);
      }
      pid_ = pid;
      errno_ = errno;
      job_ = nullptr;
      cv_.notify_all();
    }
  }

  std::mutex call_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  const std::function<void()>* job_ = nullptr;  // set while a fork is asked for
  pid_t pid_ = -1;
  int errno_ = 0;
};

}  // namespace

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), status_(other.status_) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0 && !status_) stop(std::chrono::milliseconds(0));
    pid_ = std::exchange(other.pid_, -1);
    status_ = other.status_;
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
  }
}

Result<ChildProcess> ChildProcess::spawn(const std::vector<std::string>& argv, const std::string& log_file,
                                         const std::string& user,
                                         const std::vector<std::pair<std::string, std::string>>& env) {
  if (argv.empty()) return fail(Errc::kInvalidArgument, "spawn: empty argv");
  // The environment is built before fork: the child may only call
  // async-signal-safe functions (no malloc) in a threaded parent.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view kv(*e);
    const auto name = kv.substr(0, kv.find('='));
    const bool overridden = std::any_of(env.begin(), env.end(), [&](const auto& p) { return p.first == name; });
    if (!overridden) env_strings.emplace_back(kv);
  }
  for (const auto& [k, v] : env) env_strings.push_back(fmt::format("{}={}", k, v));
  std::vector<char*> envp;
  envp.reserve(env_strings.size() + 1);
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  if (::access(argv[0].c_str(), X_OK) != 0)
    return fail(Errc::kNotFound, fmt::format("spawn: {} is not an executable: {}", argv[0], std::strerror(errno)));
  uid_t uid = 0;
  gid_t gid = 0;
  if (!user.empty() && ::geteuid() == 0) {
    const passwd* pw = ::getpwnam(user.c_str());
    if (pw == nullptr) return fail(Errc::kNotFound, fmt::format("spawn: no user {}", user));
    uid = pw->pw_uid;
    gid = pw->pw_gid;
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ForkThread::instance().fork([&] {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::setpgid(0, 0);  // Ctrl-C reaches the supervisor, which stops children in order
    if (!log_file.empty()) {
      const int fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::close(fd);
      }
    }
    if (uid != 0 && (::setgid(gid) != 0 || ::setuid(uid) != 0)) ::_exit(126);
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  });
  if (pid < 0) return fail(Errc::kIo, fmt::format("fork: {}", std::strerror(errno)));
  ChildProcess c;
  c.pid_ = pid;
  return c;
}

bool ChildProcess::running() {
  if (pid_ <= 0 || status_) return false;
  int st = 0;
  const pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = st;
    return false;
  }
  return true;
}

void ChildProcess::signal(int sig) const {
  if (pid_ > 0 && !status_) ::kill(pid_, sig);
}

std::optional<int> ChildProcess::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return status_;
}

int ChildProcess::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return 0;
  signal(SIGTERM);
  if (auto st = wait(grace)) return *st;
  signal(SIGKILL);
  return wait(std::chrono::seconds(30)).value_or(-1);
}

Result<std::string> wait_for_file(const std::string& path, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(path);
    std::string line;
    if (in && std::getline(in, line) && !line.empty()) return line;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return fail(Errc::kTimeout, fmt::format("{} did not appear within {} ms", path, timeout.count()));
}

std::string executable_dir() { return std::filesystem::canonical("/proc/self/exe").parent_path().string(); }

bool process_alive(int64_t pid) {
  if (pid <= 0 || (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM)) return false;
  // A killed process nobody has reaped yet still answers kill(0): a zombie.
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(stat, line)) return true;
  const auto close = line.rfind(')');
  return close == std::string::npos || close + 2 >= line.size() || line[close + 2] != 'Z';
}

double process_cpu_seconds(int64_t pid) {
  std::ifstream in(pid == 0 ? std::string("/proc/self/stat") : fmt::format("/proc/{}/stat", pid));
  std::string stat;
  std::getline(in, stat);
  const auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 > stat.size()) return 0;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  uint64_t utime = 0;
  uint64_t stime = 0;
  // After the command: state is field 3; utime is field 14, stime 15.
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

uint16_t free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  return ok ? ntohs(a.sin_port) : 0;  // 0: the caller's bind fails and says so
}

bool loopback_accepts(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

}  // namespace starling
