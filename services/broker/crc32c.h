#pragma once

#include <cstddef>
#include <cstdint>

namespace starling::broker {

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by Kafka
/// record batch v2. Debian 12 ships no C/C++ crc32c library (only a Python
/// one), so this is a small slicing-by-8 table implementation.
uint32_t crc32c(const uint8_t* data, size_t size, uint32_t crc = 0);

}  // namespace starling::broker
