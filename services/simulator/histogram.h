#pragma once
// A latency histogram of constant size, for open-loop runs of any length:
// log-linear buckets (each power of two of microseconds split into
// kSubBuckets equal parts), so a percentile is reported as its bucket's upper
// bound, at most 1/kSubBuckets (about 3%) above the true value. Values from
// 0 to 2^(kMaxExponent+1) µs (about 38 hours); larger ones land in the last
// bucket. Not thread-safe: one writer, or merge() per-thread copies.

#include <array>
#include <bit>
#include <cstdint>

namespace starling::simulator {

class LatencyHistogram {
 public:
  static constexpr int kSubBucketBits = 5;
  static constexpr uint64_t kSubBuckets = uint64_t{1} << kSubBucketBits;
  static constexpr int kMaxExponent = 36;
  static constexpr std::size_t kBuckets = (kMaxExponent - kSubBucketBits + 2) * kSubBuckets;

  void record(uint64_t us) {
    ++counts_[bucket(us)];
    ++count_;
    sum_us_ += us;
    if (us > max_us_) max_us_ = us;
  }
  void merge(const LatencyHistogram& other) {
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    sum_us_ += other.sum_us_;
    if (other.max_us_ > max_us_) max_us_ = other.max_us_;
  }

  uint64_t count() const { return count_; }
  uint64_t max_us() const { return max_us_; }
  double mean_us() const { return count_ == 0 ? 0 : static_cast<double>(sum_us_) / static_cast<double>(count_); }

  /// The value at quantile q (0..1) in µs: the upper bound of the bucket that
  /// holds the q·count-th value, never above the largest value seen. 0 when empty.
  uint64_t percentile_us(double q) const {
    if (count_ == 0) return 0;
    auto rank = static_cast<uint64_t>(q * static_cast<double>(count_) + 0.999999);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return upper_us(i) < max_us_ ? upper_us(i) : max_us_;
    }
    return max_us_;
  }
  double percentile_ms(double q) const { return static_cast<double>(percentile_us(q)) / 1000.0; }

  /// Bucket of a value; below kSubBuckets µs each value has its own bucket.
  static std::size_t bucket(uint64_t us) {
    if (us < kSubBuckets) return static_cast<std::size_t>(us);
    const int exp = static_cast<int>(std::bit_width(us)) - 1;  // us in [2^exp, 2^(exp+1))
    if (exp > kMaxExponent) return kBuckets - 1;
    const uint64_t sub = (us >> (exp - kSubBucketBits)) - kSubBuckets;  // 0..kSubBuckets-1
    return static_cast<std::size_t>(exp - kSubBucketBits + 1) * kSubBuckets + static_cast<std::size_t>(sub);
  }
  /// The largest value a bucket holds.
  static uint64_t upper_us(std::size_t b) {
    if (b < kSubBuckets) return b;
    const int exp = static_cast<int>(b / kSubBuckets) + kSubBucketBits - 1;
    const uint64_t sub = b % kSubBuckets;
    return ((kSubBuckets + sub + 1) << (exp - kSubBucketBits)) - 1;
  }

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t sum_us_ = 0;
  uint64_t max_us_ = 0;
};

}  // namespace starling::simulator
