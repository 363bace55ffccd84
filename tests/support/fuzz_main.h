#pragma once
// The driver every fuzz target shares when it is not linked into a
// coverage-guided fuzzer (tools/fuzz builds the same LLVMFuzzerTestOneInput
// into an AFL++ binary; g++ has no libFuzzer, Debian 12's default clang 14
// cannot compile this code base, and its clang-19/libfuzzer-19-dev are not
// used by the build). As a ctest it replays the committed corpus and then
// runs a small seeded mutation fuzzer:
//   <target> [iterations] [seed] [corpus files or dirs...]
//   <target> --write-seeds DIR   (the built-in seeds as files, for AFL++)

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace starling::testing {

// Bit flips, 0x00/0xff bytes, truncation, insertion, deletion, and a 4-byte
// big-endian integer stomped with an edge value (lengths, counts).
template <class Bytes>
void mutate(Bytes& b, std::mt19937& rng) {
  const int n = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < n; ++i) {
    switch (rng() % 6) {
      case 0:
        if (!b.empty()) b[rng() % b.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
        break;
      case 1:
        if (!b.empty()) b[rng() % b.size()] = static_cast<uint8_t>(rng() % 2 ? 0xff : 0);
        break;
      case 2:
        if (!b.empty()) b.resize(rng() % b.size());
        break;
      case 3:
        b.insert(b.begin() + static_cast<long>(b.empty() ? 0 : rng() % b.size()), static_cast<uint8_t>(rng()));
        break;
      case 4:
        if (b.size() > 8) {
          const size_t at = rng() % (b.size() - 4);
          const uint32_t v = rng() % 3 == 0 ? 0x7fffffffu : (rng() % 2 ? 0xffffffffu : rng() % 64);
          for (int k = 0; k < 4; ++k) b[at + k] = static_cast<uint8_t>(v >> (24 - 8 * k));
        }
        break;
      default:
        if (b.size() > 4) b.erase(b.begin() + static_cast<long>(rng() % b.size()));
        break;
    }
  }
}

template <class Bytes>
int fuzz_main(int argc, char** argv, std::vector<Bytes> corpus, const char* what) {
  if (argc == 3 && std::string(argv[1]) == "--write-seeds") {
    std::filesystem::create_directories(argv[2]);
    int n = 0;
    for (const auto& s : corpus) {
      char name[32];
      std::snprintf(name, sizeof name, "seed-%02d", n++);
      std::ofstream f(std::filesystem::path(argv[2]) / name, std::ios::binary);
      f.write(reinterpret_cast<const char*>(s.data()), static_cast<std::streamsize>(s.size()));
    }
    std::printf("%d seeds written to %s\n", n, argv[2]);
    return 0;
  }
  const long iterations = argc > 1 ? std::stol(argv[1]) : 20000;
  const unsigned seed = argc > 2 ? static_cast<unsigned>(std::stoul(argv[2])) : 1;
  // Corpus files (or directories of them) run as they are, then seed mutations.
  for (int i = 3; i < argc; ++i) {
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(argv[i])) {
      for (const auto& e : std::filesystem::directory_iterator(argv[i])) {
        if (e.is_regular_file() && e.path().filename().string()[0] != '.') files.push_back(e.path());
      }
      std::sort(files.begin(), files.end());
    } else {
      files.emplace_back(argv[i]);
    }
    for (const auto& path : files) {
      std::ifstream f(path, std::ios::binary);
      Bytes b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      LLVMFuzzerTestOneInput(b.data(), b.size());
      if (!b.empty()) corpus.push_back(std::move(b));
    }
  }
  for (const auto& s : corpus) LLVMFuzzerTestOneInput(s.data(), s.size());
  std::mt19937 rng(seed);
  for (long i = 0; i < iterations; ++i) {
    Bytes b = corpus[rng() % corpus.size()];
    mutate(b, rng);
    LLVMFuzzerTestOneInput(b.data(), b.size());
  }
  std::printf("%ld mutated %s handled without a crash\n", iterations, what);
  return 0;
}

}  // namespace starling::testing
