// Files: atomic writes (temp name + rename, so a reader never sees half a
// file), whole and mapped reads, and small path helpers.
#pragma once
#include <cstddef>
#include <cstdint>
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
// A file written piece by piece (too large to build in memory first, such as
// a checkpoint streamed from sharded weights) and still atomically: its bytes
// go to a fresh temporary name (as write_file_atomic's), and commit() fsyncs
// and renames it over PATH. Destroyed uncommitted, the temporary is removed.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  void write(const void* data, size_t n);                      // appends
  void write_at(uint64_t offset, const void* data, size_t n);  // overwrites (a header filled in last)
  uint64_t size() const { return size_; }
  void commit();

 private:
  [[noreturn]] void fail(const std::string& what);
  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// Opens PATH for reading, refusing (InputError naming it and what it is)
// anything but a regular file: a FIFO or a device given as a model file used
// to hang the reader (open waits for a FIFO's writer, a device never ends).
// Opened without blocking, then checked on the descriptor: no window between
// a check and the open. Returns the descriptor, to close.
int open_regular_file(const std::string& path);

std::string read_file(const std::string& path);

// A whole file mapped read-only: its pages are read as they are touched and
// are the kernel's to drop again, so a reader can take a slice of a file
// larger than its memory. Throws InputError naming the file when it cannot be opened.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return static_cast<const uint8_t*>(map_); }
  size_t size() const { return size_; }

 private:
  void* map_ = nullptr;
  size_t size_ = 0;
};
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
