// `undo data ...` runs the torch-free `undo-data` program in this process's
// place (execv: same PID, same exit code), so that sentencepiece is never
// loaded next to LibTorch. It is looked for next to the running executable.
// Stages that need the tokenizer for a moment (`undo eval --mcq`) run it as a
// child instead (run_data_tool).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "cli/stages.h"
#include "core/error.h"

extern char** environ;

namespace undo {
namespace {

std::string data_tool() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  UNDO_CHECK(!ec, "cannot find the running executable: ", ec.message());
  return (exe.parent_path() / "undo-data").string();
}

}  // namespace

int stage_data(int argc, const char* const* argv) {
  const std::string tool = data_tool();
  std::vector<char*> args{const_cast<char*>(tool.c_str())};
  for (int i = 1; i < argc; ++i) args.push_back(const_cast<char*>(argv[i]));
  args.push_back(nullptr);
  ::execv(tool.c_str(), args.data());
  UNDO_FAIL("cannot run '", tool, "' (built next to undo): ", std::strerror(errno));
}

void run_data_tool(const std::vector<std::string>& args) {
  const std::string tool = data_tool();
  std::vector<char*> argv{const_cast<char*>(tool.c_str())};
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, tool.c_str(), nullptr, nullptr, argv.data(), environ);
  UNDO_CHECK(rc == 0, "cannot run '", tool, "' (built next to undo): ", std::strerror(rc));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) UNDO_CHECK(errno == EINTR, "waitpid: ", std::strerror(errno));
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  UNDO_INPUT_CHECK(code != 2, "undo data ", args.empty() ? "" : args[0], " refused its input (above)");
  UNDO_CHECK(code == 0, "undo data ", args.empty() ? "" : args[0], " failed with exit code ", code);
}

}  // namespace undo
