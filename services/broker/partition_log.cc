#include "services/broker/partition_log.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace starling::broker {

namespace fs = std::filesystem;
namespace bl = batch_layout;

namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool pread_all(int fd, uint8_t* buf, size_t n, uint64_t pos) {
  while (n > 0) {
    ssize_t r = ::pread(fd, buf, n, static_cast<off_t>(pos));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    buf += r;
    n -= static_cast<size_t>(r);
    pos += static_cast<uint64_t>(r);
  }
  return true;
}

void fsync_dir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

constexpr const char* kLogStartFile = "log-start-offset";

// Writes `text` to dir/name durably: a temporary file, fdatasync, rename, fsync of the directory.
bool write_file_durably(const fs::path& dir, const char* name, const std::string& text) {
  const fs::path tmp = dir / (std::string(name) + ".tmp");
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fdatasync(fd) == 0;
  ok = ::close(fd) == 0 && ok;
  if (!ok || ::rename(tmp.c_str(), (dir / name).c_str()) != 0) return false;
  fsync_dir(dir);
  return true;
}

}  // namespace

std::string segment_file_name(int64_t base_offset) { return fmt::format("{:020d}.log", base_offset); }

std::unique_ptr<PartitionLog> PartitionLog::open(const fs::path& dir, const LogConfig& config) {
  LogConfig c = config;
  if (!c.files) c.files = std::make_shared<FileCache>(FileCache::kDefaultCapacity);
  std::unique_ptr<PartitionLog> log(new PartitionLog(dir, std::move(c)));
  log->load();
  return log;
}

PartitionLog::~PartitionLog() {
  for (auto& s : segments_) {
    if (s->fd >= 0) {
      if (dirty_) ::fdatasync(s->fd);
      ::close(s->fd);
    }
    config_.files->forget(s->path);
  }
}

void PartitionLog::load() {
  fs::create_directories(dir_);
  std::vector<int64_t> bases;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    const auto name = entry.path().filename().string();
    if (entry.path().extension() != ".log" || name.size() != 24) continue;
    try {
      bases.push_back(std::stoll(name.substr(0, 20)));
    } catch (const std::exception&) {
      spdlog::warn("ignoring unexpected file {}", entry.path().string());
    }
  }
  std::sort(bases.begin(), bases.end());
  for (size_t i = 0; i < bases.size(); ++i) {
    auto seg = std::make_unique<Segment>();
    seg->base_offset = bases[i];
    seg->path = dir_ / segment_file_name(bases[i]);
    seg->fd = ::open(seg->path.c_str(), O_RDWR | O_CLOEXEC);
    if (seg->fd < 0)
      throw std::runtime_error(fmt::format("cannot open {}: {}", seg->path.string(), std::strerror(errno)));
    struct stat st {};
    ::fstat(seg->fd, &st);
    seg->size = static_cast<uint64_t>(st.st_size);
    seg->last_append_ms = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000;
    // A gap between segments (a previous truncation) ends the log there:
    // later segments cannot be trusted to continue the offset sequence.
    if (!segments_.empty() && seg->base_offset != next_offset_) {
      spdlog::warn("{}: segment {} does not continue offset {}; removing it and later segments", dir_.string(),
                   seg->base_offset, next_offset_);
      for (size_t j = i; j < bases.size(); ++j) fs::remove(dir_ / segment_file_name(bases[j]));
      ::close(seg->fd);
      break;
    }
    next_offset_ = seg->base_offset;
    bool is_last = i + 1 == bases.size();
    recover_segment(*seg, /*verify_crc=*/is_last, is_last);
    // Closed segments are reopened on demand: a log of thousands of segments
    // must not hold thousands of descriptors.
    if (!is_last) release_write_fd(*seg);
    segments_.push_back(std::move(seg));
  }
  if (segments_.empty()) {
    roll(0);
  } else if (Segment& last = *segments_.back(); last.fd < 0) {
    // A gap cut the log short: the new last segment is the active one.
    last.fd = ::open(last.path.c_str(), O_RDWR | O_CLOEXEC);
    if (last.fd < 0)
      throw std::runtime_error(fmt::format("cannot open {}: {}", last.path.string(), std::strerror(errno)));
  }
  // What survived recovery is on disk: recovery synced any truncation.
  durable_end_ = next_offset_;
  // A DeleteRecords' start offset (at most the high watermark when it was
  // written, so within the log unless a power loss took synced data).
  if (std::ifstream f(dir_ / kLogStartFile); f) {
    int64_t start = 0;
    if (f >> start) {
      log_start_ = std::min(start, next_offset_);
      delete_segments_below_start();  // a crash may have come between the write and the deletion
    } else {
      spdlog::warn("{}: ignoring unreadable {}", dir_.string(), kLogStartFile);
    }
  }
}

