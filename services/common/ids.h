#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace starling {

/// A random 128-bit identifier as 32 lowercase hex digits (saga ids, trace ids).
std::string random_id();

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
