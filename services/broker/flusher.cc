#include "services/broker/flusher.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "services/broker/broker_metrics.h"

namespace starling::broker {

Flusher::Flusher(asio::any_io_executor ex) : ex_(std::move(ex)) {
  for (size_t i = 0; i < kPoolThreads; ++i) pool_.emplace_back([this] { pool_worker(); });
  thread_ = std::thread([this] { run(); });
}

Flusher::~Flusher() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
  {
    std::lock_guard lock(pool_mu_);
    pool_stop_ = true;
  }
  pool_cv_.notify_all();
  for (auto& t : pool_) t.join();
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
    std::vector<int> fds;
    fds.reserve(files.size());
    for (const auto& [key, fd] : files) fds.push_back(fd);
    const auto start = std::chrono::steady_clock::now();
    bool ok = sync_files(fds);
    fsync_seconds().observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    for (auto& j : batch) {
      for (int fd : j.fds) ::close(fd);
      asio::post(ex_, [done = j.done, ok] { done->complete(ok); });
    }
  }
}

bool Flusher::sync_files(const std::vector<int>& fds) {
  syscalls_ += fds.size();
  if (fds.size() == 1) {
    if (::fdatasync(fds[0]) == 0) return true;
    spdlog::error("fdatasync failed: {}", std::strerror(errno));
    return false;
  }
  {
    std::lock_guard lock(pool_mu_);
    pool_fds_.insert(pool_fds_.end(), fds.begin(), fds.end());
    pool_pending_ = fds.size();
    pool_ok_ = true;
  }
  pool_cv_.notify_all();
  std::unique_lock lock(pool_mu_);
  pool_done_cv_.wait(lock, [&] { return pool_pending_ == 0; });
  return pool_ok_;
}

void Flusher::pool_worker() {
  for (;;) {
    int fd = -1;
    {
      std::unique_lock lock(pool_mu_);
      pool_cv_.wait(lock, [&] { return pool_stop_ || !pool_fds_.empty(); });
      if (pool_fds_.empty()) return;  // stopping
      fd = pool_fds_.front();
      pool_fds_.pop_front();
    }
    bool ok = ::fdatasync(fd) == 0;
    if (!ok) spdlog::error("fdatasync failed: {}", std::strerror(errno));
    std::lock_guard lock(pool_mu_);
    if (!ok) pool_ok_ = false;
    if (--pool_pending_ == 0) pool_done_cv_.notify_one();
  }
}

}  // namespace starling::broker
