#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "services/broker/asio.h"

namespace starling::broker {

/// Group commit: fdatasync on a dedicated thread, so the I/O thread keeps
/// appending (from other requests and connections) while the disk works, and
/// one fdatasync covers every write issued before it. All jobs waiting when
/// the thread wakes are merged and each file is synced once, the files of one
/// round in parallel on a small pool: concurrent fdatasyncs share ext4/jbd2
/// journal commits, which measured ~10x faster than syncing 8 partition files
/// one after another (3 ms vs 35 ms per round on the dev VM).
///
/// Threading: sync() is called on the I/O thread; completions are posted back
/// to the executor passed at construction.
class Flusher {
 public:
  explicit Flusher(asio::any_io_executor ex);
  ~Flusher();
  Flusher(const Flusher&) = delete;
  Flusher& operator=(const Flusher&) = delete;

  /// Returns once every fd in `fds` was fdatasync'ed after this call; false
  /// when a sync failed. The fds are dup'ed, so the caller may close its own.
  asio::awaitable<bool> sync(const std::vector<int>& fds);

  uint64_t syscalls() const { return syscalls_; }

 private:
  struct Job {
    std::vector<int> fds;  // dup'ed, owned by the job
    std::shared_ptr<Pending<bool>> done;
  };
  void run();
  void pool_worker();
  bool sync_files(const std::vector<int>& fds);

  static constexpr size_t kPoolThreads = 8;

  asio::any_io_executor ex_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stop_ = false;
  std::atomic<uint64_t> syscalls_{0};
  std::thread thread_;

  std::mutex pool_mu_;
  std::condition_variable pool_cv_;
  std::condition_variable pool_done_cv_;
  std::deque<int> pool_fds_;
  size_t pool_pending_ = 0;
  bool pool_ok_ = true;
  bool pool_stop_ = false;
  std::vector<std::thread> pool_;
};

}  // namespace starling::broker
