// `undo data ...` runs the torch-free `undo-data` program in this process's
// place (execv: same PID, same exit code), so that sentencepiece is never
// loaded next to LibTorch. It is looked for next to the running executable.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "cli/stages.h"
#include "core/error.h"

namespace undo {

int stage_data(int argc, const char* const* argv) {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  UNDO_CHECK(!ec, "cannot find the running executable: ", ec.message());
  std::string tool = (exe.parent_path() / "undo-data").string();
  std::vector<char*> args{const_cast<char*>(tool.c_str())};
  for (int i = 1; i < argc; ++i) args.push_back(const_cast<char*>(argv[i]));
  args.push_back(nullptr);
  ::execv(tool.c_str(), args.data());
  UNDO_FAIL("cannot run '", tool, "' (built next to undo): ", std::strerror(errno));
}

}  // namespace undo
