// Broker handlers of the data APIs: Produce, Fetch, ListOffsets, DeleteRecords.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "services/broker/broker.h"
#include "services/broker/response.h"

namespace starling::broker {

using std::chrono::milliseconds;

Result<Reply> Broker::refuse_old_produce(const RequestHeader& h, const ProduceRequest& req) {
  const int16_t v = h.api_version;
  // acks=0 has no response to carry the error: close the connection, as
  // Kafka does when an acks=0 produce fails, so that the client notices.
  if (req.acks == 0) {
    return fail(ErrorCode::kUnsupportedVersion, fmt::format("Produce v{} (acks=0) is not served", v));
  }
  spdlog::debug("Produce v{} refused with UNSUPPORTED_VERSION (v{}+ only)", v, kFirstServedProduceVersion);
  Response resp(h);
  auto& w = resp.w;
  w.array_len(req.topics.size());
  for (const auto& t : req.topics) {
    w.string(t.name);
    w.array_len(t.partitions.size());
    for (const auto& p : t.partitions) {
      w.i32(p.index);
      w.i16(code(ErrorCode::kUnsupportedVersion));
      w.i64(-1);              // base offset
      if (v >= 2) w.i64(-1);  // log append time
    }
  }
  if (v >= 1) w.i32(0);  // throttle_time_ms
  return resp.done();
}

asio::awaitable<Result<Reply>> Broker::handle_produce(const RequestHeader& h, const ProduceRequest& req) {
  const int16_t v = h.api_version;
  if (v < kFirstServedProduceVersion) co_return refuse_old_produce(h, req);
  struct PartResult {
    int32_t index;
    ErrorCode error;
    int64_t base_offset;
    int64_t log_start;
    int64_t durable_end_needed = -1;  // -1: nothing to wait for
  };
  std::vector<std::pair<std::string, std::vector<PartResult>>> results;
  bool acks_ok = req.acks == 0 || req.acks == 1 || req.acks == -1;
  for (const auto& t : req.topics) {
    std::vector<PartResult> parts;
    const size_t max_batch_bytes = max_message_bytes(t.name);
    for (const auto& p : t.partitions) {
      PartResult pr{p.index, ErrorCode::kNone, -1, -1};
      PartitionLog* lg = log(t.name, p.index);
      if (!acks_ok) {
        pr.error = ErrorCode::kInvalidRequiredAcks;
      } else if (req.transactional_id) {
        // Transactions are out of scope (PRODUCT.md): idempotence is enough.
        pr.error = ErrorCode::kInvalidRequest;
      } else if (lg == nullptr) {
        pr.error = ErrorCode::kUnknownTopicOrPartition;
      } else if (!p.records) {
        pr.error = ErrorCode::kCorruptMessage;
      } else {
        // Over the limit: MESSAGE_TOO_LARGE for this partition, nothing appended.
        auto batches = validate_record_set(*p.records, max_batch_bytes);
        if (!batches) {
          pr.error = batches.error().code;
          spdlog::warn("produce to {}-{} rejected: {}", t.name, p.index, batches.error().message);
        } else if (std::any_of(batches->begin(), batches->end(),
                               [](const auto& b) { return b.header.is_transactional(); })) {
          pr.error = ErrorCode::kInvalidRecord;
        } else {
          auto appended = lg->append(*p.records, *batches);
          if (!appended) {
            pr.error = appended.error().code;
            if (pr.error == ErrorCode::kKafkaStorageError) {
              spdlog::error("append to {}-{} failed: {}", t.name, p.index, appended.error().message);
            } else {
              spdlog::debug("append to {}-{} refused: {}", t.name, p.index, appended.error().message);
            }
          } else {
            pr.base_offset = appended->base_offset;
            pr.durable_end_needed = appended->durable_end_needed;
            if (!appended->duplicate) metrics_.bytes_in(t.name, p.records->size());
            if (config_.log.sync != LogConfig::Sync::kDeferred && !appended->duplicate)
              notify_fetchers(t.name, p.index);
          }
        }
        pr.log_start = lg->log_start_offset();
      }
      parts.push_back(pr);
    }
    results.emplace_back(t.name, std::move(parts));
  }
  if (config_.log.sync == LogConfig::Sync::kDeferred) {
    // Group commit: acknowledge (and let consumers see) the appends only once
    // fdatasync'ed. Other requests keep being served meanwhile.
    std::vector<int> fds;
    for (auto& [name, parts] : results) {
      for (auto& pr : parts) {
        PartitionLog* lg = pr.durable_end_needed >= 0 ? log(name, pr.index) : nullptr;
        if (lg == nullptr || lg->high_watermark() >= pr.durable_end_needed) continue;
        for (int fd : lg->unsynced_fds()) fds.push_back(fd);
      }
    }
    if (!fds.empty()) {
      bool ok = co_await flusher_->sync(fds);
      for (auto& [name, parts] : results) {
        for (auto& pr : parts) {
          if (pr.durable_end_needed < 0) continue;
          PartitionLog* lg = log(name, pr.index);  // looked up again: the topic may be gone
          if (!ok) {
            pr.error = ErrorCode::kKafkaStorageError;
          } else if (lg != nullptr) {
            int64_t before = lg->high_watermark();
            lg->mark_durable(pr.durable_end_needed);
            if (lg->high_watermark() > before) notify_fetchers(name, pr.index);
          }
        }
      }
    }
  }
  if (req.acks == 0) co_return Reply{};
  Response resp(h);
  auto& w = resp.w;
  w.array_len(results.size());
  for (const auto& [name, parts] : results) {
    w.string(name);
    w.array_len(parts.size());
    for (const auto& pr : parts) {
      w.i32(pr.index);
      w.i16(code(pr.error));
      w.i64(pr.base_offset);
      w.i64(-1);  // log_append_time_ms: CreateTime topics only
      if (v >= 5) w.i64(pr.log_start);
      if (v >= 8) {
        w.array_len(0);                   // record_errors: a batch is taken or refused whole
        w.nullable_string(std::nullopt);  // error_message
      }
      w.tags();
    }
    w.tags();
  }
  w.i32(0);  // throttle_time_ms
  w.tags();
  co_return resp.done();
}

asio::awaitable<Reply> Broker::handle_fetch(const RequestHeader& h, const FetchRequest& req) {
  const int16_t v = h.api_version;
  struct PartResult {
    int32_t index;
    ErrorCode error = ErrorCode::kNone;
    int64_t high_watermark = -1;
    int64_t log_start = -1;
    Bytes records;
  };
  using TopicResults = std::vector<std::pair<std::string, std::vector<PartResult>>>;
  auto deadline = Clock::now() + milliseconds(std::max(0, req.max_wait_ms));
  // The log and high watermark each partition was last read at: a parked
  // fetch is woken by every append to any of its partitions, and re-reads
  // only the partitions whose high watermark moved since.
  struct ReadAt {
    PartitionLog* log = nullptr;
    int64_t high_watermark = -1;
  };
  std::vector<ReadAt> read_at;
  TopicResults results;
  size_t total = 0;
  bool any_error = false;
  auto collect = [&] {
    const bool first = results.empty();
    const size_t budget = req.max_bytes > 0 ? static_cast<size_t>(req.max_bytes) : 0;
    size_t k = 0;
    for (size_t ti = 0; ti < req.topics.size(); ++ti) {
      const auto& t = req.topics[ti];
      if (first) results.emplace_back(t.name, std::vector<PartResult>(t.partitions.size()));
      for (size_t pi = 0; pi < t.partitions.size(); ++pi, ++k) {
        const auto& p = t.partitions[pi];
        PartResult& pr = results[ti].second[pi];
        PartitionLog* lg = log(t.name, p.index);
        if (first) {
          read_at.emplace_back();
        } else if (lg != nullptr && lg == read_at[k].log && lg->high_watermark() == read_at[k].high_watermark &&
                   pr.error == ErrorCode::kNone) {
          continue;  // nothing new: keep what was read
        }
        total -= pr.records.size();
        pr = PartResult{};
        pr.index = p.index;
        read_at[k] = {lg, lg != nullptr ? lg->high_watermark() : -1};
        if (lg == nullptr) {
          pr.error = ErrorCode::kUnknownTopicOrPartition;
          continue;
        }
        pr.high_watermark = lg->high_watermark();
        pr.log_start = lg->log_start_offset();
        // `total` holds the other partitions' bytes: the response stays
        // within max_bytes unless it is one oversized batch alone.
        size_t limit = std::min<size_t>(static_cast<size_t>(std::max(0, p.partition_max_bytes)),
                                        budget > total ? budget - total : 0);
        ++fetch_partition_reads_;
        auto rd = lg->read(p.fetch_offset, limit, /*allow_oversized_first=*/total == 0);
        if (!rd) {
          pr.error = rd.error().code;
        } else {
          total += rd->records.size();
          pr.records = std::move(rd->records);
        }
      }
    }
    any_error = false;
    for (const auto& [name, parts] : results) {
      for (const auto& pr : parts) any_error = any_error || pr.error != ErrorCode::kNone;
    }
  };

  collect();
  if (!any_error && total < static_cast<size_t>(std::max(0, req.min_bytes)) && Clock::now() < deadline) {
    // Long poll: park until a produce to one of these partitions wakes us.
    FetchWaiter waiter;
    for (const auto& t : req.topics) {
      for (const auto& p : t.partitions) waiter.watched.emplace(t.name, p.index);
    }
    fetch_waiters_.push_back(&waiter);
    while (Clock::now() < deadline) {
      waiter.pending = std::make_shared<Pending<bool>>(ex_);
      co_await waiter.pending->wait_until(deadline);
      collect();
      if (any_error || total >= static_cast<size_t>(std::max(0, req.min_bytes))) break;
    }
    fetch_waiters_.erase(std::find(fetch_waiters_.begin(), fetch_waiters_.end(), &waiter));
  }

  Response resp(h);
  auto& w = resp.w;
  w.i32(0);  // throttle_time_ms
  if (v >= 7) {
    w.i16(0);
    w.i32(0);  // session id 0: no incremental fetch sessions
  }
  w.array_len(results.size());
  for (auto& [name, parts] : results) {
    w.string(name);
    w.array_len(parts.size());
    for (auto& pr : parts) {
      w.i32(pr.index);
      w.i16(code(pr.error));
      w.i64(pr.high_watermark);
      w.i64(pr.high_watermark);  // last stable offset: no transactions, so = high watermark
      if (v >= 5) w.i64(pr.log_start);
      w.array_len(0);          // aborted transactions
      if (v >= 11) w.i32(-1);  // preferred read replica
      if (!pr.records.empty()) metrics_.bytes_out(name, pr.records.size());
      resp.bytes_by_move(std::move(pr.records));
      resp.w.tags();
    }
    w.tags();
  }
  w.tags();
  co_return resp.done();
}

Reply Broker::handle_list_offsets(const RequestHeader& h, const ListOffsetsRequest& req) {
  const int16_t v = h.api_version;
  Response resp(h);
  auto& w = resp.w;
  if (v >= 2) w.i32(0);
  w.array_len(req.topics.size());
  for (const auto& t : req.topics) {
    w.string(t.name);
    w.array_len(t.partitions.size());
    for (const auto& p : t.partitions) {
      PartitionLog* lg = log(t.name, p.index);
      ErrorCode e = ErrorCode::kNone;
      int64_t ts = -1;
      int64_t offset = -1;
      if (lg == nullptr) {
        e = ErrorCode::kUnknownTopicOrPartition;
      } else if (p.timestamp == -2) {
        offset = lg->log_start_offset();
      } else if (p.timestamp == -1) {
        offset = lg->high_watermark();
      } else if (p.timestamp < 0) {
        e = ErrorCode::kInvalidRequest;
      } else if (auto found = lg->offset_for_timestamp(p.timestamp); !found) {
        e = found.error().code;
        spdlog::error("offsets for time {} in {}-{}: {}", p.timestamp, t.name, p.index, found.error().message);
      } else {
        ts = found->timestamp;
        offset = found->offset;
      }
      w.i32(p.index);
      w.i16(code(e));
      w.i64(ts);
      w.i64(offset);
      // Every offset is in leader epoch 0 (one broker, never re-elected); no
      // offset found has no epoch, as in Kafka.
      if (v >= 4) w.i32(offset >= 0 ? 0 : -1);
      w.tags();
    }
    w.tags();
  }
  w.tags();
  return resp.done();
}

Reply Broker::handle_delete_records(const RequestHeader& h, const DeleteRecordsRequest& req) {
  Response resp(h);
  auto& w = resp.w;
  w.i32(0);  // throttle_time_ms
  w.array_len(req.topics.size());
  for (const auto& t : req.topics) {
    w.string(t.name);
    w.array_len(t.partitions.size());
    for (const auto& p : t.partitions) {
      PartitionLog* lg = log(t.name, p.index);
      Result<int64_t> start = lg != nullptr ? lg->delete_records_before(p.offset)
                                            : fail(ErrorCode::kUnknownTopicOrPartition, "unknown partition");
      if (!start && start.error().code == ErrorCode::kKafkaStorageError) {
        spdlog::error("delete records of {}-{}: {}", t.name, p.index, start.error().message);
      }
      w.i32(p.index);
      w.i64(start ? *start : -1);  // low watermark
      w.i16(code(start ? ErrorCode::kNone : start.error().code));
      w.tags();
    }
    w.tags();
  }
  w.tags();
  return resp.done();
}

}  // namespace starling::broker
