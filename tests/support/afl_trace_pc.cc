// Edge coverage for AFL++ from g++'s own -fsanitize-coverage=trace-pc, for
// tools/fuzz.
//
// Why not afl-g++-fast: Debian 12's afl++ 4.04c GCC plugin was built against
// gcc 12.2.0-14 and GCC refuses to load it into 12.2.0-14+deb12u1 ("GCC and
// plugin have incompatible versions": plugin_default_version_check compares
// the configure arguments, which contain the package version). So the harness
// is compiled with plain g++ and -fsanitize-coverage=trace-pc, which calls
// __sanitizer_cov_trace_pc() at the start of every basic block; this maps
// (previous block, this block) to a byte of AFL's shared coverage map the way
// AFL's classic instrumentation does. AFL++'s afl-compiler-rt.o (fork server,
// shared memory, persistent mode) and libAFLDriver.a (main() calling
// LLVMFuzzerTestOneInput) are linked unchanged.
#include <cstdint>

extern "C" uint8_t* __afl_area_ptr;  // points at a private dummy map until afl-fuzz's map is attached

namespace {
// 64 KiB is AFL's default map size (MAP_SIZE), which afl-compiler-rt maps when
// no pcguard instrumentation announces a larger one.
constexpr uintptr_t kMapMask = (1u << 16) - 1;
thread_local uintptr_t prev_location = 0;
}  // namespace

extern "C" __attribute__((no_sanitize_coverage, no_sanitize("address", "undefined"))) void __sanitizer_cov_trace_pc() {
  auto pc = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
  uintptr_t location = (pc ^ (pc >> 16) ^ (pc >> 32)) & kMapMask;
  __afl_area_ptr[location ^ prev_location]++;
  prev_location = location >> 1;
}
