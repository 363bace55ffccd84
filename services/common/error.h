#pragma once
// Errors are values on the data path (STYLE.md §3): std::expected<T, Error>
// carries a code and a message that names what was wrong.

#include <spdlog/spdlog.h>

#include <expected>
#include <string>
#include <utility>

namespace starling {

enum class Errc {
  kInvalidArgument,  // the caller's input is wrong; the message says which field
  kNotFound,
  kUnavailable,  // a dependency (broker, DB) is down; retry later
  kTimeout,
  kIo,
  kInternal,
};

struct Error {
  Errc code;
  std::string message;
};

template <class T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> fail(Errc code, std::string message) {
  return std::unexpected(Error{code, std::move(message)});
}

}  // namespace starling

// A broken invariant crashes loudly; it is never swallowed.
#define STARLING_ASSERT(cond, ...)                                                                                \
  do {                                                                                                            \
    if (!(cond)) {                                                                                                \
      spdlog::critical("assertion failed at {}:{}: {}: {}", __FILE__, __LINE__, #cond, fmt::format(__VA_ARGS__)); \
      spdlog::shutdown();                                                                                         \
      std::abort();                                                                                               \
    }                                                                                                             \
  } while (0)
