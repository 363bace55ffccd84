#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace starling {

/// A random 128-bit identifier as 32 lowercase hex digits (saga ids, trace ids).
std::string random_id();

/// The trace id (32 lowercase hex digits) of a W3C Trace Context `traceparent`
/// header, "version-traceid-parentid-flags": or nullopt when the header does
/// not follow that grammar (version ff, all-zero ids, uppercase, other
/// lengths; a version 00 header has exactly 55 characters, a later version may
/// go on after a '-').
std::optional<std::string> traceparent_trace_id(std::string_view header);

/// FNV-1a 64: the same value in every process and version, for what is
/// stored or compared across restarts (fingerprints, derived keys).
class StableHash {
 public:
  StableHash& add(std::string_view bytes) {
    for (const char c : bytes) add_byte(static_cast<unsigned char>(c));
    return *this;
  }
  StableHash& add_byte(unsigned char c) {
    h_ = (h_ ^ c) * 0x100000001b3ULL;
    return *this;
  }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xcbf29ce484222325ULL;
};

}  // namespace starling
