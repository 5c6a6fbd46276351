#include "core/fs.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace undo {

void write_file_atomic(const std::string& path, std::string_view bytes) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  UNDO_CHECK(fd >= 0, "cannot create ", tmp, ": ", std::strerror(errno));
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      UNDO_FAIL("write to ", tmp, " failed: ", std::strerror(err));
    }
    off += size_t(n);
  }
  UNDO_CHECK(::fsync(fd) == 0, "fsync ", tmp, ": ", std::strerror(errno));
  ::close(fd);
  UNDO_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "rename ", tmp, " -> ", path, ": ",
             std::strerror(errno));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  UNDO_INPUT_CHECK(in, "cannot open file '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool file_exists(const std::string& path) { return std::filesystem::exists(path); }

void make_dirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  UNDO_CHECK(!ec, "cannot create directory ", path, ": ", ec.message());
}

std::string join_path(const std::string& a, const std::string& b) {
  return (std::filesystem::path(a) / b).string();
}

FileLock::FileLock(const std::string& path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT, 0644);
  UNDO_CHECK(fd_ >= 0, "cannot open lock file ", path, ": ", std::strerror(errno));
  while (::flock(fd_, LOCK_EX) != 0) UNDO_CHECK(errno == EINTR, "cannot lock ", path, ": ", std::strerror(errno));
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

}  // namespace undo
