#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "services/broker/error.h"

namespace starling::broker {

/// A bounded set of read-only descriptors of closed segment files, shared by
/// every PartitionLog of a broker and evicted least recently used first, so
/// the number of open files does not grow with the number of segments (a
/// restart with thousands of segments used to die of EMFILE).
///
/// A handle keeps its descriptor open after eviction until the handle is
/// dropped; readers hold one only for the duration of a read, so at most
/// `capacity` plus the reads in progress are open.
///
/// Threading: not thread-safe; the broker uses it from its one I/O thread.
class FileCache {
 public:
  /// One open descriptor, closed when the last handle goes.
  class File {
   public:
    explicit File(int fd) : fd_(fd) {}
    ~File();
    File(const File&) = delete;
    File& operator=(const File&) = delete;
    int fd() const { return fd_; }

   private:
    int fd_;
  };
  using Handle = std::shared_ptr<const File>;

  /// Used when a log is opened without a shared cache (unit tests, tools).
  static constexpr size_t kDefaultCapacity = 512;

  explicit FileCache(size_t capacity);
  FileCache(const FileCache&) = delete;
  FileCache& operator=(const FileCache&) = delete;

  /// A read-only descriptor of `path`, from the cache or newly opened. At
  /// EMFILE/ENFILE the cache lets go of every descriptor it holds and tries
  /// once more. An error is KAFKA_STORAGE_ERROR naming the file.
  Result<Handle> open(const std::filesystem::path& path);
  /// Drops the cached descriptor of `path` (file deleted or its log closed).
  void forget(const std::filesystem::path& path);

  size_t capacity() const { return capacity_; }
  /// Descriptors the cache holds now (not counting evicted ones still in use).
  size_t size() const { return index_.size(); }
  /// How many times a file was opened (misses), for tests.
  uint64_t opens() const { return opens_; }

 private:
  using Entry = std::pair<std::string, std::shared_ptr<File>>;
  void evict_to(size_t n);

  size_t capacity_;
  uint64_t opens_ = 0;
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

/// The segment file cache size when none is configured: a quarter of the
/// soft RLIMIT_NOFILE, between 16 and FileCache::kDefaultCapacity, leaving
/// the rest for sockets, active segments and RocksDB.
size_t default_max_open_segment_files();

}  // namespace starling::broker
