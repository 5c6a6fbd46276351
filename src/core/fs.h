// Files: atomic writes (temp name + rename, so a reader never sees half a
// file), whole-file reads, and small path helpers.
#pragma once
#include <string>
#include <string_view>

namespace undo {

// Writes `bytes` to `path` atomically: PATH.tmp.<pid> is written, flushed,
// fsync'ed and renamed over PATH.
void write_file_atomic(const std::string& path, std::string_view bytes);
std::string read_file(const std::string& path);
bool file_exists(const std::string& path);
void make_dirs(const std::string& path);
std::string join_path(const std::string& a, const std::string& b);

// An exclusive advisory lock (flock) on PATH, created if missing, held until
// destruction. Blocks while another process holds it; the kernel releases it
// when a holder dies, so a killed writer never leaves the lock stuck.
class FileLock {
 public:
  explicit FileLock(const std::string& path);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace undo
