#include "services/broker/file_cache.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace starling::broker {

FileCache::File::~File() {
  if (fd_ >= 0) ::close(fd_);
}

FileCache::FileCache(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {}

Result<FileCache::Handle> FileCache::open(const std::filesystem::path& path) {
  const std::string& key = path.native();
  if (auto it = index_.find(key); it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->second;
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
    spdlog::warn("out of file descriptors opening {}; closing {} cached segment files", path.string(), size());
    evict_to(0);
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  }
  if (fd < 0) {
    return fail(ErrorCode::kKafkaStorageError, fmt::format("cannot open {}: {}", path.string(), std::strerror(errno)));
  }
  ++opens_;
  auto file = std::make_shared<File>(fd);
  lru_.emplace_front(key, file);
  index_[key] = lru_.begin();
  evict_to(capacity_);
  return file;
}

void FileCache::forget(const std::filesystem::path& path) {
  auto it = index_.find(path.native());
  if (it == index_.end()) return;
  lru_.erase(it->second);
  index_.erase(it);
}

void FileCache::evict_to(size_t n) {
  while (index_.size() > n) {
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
}

size_t default_max_open_segment_files() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) return FileCache::kDefaultCapacity;
  return std::clamp<size_t>(static_cast<size_t>(lim.rlim_cur) / 4, 16, FileCache::kDefaultCapacity);
}

}  // namespace starling::broker
