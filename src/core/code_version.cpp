#include "core/code_version.h"

namespace undo {

std::string code_version_text() {
  return std::string(kGitCommit) + (kGitDirty ? " (with uncommitted changes)" : "");
}

}  // namespace undo
