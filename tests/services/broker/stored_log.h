#pragma once

// Reads what a starling-broker process stored for one partition, straight
// from its segment files (README "Storage"): the tests that must know how a
// client's batches were written (compressed or not) look at the bytes on disk.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace starling::broker::testing {

/// The batches of one partition's log on disk.
struct StoredLog {
  uint64_t bytes = 0;              // all segment files together
  std::vector<int> codecs;         // attributes & 0x7 of each batch, in log order
  std::vector<int> record_counts;  // of each batch
};

/// Kafka's codec numbers in a batch's attributes.
inline int codec_id(const std::string& name) {
  if (name == "gzip") return 1;
  if (name == "snappy") return 2;
  if (name == "lz4") return 3;
  if (name == "zstd") return 4;
  return 0;
}

/// `data_dir` is the BrokerProcess's directory (the broker's --data-dir is
/// its "data" subdirectory).
inline StoredLog read_stored_log(const std::filesystem::path& data_dir, const std::string& topic, int partition) {
  namespace fs = std::filesystem;
  StoredLog out;
  const fs::path dir = data_dir / "data" / "logs" / (topic + "-" + std::to_string(partition));
  std::vector<fs::path> segments;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".log") segments.push_back(e.path());
  }
  std::sort(segments.begin(), segments.end());  // names are zero-padded base offsets
  auto be32 = [](const std::string& s, size_t at) {
    return static_cast<uint32_t>(static_cast<uint8_t>(s[at])) << 24 |
           static_cast<uint32_t>(static_cast<uint8_t>(s[at + 1])) << 16 |
           static_cast<uint32_t>(static_cast<uint8_t>(s[at + 2])) << 8 | static_cast<uint8_t>(s[at + 3]);
  };
  for (const auto& seg : segments) {
    std::ifstream f(seg, std::ios::binary);
    const std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    out.bytes += data.size();
    constexpr size_t kHeaderSize = 61;  // batch header of magic v2
    size_t pos = 0;
    while (data.size() - pos >= kHeaderSize) {
      const size_t size = 12 + static_cast<size_t>(be32(data, pos + 8));
      out.codecs.push_back(static_cast<uint8_t>(data[pos + 22]) & 0x7);  // low byte of attributes (offset 21)
      out.record_counts.push_back(static_cast<int>(be32(data, pos + 57)));
      if (size > data.size() - pos) break;
      pos += size;
    }
  }
  return out;
}

}  // namespace starling::broker::testing
