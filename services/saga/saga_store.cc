#include "services/saga/saga_store.h"

#include <fmt/format.h>
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/statistics.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "services/saga/saga_state.h"

namespace starling::saga {
namespace {

constexpr std::size_t kWriteBuffers = 24 << 20;  // all memtables together
constexpr std::size_t kBlockCache = 8 << 20;

enum Cf { kDefault = 0, kSagas = 1, kOffsets = 2, kOutbox = 3, kDeadlines = 4, kAggregates = 5, kListing = 6 };

std::string be64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 7; i >= 0; --i, v >>= 8) s[i] = static_cast<char>(v & 0xff);
  return s;
}

uint64_t from_be64(const rocksdb::Slice& s) {
  uint64_t v = 0;
  for (std::size_t i = 0; i < 8 && i < s.size(); ++i) v = (v << 8) | static_cast<unsigned char>(s[i]);
  return v;
}

// Offsets are keyed "topic\0partition" so topics with any name stay apart.
std::string offset_key(const kafka::TopicPartition& tp) { return tp.topic + '\0' + std::to_string(tp.partition); }

// Big-endian deadline first: the index iterates in deadline order.
std::string deadline_key(int64_t deadline_ms, const std::string& saga_id) {
  return be64(static_cast<uint64_t>(deadline_ms)) + saga_id;
}

std::string aggregate_key(const std::string& pipeline, int64_t hour_ms) {
  return pipeline + '\0' + be64(static_cast<uint64_t>(hour_ms));
}

// The listing index: pipeline \0, a state byte (0: the any-state list), the
// creation time inverted (newest first), the saga id.
std::string listing_prefix(const std::string& pipeline, int state) {
  std::string k = pipeline;
  k += '\0';
  k += static_cast<char>(state);
  return k;
}

std::string listing_key(const std::string& pipeline, int state, int64_t created_ms, const std::string& saga_id) {
  return listing_prefix(pipeline, state) + be64(~static_cast<uint64_t>(created_ms)) + saga_id;
}

Error io_error(const rocksdb::Status& s) { return Error{Errc::kIo, s.ToString()}; }

// A commit's writes to the column families keyed by saga id, gathered and
// then added to the WriteBatch in key order: RocksDB's memtable skiplist
// inserts keys in order far faster than scattered ones (each insert starts
// from where the last one ended), and saga ids are random. The sort is
// stable, so writes to one key keep their order.
class SortedWrites {
 public:
  void put(Cf cf, std::string key, std::string value) { ops_.push_back({cf, std::move(key), std::move(value), false}); }
  void del(Cf cf, std::string key) { ops_.push_back({cf, std::move(key), {}, true}); }
  void add_to(rocksdb::WriteBatch& batch, const std::vector<rocksdb::ColumnFamilyHandle*>& handles) {
    std::stable_sort(ops_.begin(), ops_.end(),
                     [](const Op& a, const Op& b) { return a.cf != b.cf ? a.cf < b.cf : a.key < b.key; });
    for (const auto& op : ops_) {
      if (op.del) {
        batch.Delete(handles[op.cf], op.key);
      } else {
        batch.Put(handles[op.cf], op.key, op.value);
      }
    }
  }

 private:
  struct Op {
    Cf cf;
    std::string key;
    std::string value;
    bool del;
  };
  std::vector<Op> ops_;
};

// A saga's two listing entries: the any-state list's and its state's.
void put_listing(SortedWrites& w, const v1::SagaRecord& r) {
  w.put(kListing, listing_key(r.pipeline(), 0, r.created_ms(), r.saga_id()), "");
  w.put(kListing, listing_key(r.pipeline(), r.state(), r.created_ms(), r.saga_id()), "");
}

void delete_listing(SortedWrites& w, const std::string& pipeline, v1::SagaState state, int64_t created_ms,
                    const std::string& saga_id) {
  w.del(kListing, listing_key(pipeline, 0, created_ms, saga_id));
  w.del(kListing, listing_key(pipeline, state, created_ms, saga_id));
}

}  // namespace