void PartitionLog::recover_segment(Segment& seg, bool verify_crc, bool is_last) {
  uint64_t pos = 0;
  std::vector<uint8_t> buf(bl::kHeaderSize);
  const char* why = nullptr;
  while (pos < seg.size) {
    if (seg.size - pos < bl::kHeaderSize) {
      why = "partial batch header";
      break;
    }
    if (!pread_all(seg.fd, buf.data(), bl::kHeaderSize, pos)) {
      why = "read error";
      break;
    }
    auto h = parse_batch_header(buf);
    if (!h) {
      why = "invalid batch header";
      break;
    }
    if (h->base_offset != next_offset_) {
      why = "offset discontinuity";
      break;
    }
    if (h->total_size() > seg.size - pos) {
      why = "batch extends past end of file (torn write)";
      break;
    }
    if (verify_crc) {
      std::vector<uint8_t> batch(h->total_size());
      if (!pread_all(seg.fd, batch.data(), batch.size(), pos) || !batch_crc_ok(batch)) {
        why = "CRC-32C mismatch";
        break;
      }
    }
    index_batch(seg, *h, pos);
    producers_.record(*h, h->base_offset);
    next_offset_ = h->last_offset() + 1;
    pos += h->total_size();
  }
  if (why != nullptr) {
    spdlog::warn("{}: truncating {} at byte {} of {} ({})", dir_.string(), seg.path.filename().string(), pos, seg.size,
                 why);
    truncated_at_open_ += seg.size - pos;
    if (::ftruncate(seg.fd, static_cast<off_t>(pos)) != 0 || ::fdatasync(seg.fd) != 0) {
      throw std::runtime_error(fmt::format("cannot truncate {}: {}", seg.path.string(), std::strerror(errno)));
    }
    seg.size = pos;
  }
}

void PartitionLog::index_batch(Segment& seg, const BatchHeader& h, uint64_t position) {
  if (seg.offset_index.empty() || position - seg.last_offset_index_pos >= config_.index_interval_bytes) {
    seg.offset_index.push_back({h.base_offset, static_cast<uint32_t>(position)});
    seg.last_offset_index_pos = position;
  }
  if (h.max_timestamp > seg.max_timestamp) {
    // Entries hold the largest timestamp so far, so they are monotonic and a
    // binary search finds where batches with max timestamp >= t may start.
    if (seg.time_index.empty() || position - seg.last_time_index_pos >= config_.index_interval_bytes) {
      seg.time_index.push_back({seg.max_timestamp, static_cast<uint32_t>(position)});
      seg.last_time_index_pos = position;
    }
    seg.max_timestamp = h.max_timestamp;
  }
}

