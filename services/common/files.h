#pragma once
// Files that are replaced whole and read by another process (port files, a
// replay's state and control files): a reader sees the old content or the
// new, never a torn file, and a crash leaves one of the two.

#include <string>

#include "services/common/error.h"

namespace starling {

/// Writes `content` to a temporary file beside `path` (same folder, so the
/// rename cannot cross file systems), fsyncs it, renames it over `path` and
/// fsyncs the folder, so the new content is durable once this returns.
/// On failure `path` is unchanged and the temporary file is gone.
Status write_file_atomically(const std::string& path, const std::string& content);

/// The first line of a control file another process wrote (a command's
/// pause, resume or cancel), removing the file once read; "" when there is
/// none.
std::string take_control_file(const std::string& path);

}  // namespace starling
