#include "services/broker/metadata_store.h"

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <charconv>
#include <optional>
#include <stdexcept>

#include "services/broker/wire.h"

namespace starling::broker {

namespace {

constexpr std::string_view kTopicPrefix = "t/";
constexpr std::string_view kOffsetPrefix = "o/";
constexpr std::string_view kProducerIdKey = "p/next_producer_id";

std::string offset_key(const MetadataStore::OffsetKey& k) {
  std::string s(kOffsetPrefix);
  s += std::get<0>(k);
  s.push_back('\0');
  s += std::get<1>(k);
  s.push_back('\0');
  s += std::to_string(std::get<2>(k));
  return s;
}

// Splits an offset key (after the prefix) into group, topic and partition.
// Topic names never hold a NUL (valid_topic_name), a group id may: the last
// two NULs are the separators.
std::optional<MetadataStore::OffsetKey> parse_offset_key(const std::string& key) {
  auto b = key.rfind('\0');
  if (b == std::string::npos || b == 0) return std::nullopt;
  auto a = key.rfind('\0', b - 1);
  if (a == std::string::npos) return std::nullopt;
  int32_t partition = 0;
  const char* first = key.data() + b + 1;
  const char* last = key.data() + key.size();
  auto [end, ec] = std::from_chars(first, last, partition);
  if (ec != std::errc() || end != last || first == last) return std::nullopt;
  return MetadataStore::OffsetKey{key.substr(0, a), key.substr(a + 1, b - a - 1), partition};
}

rocksdb::WriteOptions synced() {
  rocksdb::WriteOptions o;
  o.sync = true;
  return o;
}

}  // namespace

MetadataStore::MetadataStore(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  rocksdb::Options options;
  options.create_if_missing = true;
  // The store holds kilobytes; keep RocksDB's own footprint small.
  options.write_buffer_size = 4 << 20;
  options.max_open_files = 64;
  options.keep_log_file_num = 2;
  rocksdb::DB* db = nullptr;
  auto s = rocksdb::DB::Open(options, dir.string(), &db);
  if (!s.ok()) throw std::runtime_error(fmt::format("cannot open metadata store {}: {}", dir.string(), s.ToString()));
  db_.reset(db);
  std::string v;
  if (db_->Get(rocksdb::ReadOptions(), std::string(kProducerIdKey), &v).ok() && v.size() == 8) {
    next_producer_id_ = load_be64(reinterpret_cast<const uint8_t*>(v.data()));
  }
}

MetadataStore::~MetadataStore() = default;

// A topic's value: its partition count (i32), then, when it has configs,
// their count (i32) and each name and value (strings). Records written before
// topics had configs are the partition count alone.
std::map<std::string, StoredTopic> MetadataStore::load_topics() const {
  std::map<std::string, StoredTopic> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(std::string(kTopicPrefix)); it->Valid() && it->key().starts_with(kTopicPrefix); it->Next()) {
    auto key = it->key().ToString().substr(kTopicPrefix.size());
    auto value = it->value();
    Reader r(ByteView(reinterpret_cast<const uint8_t*>(value.data()), value.size()));
    StoredTopic t;
    t.partitions = r.i32();
    if (r.ok() && r.remaining() > 0) {
      int32_t n = r.array_len(4);
      for (int32_t i = 0; i < n && r.ok(); ++i) {
        std::string name = r.string();
        t.configs[name] = r.string();
      }
    }
    // A topic that cannot be read must not start as if it did not exist:
    // its log directory would be removed as an orphan.
    if (!r.ok() || r.remaining() != 0) throw std::runtime_error(fmt::format("topic record of '{}' is corrupt", key));
    out[key] = std::move(t);
  }
  return out;
}

Result<void> MetadataStore::put_topic(const std::string& name, const StoredTopic& topic) {
  Writer w;
  w.i32(topic.partitions);
  if (!topic.configs.empty()) {
    w.array_len(topic.configs.size());
    for (const auto& [k, v] : topic.configs) {
      w.string(k);
      w.string(v);
    }
  }
  auto s = db_->Put(synced(), std::string(kTopicPrefix) + name,
                    rocksdb::Slice(reinterpret_cast<const char*>(w.buffer().data()), w.size()));
  if (!s.ok()) return fail(ErrorCode::kKafkaStorageError, s.ToString());
  return {};
}

Result<void> MetadataStore::delete_topic(const std::string& name) {
  rocksdb::WriteBatch batch;
  batch.Delete(std::string(kTopicPrefix) + name);
  auto s = db_->Write(synced(), &batch);
  if (!s.ok()) return fail(ErrorCode::kKafkaStorageError, s.ToString());
  return {};
}

std::map<MetadataStore::OffsetKey, CommittedOffset> MetadataStore::load_offsets() const {
  std::map<OffsetKey, CommittedOffset> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(std::string(kOffsetPrefix)); it->Valid() && it->key().starts_with(kOffsetPrefix); it->Next()) {
    auto key = parse_offset_key(it->key().ToString().substr(kOffsetPrefix.size()));
    if (!key) continue;
    auto value = it->value();
    Reader r(ByteView(reinterpret_cast<const uint8_t*>(value.data()), value.size()));
    CommittedOffset c;
    c.offset = r.i64();
    c.leader_epoch = r.i32();
    c.metadata = r.nullable_string();
    if (!r.ok()) continue;
    out[*key] = std::move(c);
  }
  return out;
}

Result<void> MetadataStore::put_offsets(const std::map<OffsetKey, CommittedOffset>& offsets) {
  rocksdb::WriteBatch batch;
  for (const auto& [k, c] : offsets) {
    Writer w;
    w.i64(c.offset);
    w.i32(c.leader_epoch);
    w.nullable_string(c.metadata);
    batch.Put(offset_key(k), rocksdb::Slice(reinterpret_cast<const char*>(w.buffer().data()), w.size()));
  }
  auto s = db_->Write(synced(), &batch);
  if (!s.ok()) return fail(ErrorCode::kKafkaStorageError, s.ToString());
  return {};
}

Result<size_t> MetadataStore::delete_group_offsets(const std::string& group) {
  // The prefix o/<group>\0 also covers groups whose id continues with a NUL,
  // so each key is parsed and only this group's are deleted.
  std::string prefix(kOffsetPrefix);
  prefix += group;
  prefix.push_back('\0');
  rocksdb::WriteBatch batch;
  size_t n = 0;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    auto key = parse_offset_key(it->key().ToString().substr(kOffsetPrefix.size()));
    if (!key || std::get<0>(*key) != group) continue;
    batch.Delete(it->key());
    ++n;
  }
  if (!it->status().ok()) return fail(ErrorCode::kKafkaStorageError, it->status().ToString());
  if (n == 0) return n;
  auto s = db_->Write(synced(), &batch);
  if (!s.ok()) return fail(ErrorCode::kKafkaStorageError, s.ToString());
  return n;
}

Result<int64_t> MetadataStore::next_producer_id() {
  int64_t id = next_producer_id_;
  Writer w;
  w.i64(id + 1);
  auto s = db_->Put(synced(), std::string(kProducerIdKey),
                    rocksdb::Slice(reinterpret_cast<const char*>(w.buffer().data()), w.size()));
  if (!s.ok()) return fail(ErrorCode::kKafkaStorageError, s.ToString());
  next_producer_id_ = id + 1;
  return id;
}

}  // namespace starling::broker