PartitionLog::Segment& PartitionLog::roll(int64_t base_offset) {
  if (!segments_.empty()) {
    Segment& closed = *segments_.back();
    // Interval mode: the closed segment is not on the flush timer's list any more.
    if (dirty_ && config_.sync == LogConfig::Sync::kInterval) ::fdatasync(closed.fd);
    // Deferred mode: the flusher still syncs the closed segment through its
    // write descriptor (unsynced_fds) until mark_durable() passes its end.
    if (config_.sync != LogConfig::Sync::kDeferred || durable_end_ >= next_offset_) release_write_fd(closed);
  }
  auto seg = std::make_unique<Segment>();
  seg->base_offset = base_offset;
  seg->path = dir_ / segment_file_name(base_offset);
  seg->fd = ::open(seg->path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (seg->fd < 0)
    throw std::runtime_error(fmt::format("cannot create {}: {}", seg->path.string(), std::strerror(errno)));
  seg->last_append_ms = now_ms();
  fsync_dir(dir_);
  segments_.push_back(std::move(seg));
  next_offset_ = base_offset;
  return *segments_.back();
}

Result<PartitionLog::AppendResult> PartitionLog::append(ByteView records, const std::vector<IncomingBatch>& batches) {
  // Check every batch first so a rejected request leaves no partial append.
  std::vector<ProducerStateTable::Verdict> verdicts;
  verdicts.reserve(batches.size());
  for (const auto& b : batches) {
    auto v = producers_.check(b.header);
    if (!v) return std::unexpected(v.error());
    verdicts.push_back(*v);
  }
  AppendResult result;
  uint64_t total = 0;
  for (size_t i = 0; i < batches.size(); ++i) {
    if (!verdicts[i].duplicate) total += batches[i].header.total_size();
  }
  if (total == 0) {
    result.duplicate = true;
    result.base_offset = verdicts.front().duplicate_base_offset;
    // The original may still be waiting for its fdatasync.
    result.durable_end_needed = next_offset_;
    return result;
  }
  Segment* seg = segments_.back().get();
  if (seg->size > 0 && seg->size + total > config_.segment_bytes) seg = &roll(next_offset_);
  if (seg->size + total > UINT32_MAX) return fail(ErrorCode::kKafkaStorageError, "segment would exceed 4 GiB");

  // Base offsets go into small side buffers and the rest is written straight
  // from the request frame, so the batch bytes are never copied.
  std::vector<std::array<uint8_t, 8>> offsets(batches.size());
  std::vector<iovec> iov;
  std::vector<BatchHeader> headers;
  int64_t next = next_offset_;
  for (size_t i = 0; i < batches.size(); ++i) {
    if (verdicts[i].duplicate) continue;
    const auto& b = batches[i];
    store_be64(offsets[i].data(), next);
    iov.push_back({offsets[i].data(), 8});
    iov.push_back({const_cast<uint8_t*>(records.data() + b.position + 8), b.header.total_size() - 8});
    BatchHeader h = b.header;
    h.base_offset = next;
    headers.push_back(h);
    if (result.base_offset < 0) result.base_offset = next;
    next = h.last_offset() + 1;
  }
  uint64_t pos = seg->size;
  size_t done = 0;
  size_t idx = 0;
  while (idx < iov.size()) {
    int cnt = static_cast<int>(std::min<size_t>(iov.size() - idx, IOV_MAX));
    ssize_t w = ::pwritev(seg->fd, &iov[idx], cnt, static_cast<off_t>(pos + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int err = errno;
      // Cut any partial write so the file ends on a batch boundary again.
      [[maybe_unused]] int rc = ::ftruncate(seg->fd, static_cast<off_t>(pos));
      return fail(ErrorCode::kKafkaStorageError,
                  fmt::format("write to {} failed: {}", seg->path.string(), std::strerror(err)));
    }
    done += static_cast<size_t>(w);
    auto left = static_cast<size_t>(w);
    while (left > 0 && idx < iov.size()) {
      if (left >= iov[idx].iov_len) {
        left -= iov[idx].iov_len;
        ++idx;
      } else {
        iov[idx].iov_base = static_cast<uint8_t*>(iov[idx].iov_base) + left;
        iov[idx].iov_len -= left;
        left = 0;
      }
    }
  }
  if (config_.sync == LogConfig::Sync::kInline) {
    if (::fdatasync(seg->fd) != 0) {
      int err = errno;
      [[maybe_unused]] int rc = ::ftruncate(seg->fd, static_cast<off_t>(pos));
      return fail(ErrorCode::kKafkaStorageError,
                  fmt::format("fdatasync of {} failed: {}", seg->path.string(), std::strerror(err)));
    }
  } else {
    dirty_ = true;
  }
  uint64_t p = pos;
  for (const auto& h : headers) {
    index_batch(*seg, h, p);
    producers_.record(h, h.base_offset);
    p += h.total_size();
  }
  seg->size = pos + total;
  seg->last_append_ms = now_ms();
  next_offset_ = next;
  if (config_.sync == LogConfig::Sync::kInline) durable_end_ = next_offset_;
  result.durable_end_needed = next_offset_;
  return result;
}

std::vector<int> PartitionLog::unsynced_fds() const {
  // Segments after the one holding durable_end_ (at most the active one and
  // one just rolled away from).
  std::vector<int> fds;
  for (auto it = segments_.rbegin(); it != segments_.rend(); ++it) {
    if ((*it)->fd >= 0) fds.push_back((*it)->fd);
    if ((*it)->base_offset <= durable_end_) break;
  }
  return fds;
}

void PartitionLog::mark_durable(int64_t end) {
  durable_end_ = std::min(std::max(durable_end_, end), next_offset_);
  // Closed segments now wholly durable give up their write descriptor.
  for (size_t i = segments_.size() - 1; i-- > 0;) {
    if (segments_[i]->fd < 0) break;
    if (segments_[i + 1]->base_offset <= durable_end_) release_write_fd(*segments_[i]);
  }
}

void PartitionLog::release_write_fd(Segment& seg) {
  if (seg.fd < 0) return;
  ::close(seg.fd);
  seg.fd = -1;
}

Result<PartitionLog::ReadFd> PartitionLog::read_fd(const Segment& seg) const {
  if (seg.fd >= 0) return ReadFd{seg.fd, nullptr};
  auto file = config_.files->open(seg.path);
  if (!file) return std::unexpected(file.error());
  int fd = (*file)->fd();
  return ReadFd{fd, std::move(*file)};
}

Result<void> PartitionLog::flush() {
  if (!dirty_) return {};
  dirty_ = false;
  // Only the active segment can be dirty: roll() syncs the one it closes.
  if (::fdatasync(segments_.back()->fd) != 0) {
    return fail(ErrorCode::kKafkaStorageError, fmt::format("fdatasync failed: {}", std::strerror(errno)));
  }
  return {};
}

int64_t PartitionLog::log_start_offset() const { return std::max(log_start_, segments_.front()->base_offset); }

void PartitionLog::set_limits(uint64_t segment_bytes, int64_t retention_ms, int64_t retention_bytes) {
  config_.segment_bytes = segment_bytes;
  config_.retention_ms = retention_ms;
  config_.retention_bytes = retention_bytes;
}

Result<int64_t> PartitionLog::delete_records_before(int64_t offset) {
  const int64_t hw = high_watermark();
  if (offset == -1) offset = hw;
  if (offset < 0 || offset > hw) {
    return fail(ErrorCode::kOffsetOutOfRange,
                fmt::format("offset {} is outside [0, {}] (the high watermark)", offset, hw));
  }
  if (offset <= log_start_offset()) return log_start_offset();
  if (!write_file_durably(dir_, kLogStartFile, std::to_string(offset) + "\n")) {
    return fail(ErrorCode::kKafkaStorageError,
                fmt::format("cannot write {}: {}", (dir_ / kLogStartFile).string(), std::strerror(errno)));
  }
  log_start_ = offset;
  delete_segments_below_start();
  return log_start_offset();
}

void PartitionLog::delete_segments_below_start() {
  // A closed segment ends where the next one begins; the active one is kept
  // (its end is the log end offset).
  size_t deleted = 0;
  while (segments_.size() > 1 && segments_[1]->base_offset <= log_start_) {
    Segment& oldest = *segments_.front();
    spdlog::info("{}: records before {} deleted: segment {} removed", dir_.string(), log_start_, oldest.base_offset);
    remove_oldest_segment();
    ++deleted;
  }
  if (deleted > 0) fsync_dir(dir_);
}

uint64_t PartitionLog::size_bytes() const {
  uint64_t n = 0;
  for (const auto& s : segments_) n += s->size;
  return n;
}

const PartitionLog::Segment* PartitionLog::segment_for(int64_t offset) const {
  auto it = std::upper_bound(segments_.begin(), segments_.end(), offset,
                             [](int64_t o, const std::unique_ptr<Segment>& s) { return o < s->base_offset; });
  if (it == segments_.begin()) return nullptr;
  return (it - 1)->get();
}

uint64_t PartitionLog::seek(const Segment& seg, int fd, int64_t offset) const {
  auto it = std::upper_bound(seg.offset_index.begin(), seg.offset_index.end(), offset,
                             [](int64_t o, const IndexEntry& e) { return o < e.key; });
  uint64_t pos = it == seg.offset_index.begin() ? 0 : (it - 1)->position;
  uint8_t hdr[bl::kHeaderSize];
  while (pos + bl::kHeaderSize <= seg.size) {
    if (!pread_all(fd, hdr, bl::kHeaderSize, pos)) break;
    int64_t base = load_be64(hdr + bl::kBaseOffset);
    int32_t len = load_be32(hdr + bl::kBatchLength);
    int32_t delta = load_be32(hdr + bl::kLastOffsetDelta);
    if (base + delta >= offset) return pos;
    pos += bl::kLogOverhead + static_cast<uint32_t>(len);
  }
  return seg.size;
}

Result<PartitionLog::ReadResult> PartitionLog::read(int64_t offset, size_t max_bytes,
                                                    bool allow_oversized_first) const {
  if (offset < log_start_offset() || offset > next_offset_) {
    return fail(ErrorCode::kOffsetOutOfRange,
                fmt::format("offset {} outside [{}, {}]", offset, log_start_offset(), next_offset_));
  }
  ReadResult out;
  const int64_t limit = high_watermark();
  if (offset >= limit) return out;
  const Segment* seg = segment_for(offset);
  if (seg == nullptr) return out;
  auto file = read_fd(*seg);
  if (!file) return std::unexpected(file.error());
  uint64_t pos = seek(*seg, file->fd, offset);
  size_t seg_index = 0;
  while (segments_[seg_index].get() != seg) ++seg_index;
  while (true) {
    uint64_t avail = seg->size - pos;
    size_t room = max_bytes > out.records.size() ? max_bytes - out.records.size() : 0;
    if (avail > 0) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(avail, room));
      if (out.records.empty() && want < bl::kLogOverhead)
        want = static_cast<size_t>(std::min<uint64_t>(avail, bl::kLogOverhead));
      size_t old = out.records.size();
      out.records.resize(old + want);
      if (!pread_all(file->fd, out.records.data() + old, want, pos)) {
        return fail(ErrorCode::kKafkaStorageError, fmt::format("read of {} failed", seg->path.string()));
      }
      // Keep whole batches only; the first batch is always returned whole.
      size_t p = old;
      bool at_limit = false;
      while (p + bl::kLogOverhead <= out.records.size()) {
        if (load_be64(out.records.data() + p + bl::kBaseOffset) >= limit) {
          at_limit = true;
          break;
        }
        size_t size = bl::kLogOverhead + static_cast<uint32_t>(load_be32(out.records.data() + p + bl::kBatchLength));
        if (p + size > out.records.size()) {
          if (p == 0 && allow_oversized_first) {
            out.records.resize(size);
            if (!pread_all(file->fd, out.records.data(), size, pos)) {
              return fail(ErrorCode::kKafkaStorageError, fmt::format("read of {} failed", seg->path.string()));
            }
            p = size;
          }
          break;
        }
        p += size;
      }
      bool cut = at_limit || p < out.records.size() || p - old < avail;
      out.records.resize(p);
      if (cut) break;  // max_bytes or the high watermark reached inside this segment
    }
    if (++seg_index >= segments_.size()) break;
    seg = segments_[seg_index].get();
    pos = 0;
    if (out.records.size() >= max_bytes) break;
    file = read_fd(*seg);
    if (!file) return std::unexpected(file.error());
  }
  return out;
}

