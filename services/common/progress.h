#pragma once
// Progress of long work on stderr: a bar with a rate and an ETA on a
// terminal, plain lines every 10% otherwise (logs, CI). `starling simulate`
// and `starling replay` share it.

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace starling {

class Progress {
 public:
  explicit Progress(std::string what) : what_(std::move(what)), tty_(::isatty(STDERR_FILENO) != 0) {}
  /// `note` is appended to the line (e.g. "paused").
  void operator()(uint64_t done, uint64_t total, const std::string& note = {}) {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    const double rate = secs > 0 ? static_cast<double>(done) / secs : 0;
    const double eta = rate > 0 && total > done ? static_cast<double>(total - done) / rate : 0;
    if (tty_) {
      const int width = 30;
      const int filled = total ? static_cast<int>(width * std::min(done, total) / total) : width;
      fmt::print(stderr, "\r{} [{}{}] {}/{} {:.0f}/s ETA {:.0f}s {}   ", what_, std::string(filled, '#'),
                 std::string(width - filled, '.'), done, total, rate, eta, note);
      if (done == total) fmt::print(stderr, "\n");
    } else if ((total && (done * 10 / total != last_decile_ || done == total)) || note != last_note_) {
      last_decile_ = total ? done * 10 / total : 0;
      last_note_ = note;
      fmt::print(stderr, "{}: {}/{} ({:.0f}/s, ETA {:.0f}s){}{}\n", what_, done, total, rate, eta,
                 note.empty() ? "" : " ", note);
    }
  }

 private:
  std::string what_;
  bool tty_;
  uint64_t last_decile_ = 0;
  std::string last_note_;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

}  // namespace starling
