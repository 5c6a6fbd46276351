#include <iostream>

#include "cli/stages.h"
#include "core/error.h"
#include "data/prepare.h"

namespace undo {

int stage_data(int argc, const char* const* argv) {
  std::string action = argc >= 2 ? argv[1] : "";
  UNDO_INPUT_CHECK(action == "prepare" || action == "--help",
                   "usage: undo data prepare [--config FILE] [--data.key VALUE ...]");
  Config cfg;
  int skip = action == "prepare" ? 1 : 0;  // parse_config skips argv[0]
  if (!parse_config(argc - skip, argv + skip, "data prepare", cfg)) return 0;
  prepare_data(cfg);
  std::cout << cfg.data.dir << "\n";
  return 0;
}

}  // namespace undo
