#include "services/saga/saga_store.h"

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/statistics.h>
#include <rocksdb/write_batch.h>

#include <stdexcept>

#include "services/saga/saga_state.h"

namespace starling::saga {
namespace {

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

void put_listing(rocksdb::WriteBatch& batch, rocksdb::ColumnFamilyHandle* cf, const v1::SagaRecord& r) {
  batch.Put(cf, listing_key(r.pipeline(), 0, r.created_ms(), r.saga_id()), "");
  batch.Put(cf, listing_key(r.pipeline(), r.state(), r.created_ms(), r.saga_id()), "");
}

void delete_listing(rocksdb::WriteBatch& batch, rocksdb::ColumnFamilyHandle* cf, const std::string& pipeline,
                    v1::SagaState state, int64_t created_ms, const std::string& saga_id) {
  batch.Delete(cf, listing_key(pipeline, 0, created_ms, saga_id));
  batch.Delete(cf, listing_key(pipeline, state, created_ms, saga_id));
}

Error io_error(const rocksdb::Status& s) { return Error{Errc::kIo, s.ToString()}; }

}  // namespace

RocksSagaStore::RocksSagaStore(const std::string& path) {
  rocksdb::DBOptions opts;
  opts.create_if_missing = true;
  opts.create_missing_column_families = true;
  // For wal_syncs(); tickers only, no timers: nothing on the write path.
  statistics_ = rocksdb::CreateDBStatistics();
  statistics_->set_stats_level(rocksdb::StatsLevel::kExceptTimers);
  opts.statistics = statistics_;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {{rocksdb::kDefaultColumnFamilyName, {}},
                                                      {"sagas", {}},
                                                      {"offsets", {}},
                                                      {"outbox", {}},
                                                      {"deadlines", {}},
                                                      {"aggregates", {}},
                                                      {"listing", {}}};
  rocksdb::DB* db = nullptr;
  const auto st = rocksdb::DB::Open(opts, path, cfs, &handles_, &db);
  if (!st.ok()) throw std::runtime_error(fmt::format("saga store {}: {}", path, st.ToString()));
  db_.reset(db);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kOutbox]));
  it->SeekToLast();
  if (it->Valid()) next_outbox_id_ = from_be64(it->key()) + 1;
  build_listing();
}

void RocksSagaStore::build_listing() {
  std::unique_ptr<rocksdb::Iterator> listed(db_->NewIterator({}, handles_[kListing]));
  listed->SeekToFirst();
  if (listed->Valid()) return;
  rocksdb::WriteBatch batch;
  std::size_t n = 0;
  auto flush = [&] {
    const auto st = db_->Write({}, &batch);
    if (!st.ok()) throw std::runtime_error("saga store: building the listing index: " + st.ToString());
    batch.Clear();
  };
  auto st = scan([&](const v1::SagaRecord& r) {
    put_listing(batch, handles_[kListing], r);
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
  for (const auto& w : c.sagas) {
    const auto& r = w.record;
    batch.Put(handles_[kSagas], r.saga_id(), r.SerializeAsString());
    if (w.old_state != r.state() || w.old_created_ms != r.created_ms()) {
      if (w.old_state != v1::SAGA_STATE_UNSPECIFIED) {
        delete_listing(batch, handles_[kListing], r.pipeline(), w.old_state, w.old_created_ms, r.saga_id());
      }
      put_listing(batch, handles_[kListing], r);
    }
    if (w.old_deadline_ms == r.deadline_ms()) continue;
    if (w.old_deadline_ms != 0) batch.Delete(handles_[kDeadlines], deadline_key(w.old_deadline_ms, r.saga_id()));
    if (r.deadline_ms() != 0) batch.Put(handles_[kDeadlines], deadline_key(r.deadline_ms(), r.saga_id()), "");
  }
  // Removed sagas fold into their hour's aggregate. One writer, so reading
  // the aggregate and writing it back in this batch cannot race.
  std::map<std::string, v1::SagaAggregate> aggs;
  for (const auto& r : c.removed) {
    batch.Delete(handles_[kSagas], r.saga_id());
    delete_listing(batch, handles_[kListing], r.pipeline(), r.state(), r.created_ms(), r.saga_id());
    if (r.deadline_ms() != 0) batch.Delete(handles_[kDeadlines], deadline_key(r.deadline_ms(), r.saga_id()));
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
  for (const auto& [key, a] : aggs) batch.Put(handles_[kAggregates], key, a.SerializeAsString());
  for (const auto& [tp, off] : c.next_offsets) batch.Put(handles_[kOffsets], offset_key(tp), std::to_string(off));
  uint64_t id = next_outbox_id_;
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
  next_outbox_id_ = id;
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
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kOutbox]));
  for (it->SeekToFirst(); it->Valid() && out.size() < max; it->Next()) {
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
  return out;
}

Status RocksSagaStore::outbox_done(uint64_t up_to) {
  const auto st = db_->DeleteRange({}, handles_[kOutbox], be64(0), be64(up_to + 1));
  if (!st.ok()) return std::unexpected(io_error(st));
  return {};
}

}  // namespace starling::saga
