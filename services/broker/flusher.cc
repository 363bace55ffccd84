#include "services/broker/flusher.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

namespace starling::broker {

Flusher::Flusher(asio::any_io_executor ex) : ex_(std::move(ex)), thread_([this] { run(); }) {}

Flusher::~Flusher() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
  for (auto& j : jobs_) {
    for (int fd : j.fds) ::close(fd);
  }
}

asio::awaitable<bool> Flusher::sync(const std::vector<int>& fds) {
  Job job;
  for (int fd : fds) {
    int d = ::dup(fd);
    if (d < 0) co_return false;
    job.fds.push_back(d);
  }
  auto done = std::make_shared<Pending<bool>>(ex_);
  job.done = done;
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
  co_await done->wait_until(Clock::time_point::max());
  co_return done->result.value_or(false);
}

void Flusher::run() {
  for (;;) {
    std::deque<Job> batch;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (stop_ && jobs_.empty()) return;
      batch.swap(jobs_);
    }
    // Dup'ed descriptors of one file share an inode: sync each inode once.
    std::map<std::pair<dev_t, ino_t>, int> files;
    for (const auto& j : batch) {
      for (int fd : j.fds) {
        struct stat st {};
        if (::fstat(fd, &st) == 0) files.emplace(std::make_pair(st.st_dev, st.st_ino), fd);
      }
    }
    bool ok = true;
    for (const auto& [key, fd] : files) {
      ++syscalls_;
      if (::fdatasync(fd) != 0) {
        spdlog::error("fdatasync failed: {}", std::strerror(errno));
        ok = false;
      }
    }
    for (auto& j : batch) {
      for (int fd : j.fds) ::close(fd);
      asio::post(ex_, [done = j.done, ok] { done->complete(ok); });
    }
  }
}

}  // namespace starling::broker
