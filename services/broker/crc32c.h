#pragma once

#include <cstddef>
#include <cstdint>

namespace starling::broker {

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by Kafka
/// record batch v2. A small slicing-by-8 table implementation, which needs no
/// library. (Debian 12 does have one: libisal-dev, ISA-L 2.30, whose
/// `crc32_iscsi` in <isa-l/crc.h> is the iSCSI CRC, i.e. CRC-32C.)
uint32_t crc32c(const uint8_t* data, size_t size, uint32_t crc = 0);

}  // namespace starling::broker
