#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace starling::broker {

/// Like std::allocator, but resize() leaves new bytes uninitialised: buffers
/// are always filled by a read right after growing, and zero-filling megabytes
/// of fetch data first was measurable.
template <class T>
struct DefaultInitAllocator : std::allocator<T> {
  template <class U>
  struct rebind {  // NOLINT(readability-identifier-naming): the allocator protocol names it
    using other = DefaultInitAllocator<U>;
  };
  DefaultInitAllocator() = default;
  template <class U>
  DefaultInitAllocator(const DefaultInitAllocator<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

using Bytes = std::vector<uint8_t, DefaultInitAllocator<uint8_t>>;
using ByteView = std::span<const uint8_t>;

/// Bounds-checked big-endian reader for non-flexible Kafka messages.
/// Reading past the end never touches memory: it latches `ok() == false` and
/// returns zero values, so decoders read a whole message and check once.
class Reader {
 public:
  explicit Reader(ByteView data) : data_(data) {}

  /// Every string read is passed through `fix`. The Broker makes request
  /// strings valid UTF-8 with it, as Kafka's decoder does, so that names it
  /// echoes back (topics, client ids in member ids) are; tests read raw bytes.
  using TextFix = void (*)(std::string&);
  void set_text_fix(TextFix fix) { text_fix_ = fix; }

  bool ok() const { return ok_; }
  size_t remaining() const { return ok_ ? data_.size() - pos_ : 0; }
  size_t position() const { return pos_; }

  int8_t i8() { return static_cast<int8_t>(be<uint8_t>()); }
  int16_t i16() { return static_cast<int16_t>(be<uint16_t>()); }
  int32_t i32() { return static_cast<int32_t>(be<uint32_t>()); }
  int64_t i64() { return static_cast<int64_t>(be<uint64_t>()); }
  bool boolean() { return i8() != 0; }

  std::string string() {
    int16_t len = i16();
    if (len < 0) {
      fail();
      return {};
    }
    return take_string(static_cast<size_t>(len));
  }
  std::optional<std::string> nullable_string() {
    int16_t len = i16();
    if (len == -1) return std::nullopt;
    if (len < 0) {
      fail();
      return std::nullopt;
    }
    return take_string(static_cast<size_t>(len));
  }
  /// Returns a view into the input; the caller keeps the input alive.
  std::optional<ByteView> nullable_bytes() {
    int32_t len = i32();
    if (len == -1) return std::nullopt;
    if (len < 0 || !have(static_cast<size_t>(len))) {
      fail();
      return std::nullopt;
    }
    ByteView v = data_.subspan(pos_, static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return v;
  }
  Bytes bytes() {
    auto v = nullable_bytes();
    if (!v) {
      fail();
      return {};
    }
    return Bytes(v->begin(), v->end());
  }
  /// Array length; -1 (null) is returned as is. A count that could not fit in
  /// the remaining bytes (each element takes at least min_element_size) fails,
  /// so garbage never triggers a huge allocation.
  int32_t array_len(size_t min_element_size = 1) {
    int32_t n = i32();
    if (n == -1) return -1;
    if (n < 0 || static_cast<size_t>(n) * min_element_size > remaining()) {
      fail();
      return 0;
    }
    return n;
  }
  void fail() { ok_ = false; }

 private:
  bool have(size_t n) const { return ok_ && data_.size() - pos_ >= n; }
  std::string take_string(size_t n) {
    if (!have(n)) {
      fail();
      return {};
    }
    std::string s(reinterpret_cast<const char*>(data_.data() + pos_), n);
    pos_ += n;
    if (text_fix_) text_fix_(s);
    return s;
  }
  template <class T>
  T be() {
    if (!have(sizeof(T))) {
      fail();
      return 0;
    }
    T v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) v = static_cast<T>((v << 8) | data_[pos_ + i]);
    if constexpr (sizeof(T) == 1) v = data_[pos_];
    pos_ += sizeof(T);
    return v;
  }

  ByteView data_;
  size_t pos_ = 0;
  bool ok_ = true;
  TextFix text_fix_ = nullptr;
};

/// Big-endian writer for non-flexible Kafka messages.
class Writer {
 public:
  void i8(int8_t v) { buf_.push_back(static_cast<uint8_t>(v)); }
  void i16(int16_t v) { be(static_cast<uint16_t>(v)); }
  void i32(int32_t v) { be(static_cast<uint32_t>(v)); }
  void i64(int64_t v) { be(static_cast<uint64_t>(v)); }
  void boolean(bool v) { i8(v ? 1 : 0); }
  void string(std::string_view s) {
    i16(static_cast<int16_t>(s.size()));
    raw(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
  void nullable_string(const std::optional<std::string>& s) {
    if (!s) {
      i16(-1);
      return;
    }
    string(*s);
  }
  void bytes(ByteView b) {
    i32(static_cast<int32_t>(b.size()));
    raw(b.data(), b.size());
  }
  void null_bytes() { i32(-1); }
  void array_len(size_t n) { i32(static_cast<int32_t>(n)); }
  void raw(const uint8_t* p, size_t n) { buf_.insert(buf_.end(), p, p + n); }

  /// Reserves an int32 to be patched later (frame sizes, byte lengths).
  size_t reserve_i32() {
    size_t at = buf_.size();
    i32(0);
    return at;
  }
  void patch_i32(size_t at, int32_t v) {
    auto u = static_cast<uint32_t>(v);
    for (int i = 0; i < 4; ++i) buf_[at + i] = static_cast<uint8_t>(u >> (24 - 8 * i));
  }

  size_t size() const { return buf_.size(); }
  Bytes& buffer() { return buf_; }
  Bytes take() { return std::move(buf_); }

 private:
  template <class T>
  void be(T v) {
    for (int i = sizeof(T) - 1; i >= 0; --i) buf_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  Bytes buf_;
};

inline int32_t load_be32(const uint8_t* p) {
  return static_cast<int32_t>((uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]});
}
inline int64_t load_be64(const uint8_t* p) {
  return static_cast<int64_t>((static_cast<uint64_t>(static_cast<uint32_t>(load_be32(p))) << 32) |
                              static_cast<uint32_t>(load_be32(p + 4)));
}
inline int16_t load_be16(const uint8_t* p) { return static_cast<int16_t>((uint16_t{p[0]} << 8) | uint16_t{p[1]}); }
inline void store_be32(uint8_t* p, int32_t v) {
  auto u = static_cast<uint32_t>(v);
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(u >> (24 - 8 * i));
}
inline void store_be64(uint8_t* p, int64_t v) {
  auto u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(u >> (56 - 8 * i));
}

}  // namespace starling::broker
