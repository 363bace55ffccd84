#include "services/clean/state.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

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

RocksCleanStore::RocksCleanStore(const std::string& path, int64_t dedupe_window_ms) : window_ms_(dedupe_window_ms) {
  rocksdb::Options opts;
  opts.create_if_missing = true;
  // Most dedupe lookups are for ids never seen: answer those from bloom
  // filters instead of searching the memtable and the tables.
  opts.memtable_prefix_bloom_size_ratio = 0.1;
  opts.memtable_whole_key_filtering = true;
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  opts.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  rocksdb::DB* db = nullptr;
  const auto st = rocksdb::DB::Open(opts, path, &db);
  if (!st.ok()) throw std::runtime_error(fmt::format("clean state {}: {}", path, st.ToString()));
  db_.reset(db);
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

RocksCleanStore::Layer& RocksCleanStore::open_layer() {
  if (!open_) {
    layers_.emplace_back();
    open_ = true;
  }
  return layers_.back();
}

void RocksCleanStore::seal() {
  open_layer();
  open_ = false;
}

DeviceMemory RocksCleanStore::device(int32_t partition, const std::string& device_id) {
  const auto key = part('v', partition) + device_id;
  for (auto l = layers_.rbegin(); l != layers_.rend(); ++l) {
    if (auto it = l->devices.find(key); it != l->devices.end()) return it->second;
  }
  auto it = devices_.find(key);
  if (it == devices_.end()) {
    auto v = db_get(key);
    it = devices_.emplace(key, v ? decode_memory(*v) : DeviceMemory{}).first;
  }
  return it->second;
}

void RocksCleanStore::put_device(int32_t partition, const std::string& device_id, const DeviceMemory& memory) {
  open_layer().devices[part('v', partition) + device_id] = memory;
}

std::optional<std::string> RocksCleanStore::committed_seen(const std::string& ekey) {
  if (ekey != memo_key_) {
    memo_key_ = ekey;
    memo_value_ = db_get(ekey);
  }
  return memo_value_;
}

std::optional<int64_t> RocksCleanStore::committed_watermark(int32_t partition) {
  auto w = watermarks_.find(partition);
  if (w == watermarks_.end()) {
    auto stored = db_get(part('w', partition));
    w = watermarks_.emplace(partition, stored ? std::optional<int64_t>(from_time_key(*stored)) : std::nullopt).first;
  }
  return w->second;
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
  const auto key = part('e', partition) + event_id;
  std::optional<FirstSeen> first;
  for (auto l = layers_.rbegin(); l != layers_.rend() && !first; ++l) {
    if (auto it = l->seen.find(key); it != l->seen.end()) first = decode_seen(it->second);
  }
  if (!first) {
    auto v = committed_seen(key);
    if (!v) return std::nullopt;
    first = decode_seen(*v);
  }
  if (window_ms_ <= 0) return first;
  // Beyond the horizon, whether commit() has expired it yet or not.
  std::optional<int64_t> watermark = committed_watermark(partition);
  for (const auto& l : layers_) {
    if (auto it = l.parts.find(partition); it != l.parts.end()) {
      watermark = watermark ? std::max(*watermark, it->second.watermark) : it->second.watermark;
    }
  }
  if (watermark && first->ingest_time_ms < *watermark - window_ms_) return std::nullopt;
  return first;
}

void RocksCleanStore::put_seen(int32_t partition, const std::string& event_id, FirstSeen first) {
  const int64_t ingest_time_ms = first.ingest_time_ms;
  const auto key = part('e', partition) + event_id;
  std::optional<std::string> old;
  for (auto l = layers_.rbegin(); l != layers_.rend() && !old; ++l) {
    if (auto it = l->seen.find(key); it != l->seen.end()) old = it->second;
  }
  if (!old) old = committed_seen(key);
  auto& layer = open_layer();
  auto [staged, fresh] = layer.parts.try_emplace(partition);
  auto& st = staged->second;
  st.watermark = fresh ? ingest_time_ms : std::max(st.watermark, ingest_time_ms);
  if (old) st.t[old->substr(0, 8) + event_id] = false;
  const auto t = time_key(ingest_time_ms);
  layer.seen[key] = t + be(first.fingerprint, 8);
  st.t[t + event_id] = true;
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
  // The oldest layer only: later layers belong to batches after these offsets.
  static const Layer kNothingStaged;
  const Layer& layer = layers_.empty() ? kNothingStaged : layers_.front();
  // Built afresh from the staged changes on every attempt, so a failed write
  // leaves them as they were for the retry. Later writes of a key win. The
  // batch is written in key order (nullopt: delete): the memtable's skiplist
  // inserts sorted keys much faster than scattered ones.
  // Appended in order, sorted stably and the last write of each key kept
  // (cheaper than a std::map of every key).
  std::vector<std::pair<std::string, std::optional<std::string>>> ops;
  ops.reserve(layer.devices.size() + 3 * layer.seen.size() + 8);
  auto op = [&ops](std::string key, std::optional<std::string> value) { ops.emplace_back(std::move(key), std::move(value)); };
  for (const auto& [key, memory] : layer.devices) op(key, encode_memory(memory));
  for (const auto& [key, t] : layer.seen) op(key, t);
  std::map<int32_t, std::pair<int64_t, std::string>> done;  // partition → watermark, expired below
  for (const auto& [p, st] : layer.parts) {
    const auto tprefix = part('t', p);
    for (const auto& [suffix, put] : st.t) {
      op(tprefix + suffix, put ? std::optional<std::string>("") : std::nullopt);
    }
    // The watermark: the highest ingest time ever put in this partition.
    const auto stored = committed_watermark(p);
    const int64_t watermark = stored ? std::max(st.watermark, *stored) : st.watermark;
    op(part('w', p), time_key(watermark));
    if (window_ms_ <= 0) continue;
    // Event ids seen before the watermark minus the window can no longer be
    // duplicates (seen() says so too); drop them to bound space. The expiry
    // index as of this batch: the stored keys from where the last expiry
    // stopped, overlaid with this batch's changes (not later layers').
    const auto end = tprefix + time_key(watermark - window_ms_);
    std::vector<std::string> old;  // suffixes (be64 ms + event id) below `end`
    {
      auto from = expired_below_.find(p);
      const std::string start = from != expired_below_.end() ? std::max(from->second, tprefix) : tprefix;
      rocksdb::ReadOptions ro;
      const rocksdb::Slice upper(end);
      ro.iterate_upper_bound = &upper;
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
      for (it->Seek(start); it->Valid(); it->Next()) {
        auto suffix = it->key().ToString().substr(tprefix.size());
        if (!st.t.contains(suffix)) old.push_back(std::move(suffix));
      }
      const auto staged_end = std::string_view(end).substr(tprefix.size());
      for (const auto& [suffix, put] : st.t) {
        if (std::string_view(suffix) >= staged_end) break;
        if (put) old.push_back(suffix);
      }
    }
    // An id seen again is re-put with its old "t" entry deleted (put_seen),
    // so every "t" entry names its id's current "e" value: both go.
    const auto eprefix = part('e', p);
    for (const auto& suffix : old) {
      op(eprefix + suffix.substr(8), std::nullopt);
      op(tprefix + suffix, std::nullopt);
    }
    done[p] = {watermark, end};
  }
  for (const auto& [tp, next] : next_offsets) {
    op("o" + tp.topic + '\0' + be(static_cast<uint32_t>(tp.partition), 4), be(static_cast<uint64_t>(next), 8));
  }
  std::stable_sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  rocksdb::WriteBatch wb;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    if (i + 1 < ops.size() && ops[i + 1].first == ops[i].first) continue;  // a later write of the key wins
    const auto& [key, value] = ops[i];
    if (value) {
      (void)wb.Put(key, *value);
    } else {
      (void)wb.Delete(key);
    }
  }
  // No fsync: a process crash loses nothing the OS has, and a power loss can
  // only lose whole WriteBatches from the tail, state and offsets together.
  const auto st = db_->Write({}, &wb);
  if (!st.ok()) return fail(Errc::io, "writing clean state: " + st.ToString());
  // Written: the caches take the layer's changes, and the layer goes.
  memo_key_.clear();
  memo_value_.reset();
  if (layers_.empty()) return {};
  for (auto& [key, memory] : layers_.front().devices) devices_[key] = std::move(memory);
  for (const auto& [p, we] : done) {
    watermarks_[p] = we.first;
    if (window_ms_ > 0) expired_below_[p] = we.second;
  }
  layers_.pop_front();
  if (layers_.empty()) open_ = false;
  return {};
}

void RocksCleanStore::rollback() {
  layers_.clear();
  open_ = false;
  memo_key_.clear();
  memo_value_.reset();
}

std::map<std::string, std::string> RocksCleanStore::dump() {
  std::map<std::string, std::string> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}));
  for (it->SeekToFirst(); it->Valid(); it->Next()) out[it->key().ToString()] = it->value().ToString();
  return out;
}

}  // namespace starling::clean
