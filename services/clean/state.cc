#include "services/clean/state.h"

#include <fmt/format.h>
#include <rocksdb/cache.h>
#include <rocksdb/compaction_filter.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <utility>

#include "services/common/ids.h"

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

// kind + be32(partition) + id: every key but the offsets'.
std::string key(char kind, int32_t partition, std::string_view id = {}) {
  std::string k;
  k.reserve(5 + id.size());
  return k.append(1, kind).append(be(static_cast<uint32_t>(partition), 4)).append(id);
}
int32_t partition_of(std::string_view key) { return static_cast<int32_t>(from_be(key.substr(1, 4))); }

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
uint64_t event_fingerprint(const std::string& saga_id, uint32_t seq) {
  StableHash h;
  h.add(saga_id).add_byte(0);
  for (int i = 0; i < 4; ++i) h.add_byte(static_cast<unsigned char>(seq >> (8 * i)));
  return h.value() == 0 ? 1 : h.value();  // 0 means "no fingerprint stored"
}

std::optional<FirstSeen> MemoryCleanState::seen(int32_t partition, const std::string& event_id) {
  auto it = seen_.find({partition, event_id});
  return it == seen_.end() ? std::nullopt : std::optional<FirstSeen>(it->second);
}
void MemoryCleanState::put_seen(int32_t partition, const std::string& event_id, FirstSeen first) {
  seen_[{partition, event_id}] = first;
}

// The committed watermark per partition (read at open, set by
// finish_commit), and the compaction filter that drops "e" entries beyond
// their partition's dedupe horizon against it. A removed key becomes a
// tombstone, so no older version of it resurfaces. Also drops "t" keys: the
// expiry index stores before this filter kept.
class RocksCleanStore::Expiry final : public rocksdb::CompactionFilter {
 public:
  explicit Expiry(int64_t window_ms) : window_ms_(window_ms) {}
  void set_watermark(int32_t partition, int64_t watermark) {
    std::lock_guard lock(mu_);
    watermarks_[partition] = watermark;
  }
  std::optional<int64_t> watermark(int32_t partition) const {
    std::lock_guard lock(mu_);
    auto it = watermarks_.find(partition);
    return it == watermarks_.end() ? std::nullopt : std::optional<int64_t>(it->second);
  }
  bool Filter(int /*level*/, const rocksdb::Slice& key, const rocksdb::Slice& value, std::string* /*new_value*/,
              bool* /*value_changed*/) const override {
    if (key.starts_with("t")) return true;
    if (window_ms_ <= 0 || !key.starts_with("e") || key.size() < 5 || value.size() < 8) return false;
    const auto w = watermark(partition_of(std::string_view(key.data(), key.size())));
    return w && from_time_key(std::string_view(value.data(), 8)) < *w - window_ms_;
  }
  const char* Name() const override { return "starling.clean.DedupeExpiry"; }

 private:
  int64_t window_ms_;
  mutable std::mutex mu_;
  std::map<int32_t, int64_t> watermarks_;
};

rocksdb::Options store_options() {
  rocksdb::Options opts;
  opts.create_if_missing = true;
  // Most dedupe lookups are for ids never seen: answer those from bloom
  // filters instead of searching the memtable and the tables.
  opts.memtable_prefix_bloom_size_ratio = 0.1;
  opts.memtable_whole_key_filtering = true;
  // Within the service's memory budget (64 MB): two memtables of 16 MiB
  // (RocksDB's default is 64 MiB each) and an 8 MiB block cache.
  opts.write_buffer_size = 16 << 20;
  opts.max_write_buffer_number = 2;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(8 << 20);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  opts.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return opts;
}

RocksCleanStore::RocksCleanStore(const std::string& path, int64_t dedupe_window_ms)
    : window_ms_(dedupe_window_ms), expiry_(std::make_unique<Expiry>(dedupe_window_ms)) {
  auto opts = store_options();
  opts.compaction_filter = expiry_.get();
  rocksdb::DB* db = nullptr;
  const auto st = rocksdb::DB::Open(opts, path, &db);
  if (!st.ok()) throw std::runtime_error(fmt::format("clean state {}: {}", path, st.ToString()));
  db_.reset(db);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}));
  for (it->Seek("w"); it->Valid() && it->key().starts_with("w"); it->Next()) {
    STARLING_ASSERT(it->key().size() == 5 && it->value().size() == 8, "malformed watermark in clean state");
    expiry_->set_watermark(partition_of(std::string_view(it->key().data(), it->key().size())),
                           from_time_key(std::string_view(it->value().data(), 8)));
  }
}

