// Which code produced a result: the git commit undo was built from, and
// whether the tree had uncommitted changes then (cmake/code_version.cmake
// writes both at every build). `undo --version` prints them, and every run
// directory records them in version.json beside config.ini, so that a number
// in docs/ or a sweep's results can be traced to the code that computed it.
#pragma once
#include <string>

namespace undo {

extern const char* const kGitCommit;  // 40 hex digits, or "unknown" outside a git checkout
extern const bool kGitDirty;

// "0123abcd..." or "0123abcd... (with uncommitted changes)".
std::string code_version_text();

}  // namespace undo