Result<TimestampOffset> PartitionLog::offset_for_timestamp(int64_t ts) const {
  const int64_t limit = high_watermark();
  // Records DeleteRecords put below the log start are not found (as in Kafka).
  const int64_t start = log_start_offset();
  for (const auto& seg : segments_) {
    if (seg->max_timestamp < ts) continue;
    auto it = std::lower_bound(seg->time_index.begin(), seg->time_index.end(), ts,
                               [](const IndexEntry& e, int64_t t) { return e.key < t; });
    // Every batch before the entry found has max timestamp < ts; start at the
    // previous entry's position, which is at or before that boundary.
    uint64_t pos = it == seg->time_index.begin() ? 0 : (it - 1)->position;
    auto file = read_fd(*seg);
    if (!file) return std::unexpected(file.error());
    uint8_t hdr[bl::kHeaderSize];
    while (pos + bl::kHeaderSize <= seg->size) {
      if (!pread_all(file->fd, hdr, bl::kHeaderSize, pos)) {
        return fail(ErrorCode::kKafkaStorageError, fmt::format("read of {} failed", seg->path.string()));
      }
      const int64_t base = load_be64(hdr + bl::kBaseOffset);
      const uint64_t size = bl::kLogOverhead + static_cast<uint32_t>(load_be32(hdr + bl::kBatchLength));
      if (base >= limit) return TimestampOffset{};
      if (load_be64(hdr + bl::kMaxTimestamp) >= ts) {
        // The first record at or after ts is in this batch (its max timestamp
        // is some record's), unless a client's header lied about it.
        Bytes batch(size);
        if (!pread_all(file->fd, batch.data(), batch.size(), pos)) {
          return fail(ErrorCode::kKafkaStorageError, fmt::format("read of {} failed", seg->path.string()));
        }
        auto found = find_record_at_or_after(batch, ts, start);
        if (!found) {
          // Recovery only checks headers: a record that does not decode was
          // sent that way. Its batch's first offset is at or before the answer.
          spdlog::debug("{}: batch at offset {}: {}", dir_.string(), base, found.error().message);
          return TimestampOffset{load_be64(hdr + bl::kBaseTimestamp), std::max(base, start)};
        }
        if (const std::optional<TimestampOffset>& record = *found; record.has_value())
          return record->offset < limit ? *record : TimestampOffset{};
      }
      pos += size;
    }
  }
  return TimestampOffset{};
}

void PartitionLog::remove_oldest_segment() {
  Segment& oldest = *segments_.front();
  if (oldest.fd >= 0) ::close(oldest.fd);
  config_.files->forget(oldest.path);
  std::error_code ec;
  fs::remove(oldest.path, ec);
  segments_.erase(segments_.begin());
}

size_t PartitionLog::apply_retention(int64_t now) {
  size_t deleted = 0;
  while (segments_.size() > 1) {
    const Segment& oldest = *segments_.front();
    bool expired =
        config_.retention_ms >= 0 && std::max(oldest.max_timestamp, oldest.last_append_ms) < now - config_.retention_ms;
    bool too_big =
        config_.retention_bytes >= 0 && size_bytes() - oldest.size >= static_cast<uint64_t>(config_.retention_bytes);
    if (!expired && !too_big) break;
    spdlog::info("{}: retention deletes segment {} ({} bytes)", dir_.string(), oldest.base_offset, oldest.size);
    remove_oldest_segment();
    ++deleted;
  }
  if (deleted > 0) fsync_dir(dir_);
  return deleted;
}

}  // namespace starling::broker