RocksCleanStore::~RocksCleanStore() = default;

std::optional<std::string> RocksCleanStore::db_get(const std::string& key) {
  std::string value;
  const auto st = db_->Get({}, key, &value);
  if (st.IsNotFound()) return std::nullopt;
  // Local state we cannot read: crash loudly; the supervisor restarts us.
  STARLING_ASSERT(st.ok(), "reading clean state: {}", st.ToString());
  return value;
}

std::size_t RocksCleanStore::stripe_of(int32_t partition) {
  // Fibonacci hashing: live partitions 0..15 land in distinct stripes, and
  // replay partitions (cleaner.h) spread too.
  static_assert(kStripes == 16, "stripe_of keeps the top 4 bits");
  return (static_cast<uint32_t>(partition) * 2654435769u) >> 28;
}

void RocksCleanStore::seal() { sealed_.push_back(std::exchange(open_, Layer{})); }

std::size_t RocksCleanStore::staged_layers() const {
  const bool open_holds =
      std::any_of(open_.stripes.begin(), open_.stripes.end(), [](const Stripe& s) { return !s.empty(); });
  return sealed_.size() + (open_holds ? 1 : 0);
}

DeviceMemory RocksCleanStore::device(int32_t partition, const std::string& device_id) {
  const auto k = key('v', partition, device_id);
  const auto s = stripe_of(partition);
  {
    std::lock_guard lock(mu_[s].mu);
    if (auto it = open_.stripes[s].devices.find(k); it != open_.stripes[s].devices.end()) return it->second;
    for (auto l = sealed_.rbegin(); l != sealed_.rend(); ++l) {
      if (auto it = l->stripes[s].devices.find(k); it != l->stripes[s].devices.end()) return it->second;
    }
    if (auto it = devices_[s].find(k); it != devices_[s].end()) return it->second;
  }
  // Read without the lock: only this partition's cleaner stages this key,
  // and it is waiting for this answer.
  auto v = db_get(k);
  auto memory = v ? decode_memory(*v) : DeviceMemory{};
  std::lock_guard lock(mu_[s].mu);
  devices_[s].emplace(k, memory);
  return memory;
}

void RocksCleanStore::put_device(int32_t partition, const std::string& device_id, const DeviceMemory& memory) {
  auto k = key('v', partition, device_id);
  const auto s = stripe_of(partition);
  std::lock_guard lock(mu_[s].mu);
  open_.stripes[s].devices[std::move(k)] = memory;
}

std::optional<int64_t> RocksCleanStore::committed_watermark(int32_t partition) const {
  return expiry_->watermark(partition);
}

namespace {

// An "e" value: be64 time key, then (since fingerprints) be64 fingerprint.
FirstSeen decode_seen(std::string_view v) {
  FirstSeen out;
  out.ingest_time_ms = from_time_key(v.substr(0, 8));
  if (v.size() >= 16) out.fingerprint = from_be(v.substr(8, 8));
  return out;
}

}  // namespace

std::optional<FirstSeen> RocksCleanStore::seen(int32_t partition, const std::string& event_id) {
  const auto k = key('e', partition, event_id);
  const auto s = stripe_of(partition);
  std::optional<FirstSeen> first;
  {
    std::lock_guard lock(mu_[s].mu);
    if (auto it = open_.stripes[s].seen.find(k); it != open_.stripes[s].seen.end()) first = it->second;
    for (auto l = sealed_.rbegin(); l != sealed_.rend() && !first; ++l) {
      if (auto it = l->stripes[s].seen.find(k); it != l->stripes[s].seen.end()) first = it->second;
    }
  }
  if (!first) {
    // Without the lock, as in device().
    auto v = db_get(k);
    if (!v) return std::nullopt;
    first = decode_seen(*v);
  }
  if (window_ms_ <= 0) return first;
  // Beyond the horizon, whether compaction has dropped it yet or not.
  std::optional<int64_t> watermark = committed_watermark(partition);
  auto raise = [&](const Stripe& st) {
    if (auto it = st.watermarks.find(partition); it != st.watermarks.end()) {
      watermark = watermark ? std::max(*watermark, it->second) : it->second;
    }
  };
  {
    std::lock_guard lock(mu_[s].mu);
    for (const auto& l : sealed_) raise(l.stripes[s]);
    raise(open_.stripes[s]);
  }
  if (watermark && first->ingest_time_ms < *watermark - window_ms_) return std::nullopt;
  return first;
}

