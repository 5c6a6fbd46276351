#include "core/fs.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

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
  std::string tmp;
  int fd = create_exclusive(path + ".tmp.", &tmp);
  // Any failure removes the temporary and names it.
  auto fail = [&](const std::string& what) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    UNDO_FAIL(what, " ", tmp, " failed: ", std::strerror(err));
  };
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("write to");
    off += size_t(n);
  }
  if (::fsync(fd) != 0) fail("fsync of");
  int closed = ::close(fd);
  fd = -1;
  if (closed != 0) fail("close of");
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail("rename to " + path + " of");
}

std::string read_file(const std::string& path) {
  UNDO_INPUT_CHECK(!std::filesystem::is_directory(path), "'", path, "' is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  UNDO_INPUT_CHECK(in, "cannot open file '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
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
