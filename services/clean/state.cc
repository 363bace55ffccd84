#include "services/clean/state.h"

#include <stdexcept>

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/utilities/write_batch_with_index.h>

namespace starling::clean {
namespace {

std::string be(uint64_t v, int bytes) {
  std::string s(static_cast<std::size_t>(bytes), '\0');
  for (int i = bytes - 1; i >= 0; --i, v >>= 8) s[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
  return s;
}

uint64_t from_be(std::string_view s) {
  uint64_t v = 0;
  for (const char c : s) v = (v << 8) | static_cast<unsigned char>(c);
  return v;
}

std::string part(char kind, int32_t partition) { return std::string(1, kind) + be(static_cast<uint32_t>(partition), 4); }

// Times as be64 of the value offset by 2^63, so negative times sort first.
std::string time_key(int64_t ms) { return be(static_cast<uint64_t>(ms) ^ (1ULL << 63), 8); }
int64_t from_time_key(std::string_view s) { return static_cast<int64_t>(from_be(s) ^ (1ULL << 63)); }

}  // namespace

std::string encode_memory(const DeviceMemory& memory) {
  std::string out;
  for (const auto& [field, v] : memory) {
    out += be(static_cast<uint32_t>(field), 4) + time_key(v.event_time_ms) + be(v.value.size(), 4) + v.value;
  }
  return out;
}

DeviceMemory decode_memory(const std::string& bytes) {
  DeviceMemory out;
  std::string_view s(bytes);
  while (s.size() >= 16) {
    const int field = static_cast<int>(from_be(s.substr(0, 4)));
    const int64_t t = from_time_key(s.substr(4, 8));
    const auto len = from_be(s.substr(12, 4));
    STARLING_ASSERT(s.size() >= 16 + len, "stored device memory is truncated");
    out[field] = KnownValue{t, std::string(s.substr(16, len))};
    s.remove_prefix(16 + len);
  }
  STARLING_ASSERT(s.empty(), "stored device memory has {} stray bytes", s.size());
  return out;
}

DeviceMemory MemoryCleanState::device(int32_t partition, const std::string& device_id) {
  auto it = devices_.find({partition, device_id});
  return it == devices_.end() ? DeviceMemory{} : it->second;
}
void MemoryCleanState::put_device(int32_t partition, const std::string& device_id, const DeviceMemory& memory) {
  devices_[{partition, device_id}] = memory;
}
std::optional<int64_t> MemoryCleanState::seen(int32_t partition, const std::string& event_id) {
  auto it = seen_.find({partition, event_id});
  return it == seen_.end() ? std::nullopt : std::optional<int64_t>(it->second);
}
void MemoryCleanState::put_seen(int32_t partition, const std::string& event_id, int64_t ingest_time_ms) {
  seen_[{partition, event_id}] = ingest_time_ms;
}

RocksCleanStore::RocksCleanStore(const std::string& path, int64_t dedupe_window_ms)
    : window_ms_(dedupe_window_ms),
      staged_(std::make_unique<rocksdb::WriteBatchWithIndex>(rocksdb::BytewiseComparator(), 0, /*overwrite_key=*/true)) {
  rocksdb::Options opts;
  opts.create_if_missing = true;
  rocksdb::DB* db = nullptr;
  const auto st = rocksdb::DB::Open(opts, path, &db);
  if (!st.ok()) throw std::runtime_error(fmt::format("clean state {}: {}", path, st.ToString()));
  db_.reset(db);
}

RocksCleanStore::~RocksCleanStore() = default;

std::optional<std::string> RocksCleanStore::get(const std::string& key) {
  std::string value;
  const auto st = staged_->GetFromBatchAndDB(db_.get(), {}, key, &value);
  if (st.IsNotFound()) return std::nullopt;
  // Local state we cannot read: crash loudly; the supervisor restarts us.
  STARLING_ASSERT(st.ok(), "reading clean state: {}", st.ToString());
  return value;
}

DeviceMemory RocksCleanStore::device(int32_t partition, const std::string& device_id) {
  auto v = get(part('v', partition) + device_id);
  return v ? decode_memory(*v) : DeviceMemory{};
}

void RocksCleanStore::put_device(int32_t partition, const std::string& device_id, const DeviceMemory& memory) {
  (void)staged_->Put(part('v', partition) + device_id, encode_memory(memory));
}

std::optional<int64_t> RocksCleanStore::seen(int32_t partition, const std::string& event_id) {
  auto v = get(part('e', partition) + event_id);
  if (!v) return std::nullopt;
  return from_time_key(*v);
}

void RocksCleanStore::put_seen(int32_t partition, const std::string& event_id, int64_t ingest_time_ms) {
  const auto key = part('e', partition) + event_id;
  if (auto old = get(key)) (void)staged_->Delete(part('t', partition) + *old + event_id);
  (void)staged_->Put(key, time_key(ingest_time_ms));
  (void)staged_->Put(part('t', partition) + time_key(ingest_time_ms) + event_id, "");
  auto [it, fresh] = staged_watermarks_.try_emplace(partition, ingest_time_ms);
  if (!fresh) it->second = std::max(it->second, ingest_time_ms);
}

void RocksCleanStore::expire(int32_t partition) {
  const auto wkey = part('w', partition);
  int64_t watermark = staged_watermarks_.at(partition);
  if (auto stored = get(wkey)) watermark = std::max(watermark, from_time_key(*stored));
  (void)staged_->Put(wkey, time_key(watermark));
  if (window_ms_ <= 0) return;
  // Event ids seen before the watermark minus the window can no longer be
  // duplicates (seen() callers compare times too); drop them to bound space.
  const auto prefix = part('t', partition);
  const auto end = prefix + time_key(watermark - window_ms_);
  std::vector<std::pair<std::string, std::string>> old;  // t key, event id
  {
    std::unique_ptr<rocksdb::Iterator> it(staged_->NewIteratorWithBase(db_->NewIterator({})));
    for (it->Seek(prefix); it->Valid() && it->key().compare(end) < 0; it->Next()) {
      const auto k = it->key().ToString();
      old.emplace_back(k, k.substr(prefix.size() + 8));
    }
  }
  for (const auto& [tkey, event_id] : old) {
    const auto ekey = part('e', partition) + event_id;
    // The id may have been seen again since (a newer "t" entry): keep that.
    if (auto v = get(ekey); v && *v == tkey.substr(prefix.size(), 8)) (void)staged_->Delete(ekey);
    (void)staged_->Delete(tkey);
  }
}

std::map<kafka::TopicPartition, int64_t> RocksCleanStore::offsets() {
  std::map<kafka::TopicPartition, int64_t> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}));
  for (it->Seek("o"); it->Valid() && it->key().starts_with("o"); it->Next()) {
    const auto k = it->key().ToString();
    const auto nul = k.find('\0', 1);
    STARLING_ASSERT(nul != std::string::npos && k.size() == nul + 5, "malformed offset key in clean state");
    out[{k.substr(1, nul - 1), static_cast<int32_t>(from_be(std::string_view(k).substr(nul + 1)))}] =
        static_cast<int64_t>(from_be(it->value().ToString()));
  }
  return out;
}

Status RocksCleanStore::commit(const std::map<kafka::TopicPartition, int64_t>& next_offsets) {
  for (const auto& [p, _] : staged_watermarks_) expire(p);
  for (const auto& [tp, next] : next_offsets) {
    (void)staged_->Put("o" + tp.topic + '\0' + be(static_cast<uint32_t>(tp.partition), 4), be(static_cast<uint64_t>(next), 8));
  }
  // No fsync: a process crash loses nothing the OS has, and a power loss can
  // only lose whole WriteBatches from the tail, state and offsets together.
  const auto st = db_->Write({}, staged_->GetWriteBatch());
  if (!st.ok()) return fail(Errc::io, "writing clean state: " + st.ToString());
  rollback();
  return {};
}

void RocksCleanStore::rollback() {
  staged_->Clear();
  staged_watermarks_.clear();
}

std::map<std::string, std::string> RocksCleanStore::dump() {
  std::map<std::string, std::string> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}));
  for (it->SeekToFirst(); it->Valid(); it->Next()) out[it->key().ToString()] = it->value().ToString();
  return out;
}

}  // namespace starling::clean