void RocksCleanStore::put_seen(int32_t partition, const std::string& event_id, FirstSeen first) {
  auto k = key('e', partition, event_id);
  const auto s = stripe_of(partition);
  std::lock_guard lock(mu_[s].mu);
  auto& stripe = open_.stripes[s];
  auto [w, fresh] = stripe.watermarks.try_emplace(partition, first.ingest_time_ms);
  if (!fresh) w->second = std::max(w->second, first.ingest_time_ms);
  stripe.seen.insert_or_assign(std::move(k), first);
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

RocksCleanStore::PreparedCommit::PreparedCommit() = default;
RocksCleanStore::PreparedCommit::PreparedCommit(PreparedCommit&&) noexcept = default;
RocksCleanStore::PreparedCommit& RocksCleanStore::PreparedCommit::operator=(PreparedCommit&&) noexcept = default;
RocksCleanStore::PreparedCommit::~PreparedCommit() = default;

RocksCleanStore::PreparedCommit RocksCleanStore::prepare_commit(
    const std::map<kafka::TopicPartition, int64_t>& next_offsets) {
  // The oldest layer only: later layers belong to batches after these
  // offsets. Committing what was never sealed seals it first.
  if (sealed_.empty()) seal();
  PreparedCommit c;
  const Layer& layer = sealed_.front();
  // Every key is written once, in key order: the memtable's skiplist inserts
  // sorted keys much faster than scattered ones.
  std::size_t n = next_offsets.size();
  for (const auto& st : layer.stripes) n += st.devices.size() + st.seen.size() + st.watermarks.size();
  std::vector<std::pair<std::string_view, std::string>> ops;
  ops.reserve(n);
  std::vector<std::string> other_keys;  // "w" and "o" keys, kept alive for the views
  other_keys.reserve(n);
  for (const auto& st : layer.stripes) {
    for (const auto& [k, memory] : st.devices) ops.emplace_back(k, encode_memory(memory));
    for (const auto& [k, first] : st.seen)
      ops.emplace_back(k, time_key(first.ingest_time_ms) + be(first.fingerprint, 8));
    for (const auto& [p, staged] : st.watermarks) {
      const auto stored = committed_watermark(p);
      const auto w = c.watermarks[p] = stored ? std::max(staged, *stored) : staged;
      ops.emplace_back(other_keys.emplace_back(key('w', p)), time_key(w));
    }
  }
  for (const auto& [tp, next] : next_offsets) {
    ops.emplace_back(other_keys.emplace_back("o" + tp.topic + '\0' + be(static_cast<uint32_t>(tp.partition), 4)),
                     be(static_cast<uint64_t>(next), 8));
  }
  std::sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  c.batch = std::make_unique<rocksdb::WriteBatch>();
  for (const auto& [k, value] : ops) (void)c.batch->Put(rocksdb::Slice(k.data(), k.size()), value);
  return c;
}

Status RocksCleanStore::write(PreparedCommit& c) {
  // No fsync: a process crash loses nothing the OS has, and a power loss can
  // only lose whole WriteBatches from the tail, state and offsets together.
  const auto st = db_->Write({}, c.batch.get());
  if (!st.ok()) return fail(Errc::kIo, "writing clean state: " + st.ToString());
  return {};
}

void RocksCleanStore::finish_commit(PreparedCommit& c) {
  for (const auto& [p, w] : c.watermarks) expiry_->set_watermark(p, w);
  auto& layer = sealed_.front();
  for (std::size_t s = 0; s < kStripes; ++s) {
    for (auto& [k, memory] : layer.stripes[s].devices) devices_[s][k] = std::move(memory);
  }
  sealed_.pop_front();
}

Status RocksCleanStore::commit(const std::map<kafka::TopicPartition, int64_t>& next_offsets) {
  auto c = prepare_commit(next_offsets);
  if (auto st = write(c); !st) return st;
  finish_commit(c);
  return {};
}

void RocksCleanStore::rollback() {
  sealed_.clear();
  open_ = Layer{};
}

std::map<std::string, std::string> RocksCleanStore::dump() {
  rocksdb::CompactRangeOptions all;
  all.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  const auto st = db_->CompactRange(all, nullptr, nullptr);
  STARLING_ASSERT(st.ok(), "compacting clean state: {}", st.ToString());
  std::map<std::string, std::string> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}));
  for (it->SeekToFirst(); it->Valid(); it->Next()) out[it->key().ToString()] = it->value().ToString();
  return out;
}

}  // namespace starling::clean
