#include "services/common/files.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string_view>

namespace starling {
namespace {

// What failed, in errno's words.
std::unexpected<Error> io_error(const std::string& what) {
  return fail(Errc::kIo, fmt::format("{}: {}", what, std::strerror(errno)));
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace

Status write_file_atomically(const std::string& path, const std::string& content) {
  // The pid keeps two processes that replace the same file off each other's
  // temporary file.
  const auto tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return io_error(tmp);
  if (!write_all(fd, content) || ::fsync(fd) != 0) {
    auto error = io_error(tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return error;
  }
  if (::close(fd) != 0) {
    auto error = io_error(tmp);
    ::unlink(tmp.c_str());
    return error;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    auto error = io_error(path);
    ::unlink(tmp.c_str());
    return error;
  }
  // The rename lives in the folder: until the folder is synced too, a power
  // cut may bring the old file back.
  auto dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return io_error(dir);
  if (::fsync(dir_fd) != 0) {
    auto error = io_error(dir);
    ::close(dir_fd);
    return error;
  }
  ::close(dir_fd);
  return {};
}

std::string take_control_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return {};
  std::string action;
  std::getline(in, action);
  in.close();
  ::unlink(path.c_str());
  return action;
}

}  // namespace starling