RocksSagaStore::RocksSagaStore(const std::string& path) {
  rocksdb::DBOptions opts;
  opts.create_if_missing = true;
  opts.create_missing_column_families = true;
  // For wal_syncs(); tickers only, no timers: nothing on the write path.
  statistics_ = rocksdb::CreateDBStatistics();
  statistics_->set_stats_level(rocksdb::StatsLevel::kExceptTimers);
  opts.statistics = statistics_;
  // Memory stays bounded however many sagas are stored: every memtable
  // together within kWriteBuffers (RocksDB flushes the largest past it), and
  // one small block cache for all tables. Bloom filters answer the lookup of
  // a saga not stored yet (each INGESTED fact) without reading the tables.
  opts.db_write_buffer_size = kWriteBuffers;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(kBlockCache);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  rocksdb::ColumnFamilyOptions cf;
  cf.write_buffer_size = kWriteBuffers / 4;
  cf.max_write_buffer_number = 2;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {{rocksdb::kDefaultColumnFamilyName, cf},
                                                      {"sagas", cf},
                                                      {"offsets", cf},
                                                      {"outbox", cf},
                                                      {"deadlines", cf},
                                                      {"aggregates", cf},
                                                      {"listing", cf}};
  rocksdb::DB* db = nullptr;
  const auto st = rocksdb::DB::Open(opts, path, cfs, &handles_, &db);
  if (!st.ok()) throw std::runtime_error(fmt::format("saga store {}: {}", path, st.ToString()));
  db_.reset(db);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kOutbox]));
  it->SeekToLast();
  if (it->Valid()) next_outbox_id_ = from_be64(it->key()) + 1;
  // The relay's cursor starts before the oldest entry left: this one walk
  // over the tombstones of relayed entries is the last.
  it->SeekToFirst();
  relayed_ = it->Valid() ? from_be64(it->key()) - 1 : next_outbox_id_ - 1;
  build_listing();
}

void RocksSagaStore::build_listing() {
  std::unique_ptr<rocksdb::Iterator> listed(db_->NewIterator({}, handles_[kListing]));
  listed->SeekToFirst();
  if (listed->Valid()) return;
  SortedWrites writes;
  std::size_t n = 0;
  auto flush = [&] {
    rocksdb::WriteBatch batch;
    writes.add_to(batch, handles_);
    const auto st = db_->Write({}, &batch);
    if (!st.ok()) throw std::runtime_error("saga store: building the listing index: " + st.ToString());
    writes = SortedWrites{};
  };
  auto st = scan([&](const v1::SagaRecord& r) {
    put_listing(writes, r);
    if (++n % 10'000 == 0) flush();
    return true;
  });
  if (!st) throw std::runtime_error("saga store: building the listing index: " + st.error().message);
  flush();
}

RocksSagaStore::~RocksSagaStore() {
  for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
  db_.reset();
}

Result<std::optional<v1::SagaRecord>> RocksSagaStore::get(const std::string& saga_id) {
  std::string value;
  const auto st = db_->Get({}, handles_[kSagas], saga_id, &value);
  if (st.IsNotFound()) return std::optional<v1::SagaRecord>{};
  if (!st.ok()) return std::unexpected(io_error(st));
  v1::SagaRecord r;
  if (!r.ParseFromString(value)) return fail(Errc::kInternal, "saga " + saga_id + ": stored record is corrupt");
  return r;
}

Status RocksSagaStore::commit(const SagaCommit& c) {
  rocksdb::WriteBatch batch;
  SortedWrites writes;
  for (const auto& w : c.sagas) {
    const auto& r = w.record;
    writes.put(kSagas, r.saga_id(), r.SerializeAsString());
    if (w.old_state == v1::SAGA_STATE_UNSPECIFIED) {
      put_listing(writes, r);
    } else if (w.old_created_ms != r.created_ms()) {
      delete_listing(writes, r.pipeline(), w.old_state, w.old_created_ms, r.saga_id());
      put_listing(writes, r);
    } else if (w.old_state != r.state()) {
      // Only the state's list changes: the any-state entry stays put.
      writes.del(kListing, listing_key(r.pipeline(), w.old_state, r.created_ms(), r.saga_id()));
      writes.put(kListing, listing_key(r.pipeline(), r.state(), r.created_ms(), r.saga_id()), "");
    }
    if (w.old_deadline_ms == r.deadline_ms()) continue;
    if (w.old_deadline_ms != 0) writes.del(kDeadlines, deadline_key(w.old_deadline_ms, r.saga_id()));
    if (r.deadline_ms() != 0) writes.put(kDeadlines, deadline_key(r.deadline_ms(), r.saga_id()), "");
  }
  // Removed sagas fold into their hour's aggregate. One writer, so reading
  // the aggregate and writing it back in this batch cannot race.
  std::map<std::string, v1::SagaAggregate> aggs;
  for (const auto& r : c.removed) {
    writes.del(kSagas, r.saga_id());
    delete_listing(writes, r.pipeline(), r.state(), r.created_ms(), r.saga_id());
    if (r.deadline_ms() != 0) writes.del(kDeadlines, deadline_key(r.deadline_ms(), r.saga_id()));
    const auto key = aggregate_key(r.pipeline(), r.created_ms() / kHourMs * kHourMs);
    auto it = aggs.find(key);
    if (it == aggs.end()) {
      it = aggs.emplace(key, v1::SagaAggregate{}).first;
      std::string value;
      const auto st = db_->Get({}, handles_[kAggregates], key, &value);
      if (!st.ok() && !st.IsNotFound()) return std::unexpected(io_error(st));
      if (st.ok() && !it->second.ParseFromString(value)) return fail(Errc::kInternal, "stored aggregate is corrupt");
    }
    const auto n = counts(r);
    auto& a = it->second;
    a.set_sagas(a.sagas() + 1);
    a.set_accepted(a.accepted() + r.total());
    a.set_loaded(a.loaded() + n.loaded);
    a.set_rejected(a.rejected() + n.rejected + n.rejected_at_load);
    a.set_in_flight(a.in_flight() + n.in_flight);
    ++(*a.mutable_by_state())[state_name(r.state())];
  }
  writes.add_to(batch, handles_);
  for (const auto& [key, a] : aggs) batch.Put(handles_[kAggregates], key, a.SerializeAsString());
  for (const auto& [tp, off] : c.next_offsets) batch.Put(handles_[kOffsets], offset_key(tp), std::to_string(off));
  uint64_t id = next_outbox_id_.load(std::memory_order_relaxed);
  for (const auto& m : c.outbox) {
    // Outbox values carry topic and key in front of the message, length-prefixed.
    std::string value = be64(m.topic.size()) + m.topic + be64(m.key.size()) + m.key + m.value;
    batch.Put(handles_[kOutbox], be64(id++), value);
  }
  // A write that carries outcome facts is synced before the relay can send
  // them: the services act on an outcome (compensate a FAILED saga), so the
  // store must not forget one it published, even after a power loss. Other
  // writes need no fsync: a process crash loses nothing the OS has, and a
  // lost tail (power) is refolded from the offsets it held.
  rocksdb::WriteOptions wo;
  wo.sync = !c.outbox.empty();
  const auto st = db_->Write(wo, &batch);
  if (!st.ok()) return std::unexpected(io_error(st));
  next_outbox_id_.store(id, std::memory_order_release);
  return {};
}

uint64_t RocksSagaStore::wal_syncs() const { return statistics_->getTickerCount(rocksdb::WAL_FILE_SYNCED); }

Result<std::map<kafka::TopicPartition, int64_t>> RocksSagaStore::offsets() {
  std::map<kafka::TopicPartition, int64_t> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kOffsets]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const auto key = it->key().ToString();
    const auto nul = key.find('\0');
    if (nul == std::string::npos) continue;
    out[{key.substr(0, nul), std::stoi(key.substr(nul + 1))}] = std::stoll(it->value().ToString());
  }
  if (!it->status().ok()) return std::unexpected(io_error(it->status()));
  return out;
}

