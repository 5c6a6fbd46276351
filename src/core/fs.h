// Files: atomic writes (temp name + rename, so a reader never sees half a
// file), whole-file reads, and small path helpers.
#pragma once
#include <string>
#include <string_view>

namespace undo {

// Writes `bytes` to `path` atomically: a fresh PATH.tmp.<pid>.<random> is
// created exclusively (never through a symlink), written, fsync'ed and renamed
// over PATH; on any error it is removed and the error names it.
void write_file_atomic(const std::string& path, std::string_view bytes);
// Creates PREFIX<pid>.<random> with O_EXCL | O_NOFOLLOW and returns its fd
// (the name in `path`): how write_file_atomic makes its temporary file.
int create_exclusive(const std::string& prefix, std::string* path);
std::string read_file(const std::string& path);
bool file_exists(const std::string& path);
bool is_directory(const std::string& path);
void make_dirs(const std::string& path);
std::string join_path(const std::string& a, const std::string& b);

// An exclusive advisory lock (flock) on PATH, created if missing, held until
// destruction. Blocks while another process holds it; the kernel releases it
// when a holder dies, so a killed writer never leaves the lock stuck.
class FileLock {
 public:
  // With wait = false, a lock held elsewhere throws InputError naming `path`
  // and `holder` (what holds it, for the message) instead of blocking.
  explicit FileLock(const std::string& path, bool wait = true, const std::string& holder = "another process");
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace undo
