# Run at every build (the undo_code_version target): writes OUT, the C++ file
# that tells undo which commit it was built from and whether the tree had
# changes (git status, tracked files), rewriting it only when that changed so
# that an unchanged tree rebuilds nothing. Outside a git checkout (a tarball)
# the commit is "unknown".
execute_process(COMMAND git -C "${SRC}" rev-parse HEAD OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE
                RESULT_VARIABLE rc ERROR_QUIET)
set(dirty false)
if(NOT rc EQUAL 0 OR commit STREQUAL "")
  set(commit unknown)
else()
  execute_process(COMMAND git -C "${SRC}" status --porcelain --untracked-files=no OUTPUT_VARIABLE changes ERROR_QUIET)
  if(NOT changes STREQUAL "")
    set(dirty true)
  endif()
endif()
set(text "// Written by cmake/code_version.cmake at build time.\n#include \"core/code_version.h\"\nnamespace undo {\nconst char* const kGitCommit = \"${commit}\";\nconst bool kGitDirty = ${dirty};\n}  // namespace undo\n")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
