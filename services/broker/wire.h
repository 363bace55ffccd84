#pragma once

#include <algorithm>
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

/// Bounds-checked big-endian reader for Kafka messages.
/// Reading past the end never touches memory: it latches `ok() == false` and
/// returns zero values, so decoders read a whole message and check once.
///
/// One decoder serves every version of an API: in flexible mode (KIP-482,
/// set for the versions an API's JSON marks "flexibleVersions") strings,
/// bytes and arrays take their compact forms (an unsigned varint of length
/// + 1, 0 for null) and tags() reads a tagged-field section, which it skips:
/// this broker knows no tagged request field. Outside flexible mode tags()
/// reads nothing.
class Reader {
 public:
  explicit Reader(ByteView data) : data_(data) {}

  void set_flexible(bool flexible) { flexible_ = flexible; }
  bool flexible() const { return flexible_; }

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

  /// Unsigned LEB128 of at most 32 bits (Kafka's UNSIGNED_VARINT); a sixth
  /// byte or bits above 32 fail the reader.
  uint32_t uvarint() {
    uint32_t v = 0;
    for (int shift = 0; shift <= 28; shift += 7) {
      if (!have(1)) break;
      uint8_t b = data_[pos_++];
      if (shift == 28 && b > 0x0f) break;
      v |= static_cast<uint32_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    fail();
    return 0;
  }

  std::string string() {
    int32_t len = string_len();
    if (len < 0) {
      fail();
      return {};
    }
    return take_string(static_cast<size_t>(len));
  }
  std::optional<std::string> nullable_string() {
    int32_t len = string_len();
    if (len == -1) return std::nullopt;
    if (len < 0) {
      fail();
      return std::nullopt;
    }
    return take_string(static_cast<size_t>(len));
  }
  /// Returns a view into the input; the caller keeps the input alive.
  std::optional<ByteView> nullable_bytes() {
    int32_t len = flexible_ ? compact_len() : i32();
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
  /// so garbage never triggers a huge allocation. min_element_size is given
  /// for the classic form; compact elements are at least half of it (a
  /// length of 1 byte instead of 2 or 4, plus a tagged-field byte).
  int32_t array_len(size_t min_element_size = 1) {
    int32_t n = flexible_ ? compact_len() : i32();
    if (flexible_) min_element_size = std::max<size_t>(1, min_element_size / 2);
    if (n == -1) return -1;
    if (n < 0 || static_cast<size_t>(n) * min_element_size > remaining()) {
      fail();
      return 0;
    }
    return n;
  }
  /// A tagged-field section (flexible mode only): a count, then each field's
  /// tag, size and bytes, tags strictly ascending as Kafka requires. Every
  /// field is skipped after its size is checked against what is left.
  void tags() {
    if (!flexible_) return;
    uint32_t n = uvarint();
    if (n > remaining() / 2) {  // a field takes at least a tag byte and a size byte
      fail();
      return;
    }
    int64_t last = -1;
    for (uint32_t i = 0; i < n && ok_; ++i) {
      uint32_t tag = uvarint();
      uint32_t size = uvarint();
      if (static_cast<int64_t>(tag) <= last || !have(size)) {
        fail();
        return;
      }
      last = tag;
      pos_ += size;
    }
  }
  /// True when the next n bytes exist and are all zero; reads nothing.
  bool peek_zeros(size_t n) const {
    if (!have(n)) return false;
    for (size_t i = 0; i < n; ++i) {
      if (data_[pos_ + i] != 0) return false;
    }
    return true;
  }
  void fail() { ok_ = false; }

 private:
  // Compact length: the varint is length + 1, 0 meaning null (-1 here).
  // Lengths that cannot be a 31-bit count fail.
  int32_t compact_len() {
    uint32_t n = uvarint();
    if (!ok_) return 0;
    if (n > static_cast<uint32_t>(INT32_MAX)) {
      fail();
      return 0;
    }
    return static_cast<int32_t>(n) - 1;
  }
  // Strings are at most 32,767 bytes in both forms, as in Kafka.
  int32_t string_len() {
    if (!flexible_) return i16();
    int32_t len = compact_len();
    if (len > INT16_MAX) {
      fail();
      return 0;
    }
    return len;
  }
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
  bool flexible_ = false;
  TextFix text_fix_ = nullptr;
};

/// Big-endian writer for Kafka messages; in flexible mode it writes the
/// compact forms and tags() an empty tagged-field section, as Reader reads.
class Writer {
 public:
  void set_flexible(bool flexible) { flexible_ = flexible; }
  bool flexible() const { return flexible_; }

  void uvarint(uint32_t v) {
    while (v >= 0x80) {
      buf_.push_back(static_cast<uint8_t>(v | 0x80));
      v >>= 7;
    }
    buf_.push_back(static_cast<uint8_t>(v));
  }
  void i8(int8_t v) { buf_.push_back(static_cast<uint8_t>(v)); }
  void i16(int16_t v) { be(static_cast<uint16_t>(v)); }
  void i32(int32_t v) { be(static_cast<uint32_t>(v)); }
  void i64(int64_t v) { be(static_cast<uint64_t>(v)); }
  void boolean(bool v) { i8(v ? 1 : 0); }
  void string(std::string_view s) {
    if (flexible_) {
      uvarint(static_cast<uint32_t>(s.size()) + 1);
    } else {
      i16(static_cast<int16_t>(s.size()));
    }
    raw(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
  void nullable_string(const std::optional<std::string>& s) {
    if (!s) {
      null_length();
      return;
    }
    string(*s);
  }
  void bytes(ByteView b) {
    bytes_len(b.size());
    raw(b.data(), b.size());
  }
  /// The length prefix of a bytes field whose content follows. Bytes and
  /// arrays share their length forms: int32, or compact (varint of n + 1).
  void bytes_len(size_t n) {
    if (flexible_) {
      uvarint(static_cast<uint32_t>(n) + 1);
    } else {
      i32(static_cast<int32_t>(n));
    }
  }
  void null_bytes() { flexible_ ? uvarint(0) : i32(-1); }
  void array_len(size_t n) { bytes_len(n); }
  void null_array() { null_bytes(); }
  /// An empty tagged-field section; nothing outside flexible mode.
  void tags() {
    if (flexible_) buf_.push_back(0);
  }
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
  void null_length() { flexible_ ? uvarint(0) : i16(-1); }
  template <class T>
  void be(T v) {
    for (int i = sizeof(T) - 1; i >= 0; --i) buf_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  Bytes buf_;
  bool flexible_ = false;
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
