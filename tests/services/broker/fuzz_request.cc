// Fuzz target over the whole request path: frame -> header -> decoder ->
// handler of a real in-process Broker (temporary data directory). Any crash,
// sanitizer report or hang is a bug; errors are expected.
//
// LLVMFuzzerTestOneInput is the entry point; main() is the shared driver of
// tests/support/fuzz_main.h, seeded with valid requests:
//   broker_fuzz_request [iterations] [seed] [corpus files or dirs...]
// Coverage-guided fuzzing: `tools/fuzz broker` builds this same entry point
// into broker_fuzz_afl (AFL++, see tests/support/afl_trace_pc.cc) over fuzz_corpus/.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <random>

#include "services/broker/broker.h"
#include "tests/services/broker/request_bodies.h"
#include "tests/services/broker/test_batches.h"
#include "tests/support/fuzz_main.h"

namespace sb = starling::broker;

namespace {

using sb::testing::fetch_body;
using sb::testing::join_group_body;
using sb::testing::metadata_body;
using sb::testing::offset_commit_body;
using sb::testing::produce_body;
using sb::testing::sync_group_body;

struct Harness {
  Harness() {
    // $TMPDIR when set, so tools/fuzz can keep (and clean) the
    // directories of AFL++'s crashed children under its own build dir.
    std::string tmpl = (std::filesystem::temp_directory_path() / "broker-fuzz-XXXXXX").string();
    dir = ::mkdtemp(tmpl.data());
    sb::BrokerConfig config;
    config.data_dir = dir;
    config.default_partitions = 2;
    // Interval flush: appends complete without waiting for the flusher
    // thread, so each input finishes within one poll().
    config.flush_interval_ms = 1000;
    // JoinGroup completes at once instead of waiting for more members.
    config.groups.initial_rebalance_delay = std::chrono::milliseconds(0);
    broker = std::make_unique<sb::Broker>(io.get_executor(), config);
    spdlog::set_level(spdlog::level::err);
  }
  ~Harness() {
    broker.reset();
    std::filesystem::remove_all(dir);
  }
  void run(const uint8_t* data, size_t size) {
    sb::Bytes frame(data, data + size);
    sb::asio::co_spawn(
        io,
        [this, frame = std::move(frame)]() mutable -> sb::asio::awaitable<void> {
          (void)co_await broker->handle(std::move(frame), "fuzz");
        },
        sb::asio::detached);
    // Parked handlers (long polls, joins) stay parked; their timers are not run.
    io.poll();
    io.restart();
  }
  std::filesystem::path dir;
  sb::asio::io_context io;
  std::unique_ptr<sb::Broker> broker;
};

Harness& harness() {
  static Harness h;
  return h;
}

sb::Bytes frame(int16_t key, int16_t version, const sb::Bytes& body) {
  sb::Writer w;
  w.i16(key);
  w.i16(version);
  w.i32(1);
  w.nullable_string(std::string("fuzz"));
  w.raw(body.data(), body.size());
  return w.take();
}

[[maybe_unused]] std::vector<sb::Bytes> seeds() {
  std::vector<sb::Bytes> out;
  auto batch = sb::testing::make_batch({{"a", "bb"}, 1000, 77, 0, 0});
  for (int16_t v = 3; v <= 7; ++v) out.push_back(frame(0, v, produce_body("fz", batch)));
  for (int16_t v = 4; v <= 11; ++v) out.push_back(frame(1, v, fetch_body(v, "fz", 0, /*max_wait_ms=*/1)));
  for (int16_t v = 0; v <= 8; ++v) out.push_back(frame(3, v, metadata_body(v, "fz", true)));
  for (int16_t v = 0; v <= 5; ++v) out.push_back(frame(11, v, join_group_body(v, "grp")));
  out.push_back(frame(14, 0, sync_group_body(0, "grp", 1, "m", sb::Bytes{1})));
  for (int16_t v = 2; v <= 7; ++v) out.push_back(frame(8, v, offset_commit_body(v, "grp", -1, "", "fz", 1)));
  {
    sb::Writer w;
    w.array_len(1);
    w.string("fz2");
    w.i32(3);
    w.i16(1);
    w.array_len(0);
    w.array_len(0);
    w.i32(100);
    w.boolean(false);
    out.push_back(frame(19, 1, w.take()));
  }
  out.push_back(frame(18, 2, {}));
  out.push_back(frame(16, 1, {}));
  // Admin APIs on data and configs.
  for (int16_t v = 0; v <= 1; ++v) {
    out.push_back(frame(37, v, sb::testing::create_partitions_body("fz", 3, std::vector<std::vector<int32_t>>{{0}})));
    out.push_back(frame(21, v, sb::testing::delete_records_body("fz", 0, -1)));
    out.push_back(frame(33, v, sb::testing::alter_configs_body(2, "fz", {{"retention.ms", "1000"}})));
  }
  for (int16_t v = 0; v <= 3; ++v) {
    out.push_back(frame(
        32, v,
        sb::testing::describe_configs_body(v, {{2, "fz", std::nullopt}, {4, "0", std::vector<std::string>{"x"}}})));
  }
  out.push_back(frame(44, 0, sb::testing::incremental_alter_configs_body(2, "fz", {{"segment.bytes", 0, "100"}})));
  // The group admin side: static members (KIP-345), DescribeGroups, DeleteGroups.
  out.push_back(frame(11, 5, sb::testing::join_group_v5_body("grp", "", "inst", sb::Bytes{0, 1})));
  out.push_back(frame(11, 5, sb::testing::join_group_v5_body("grp", "m", "inst", sb::Bytes{})));
  out.push_back(frame(14, 3, sb::testing::sync_group_v3_body("grp", 1, "m", "inst", {{"m", sb::Bytes{1}}})));
  out.push_back(frame(12, 3, sb::testing::heartbeat_body(3, "grp", 1, "m", "inst")));
  out.push_back(frame(8, 7, offset_commit_body(7, "grp", 1, "m", "fz", 1, std::string("inst"))));
  out.push_back(
      frame(13, 3, sb::testing::leave_group_v3_body("grp", {{"", std::string("inst")}, {"m", std::nullopt}})));
  for (int16_t v = 0; v <= 4; ++v) out.push_back(frame(15, v, sb::testing::groups_body(15, v, {"grp", "x"})));
  for (int16_t v = 0; v <= 1; ++v) out.push_back(frame(42, v, sb::testing::groups_body(42, v, {"grp", "", "x"})));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  harness().run(data, size);
  return 0;
}

#ifndef STARLING_LIBFUZZER
int main(int argc, char** argv) try {
  return starling::testing::fuzz_main(argc, argv, seeds(), "requests");
} catch (const std::exception& e) {
  std::fprintf(stderr, "broker_fuzz_request: %s\n", e.what());
  return 1;
}
#endif
