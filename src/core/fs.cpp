#include "core/fs.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace undo {

int create_exclusive(const std::string& prefix, std::string* path) {
  // A name nobody can predict, created only if nothing (not even a dangling
  // symlink) is there: a link planted at PATH.tmp.* cannot redirect the write.
  static std::atomic<uint64_t> counter{0};
  for (int attempt = 0; attempt < 100; ++attempt) {
    uint64_t salt = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                    (uint64_t(::getpid()) << 32) ^ (counter.fetch_add(1) * 0x9E3779B97F4A7C15ull);
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, "%d.%016llx", int(::getpid()), static_cast<unsigned long long>(salt));
    *path = prefix + suffix;
    int fd = ::open(path->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd >= 0) return fd;
    UNDO_CHECK(errno == EEXIST, "cannot create ", *path, ": ", std::strerror(errno));
  }
  UNDO_FAIL("cannot create a temporary file next to ", prefix, ": every name tried exists");
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFileWriter out(path);
  out.write(bytes.data(), bytes.size());
  out.commit();
}

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)) {
  fd_ = create_exclusive(path_ + ".tmp.", &tmp_);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ < 0) return;
  ::close(fd_);
  ::unlink(tmp_.c_str());
}

// Any failure removes the temporary and names it.
void AtomicFileWriter::fail(const std::string& what) {
  int err = errno;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
  UNDO_FAIL(what, " ", tmp_, " failed: ", std::strerror(err));
}

void AtomicFileWriter::write(const void* data, size_t n) {
  write_at(size_, data, n);
}

void AtomicFileWriter::write_at(uint64_t offset, const void* data, size_t n) {
  UNDO_CHECK(fd_ >= 0, "write to ", path_, " after it was committed or failed");
  const char* p = static_cast<const char*>(data);
  size_t off = 0;
  while (off < n) {
    ssize_t k = ::pwrite(fd_, p + off, n - off, off_t(offset + off));
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) fail("write to");
    off += size_t(k);
  }
  size_ = std::max(size_, offset + n);
}

void AtomicFileWriter::commit() {
  UNDO_CHECK(fd_ >= 0, "commit of ", path_, " after it was committed or failed");
  if (::fsync(fd_) != 0) fail("fsync of");
  const int fd = fd_;
  fd_ = -1;  // closed below whatever happens
  if (::close(fd) != 0) fail("close of");
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) fail("rename to " + path_ + " of");
}

int open_regular_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  UNDO_INPUT_CHECK(fd >= 0, "cannot open file '", path, "': ", std::strerror(errno));
  struct stat st {};
  const bool stat_ok = ::fstat(fd, &st) == 0;
  if (!stat_ok || !S_ISREG(st.st_mode)) {
    const int err = errno;
    ::close(fd);
    UNDO_CHECK(stat_ok, "fstat of '", path, "' failed: ", std::strerror(err));
    const char* kind = S_ISDIR(st.st_mode)   ? "a directory"
                       : S_ISFIFO(st.st_mode) ? "a FIFO"
                       : S_ISCHR(st.st_mode)  ? "a character device"
                       : S_ISBLK(st.st_mode)  ? "a block device"
                       : S_ISSOCK(st.st_mode) ? "a socket"
                                              : "not a regular file";
    UNDO_INPUT_CHECK(false, "'", path, "' is ", kind, ", not a file");
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

std::string read_file(const std::string& path) {
  const int fd = open_regular_file(path);
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      UNDO_CHECK(n == 0, "reading '", path, "' failed: ", std::strerror(err));
      return out;
    }
    out.append(buf, size_t(n));
  }
}

MappedFile::MappedFile(const std::string& path) {
  int fd = open_regular_file(path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    UNDO_FAIL("fstat of ", path, " failed: ", std::strerror(err));
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) map_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);  // the mapping keeps the file
  UNDO_CHECK(map_ != MAP_FAILED, "mmap of ", path, " failed: ", std::strerror(err));
}

MappedFile::~MappedFile() {
  if (map_ && map_ != MAP_FAILED) ::munmap(map_, size_);
}

bool file_exists(const std::string& path) { return std::filesystem::exists(path); }
bool is_directory(const std::string& path) { return std::filesystem::is_directory(path); }

void make_dirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  UNDO_CHECK(!ec, "cannot create directory ", path, ": ", ec.message());
}

std::string join_path(const std::string& a, const std::string& b) {
  return (std::filesystem::path(a) / b).string();
}

FileLock::FileLock(const std::string& path, bool wait, const std::string& holder) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  UNDO_CHECK(fd_ >= 0, "cannot open lock file ", path, ": ", std::strerror(errno));
  while (::flock(fd_, LOCK_EX | (wait ? 0 : LOCK_NB)) != 0) {
    if (!wait && errno == EWOULDBLOCK) {
      ::close(fd_);
      fd_ = -1;
      UNDO_INPUT_FAIL("'", path, "' is locked: ", holder, " is using it (nothing was changed)");
    }
    UNDO_CHECK(errno == EINTR, "cannot lock ", path, ": ", std::strerror(errno));
  }
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

}  // namespace undo
