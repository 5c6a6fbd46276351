#include "fuzz_util.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>

namespace undo::fuzz {

const std::string& scratch_file(const std::string& bytes, const char* suffix) {
  static std::map<std::string, std::string> paths;
  auto& path = paths[suffix];
  if (path.empty()) {
    const char* dir = std::getenv("TMPDIR");
    path = std::string(dir && *dir ? dir : "/tmp") + "/undo-fuzz-" + std::to_string(::getpid()) + suffix;
  }
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  return path;
}

}  // namespace undo::fuzz