Status RocksSagaStore::scan(const std::function<bool(const v1::SagaRecord&)>& visit, const std::string& after) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kSagas]));
  if (after.empty()) {
    it->SeekToFirst();
  } else {
    it->Seek(after);
    if (it->Valid() && it->key() == rocksdb::Slice(after)) it->Next();
  }
  for (; it->Valid(); it->Next()) {
    v1::SagaRecord r;
    if (!r.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) continue;
    if (!visit(r)) break;
  }
  if (!it->status().ok()) return std::unexpected(io_error(it->status()));
  return {};
}

Status RocksSagaStore::due(int64_t now_ms, const std::function<bool(int64_t, const std::string&)>& visit) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kDeadlines]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() < 8) continue;
    const auto deadline = static_cast<int64_t>(from_be64(it->key()));
    if (deadline > now_ms) break;
    if (!visit(deadline, std::string(it->key().data() + 8, it->key().size() - 8))) break;
  }
  if (!it->status().ok()) return std::unexpected(io_error(it->status()));
  return {};
}

Result<std::map<int64_t, v1::SagaAggregate>> RocksSagaStore::aggregates(const std::string& pipeline, int64_t from_ms,
                                                                        int64_t to_ms) {
  std::map<int64_t, v1::SagaAggregate> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kAggregates]));
  const auto prefix = pipeline + '\0';
  for (it->Seek(aggregate_key(pipeline, from_ms < 0 ? 0 : from_ms)); it->Valid(); it->Next()) {
    if (!it->key().starts_with(prefix) || it->key().size() != prefix.size() + 8) break;
    const auto hour = static_cast<int64_t>(from_be64(rocksdb::Slice(it->key().data() + prefix.size(), 8)));
    if (hour >= to_ms) break;
    v1::SagaAggregate a;
    if (!a.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return fail(Errc::kInternal, "stored aggregate is corrupt");
    }
    out[hour] = std::move(a);
  }
  if (!it->status().ok()) return std::unexpected(io_error(it->status()));
  return out;
}

Result<ListPage> RocksSagaStore::list(const ListQuery& q) {
  ListPage page;
  const int state = q.state ? static_cast<int>(*q.state) : 0;
  const auto prefix = listing_prefix(q.pipeline, state);
  if (!q.after.empty() && !q.after.starts_with(prefix)) {
    return fail(Errc::kInvalidArgument, "not a token of this list (another pipeline or state)");
  }
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kListing]));
  const auto start = q.until_ms == INT64_MAX ? prefix : listing_key(q.pipeline, state, q.until_ms - 1, "");
  it->Seek(q.after.empty() || q.after < start ? start : q.after);
  if (it->Valid() && !q.after.empty() && it->key() == rocksdb::Slice(q.after)) it->Next();
  // Entries a write left behind (another state, another time) are skipped,
  // bounded so that a page never turns into a scan of the store.
  std::size_t examined = 0;
  const std::size_t examine_max = q.limit * 4 + 1000;
  std::string value;
  for (; it->Valid() && page.sagas.size() < q.limit && examined < examine_max; it->Next(), ++examined) {
    const auto key = it->key();
    if (!key.starts_with(prefix) || key.size() < prefix.size() + 8) break;
    const auto created = static_cast<int64_t>(~from_be64(rocksdb::Slice(key.data() + prefix.size(), 8)));
    if (created < q.since_ms) break;
    const std::string id(key.data() + prefix.size() + 8, key.size() - prefix.size() - 8);
    page.next = key.ToString();
    const auto st = db_->Get({}, handles_[kSagas], id, &value);
    if (st.IsNotFound()) continue;
    if (!st.ok()) return std::unexpected(io_error(st));
    v1::SagaRecord r;
    if (!r.ParseFromString(value)) continue;
    if (r.created_ms() != created || r.pipeline() != q.pipeline || (q.state && r.state() != *q.state)) continue;
    page.sagas.push_back(std::move(r));
  }
  if (!it->status().ok()) return std::unexpected(io_error(it->status()));
  // More entries of this list follow: the token resumes after the last one seen.
  if (!(it->Valid() && it->key().starts_with(prefix) && page.sagas.size() >= q.limit) &&
      !(it->Valid() && examined >= examine_max && it->key().starts_with(prefix))) {
    page.next.clear();
  }
  return page;
}

Result<std::vector<kafka::OutboxEntry>> RocksSagaStore::outbox(std::size_t max) {
  std::vector<kafka::OutboxEntry> out;
  // Nothing appended since the last relay (most calls): no iterator at all.
  if (next_outbox_id_.load(std::memory_order_acquire) <= relayed_ + 1) return out;
  // From the cursor on: the relayed entries' tombstones lie below it, so no
  // relay walks over them again, however many have piled up since the last
  // compaction.
  const auto from = be64(relayed_ + 1);
  const rocksdb::Slice lower(from);
  rocksdb::ReadOptions ro;
  ro.iterate_lower_bound = &lower;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[kOutbox]));
  for (it->Seek(lower); it->Valid() && out.size() < max; it->Next()) {
    const auto v = it->value().ToString();
    kafka::OutboxEntry e;
    e.id = from_be64(it->key());
    std::size_t pos = 0;
    auto take = [&]() {
      const auto n = from_be64(rocksdb::Slice(v.data() + pos, 8));
      pos += 8;
      auto s = v.substr(pos, n);
      pos += n;
      return s;
    };
    e.message.topic = take();
    e.message.key = take();
    e.message.value = v.substr(pos);
    out.push_back(std::move(e));
  }
  if (!it->status().ok()) return std::unexpected(io_error(it->status()));
  return out;
}

Status RocksSagaStore::outbox_done(const std::vector<uint64_t>& ids) {
  // One writer appends in id order and one relay reads from the cursor, so
  // the ids relayed are the next ones after it: the cursor moves to the
  // highest (never past what was appended).
  const uint64_t appended = next_outbox_id_.load(std::memory_order_acquire) - 1;
  uint64_t up_to = relayed_;
  // Point deletes, not a range delete: every new iterator rebuilds the list
  // of range tombstones still in the memtable, and the relay makes one per call.
  rocksdb::WriteBatch batch;
  for (const auto id : ids) {
    if (id > appended) continue;
    batch.Delete(handles_[kOutbox], be64(id));
    up_to = std::max(up_to, id);
  }
  if (batch.Count() == 0) return {};
  const auto st = db_->Write({}, &batch);
  if (!st.ok()) return std::unexpected(io_error(st));
  relayed_ = up_to;
  return {};
}

}  // namespace starling::saga
