// undo-data: the data stage as a program of its own, with no LibTorch in it
// (see CMakeLists.txt for why). Users call it as `undo data prepare ...`,
// which execs this binary; calling it directly works the same.
#include <iostream>

#include "core/error.h"
#include "prepare/prepare.h"

namespace {

int data_stage(int argc, const char* const* argv) {
  std::string action = argc >= 2 ? argv[1] : "";
  UNDO_INPUT_CHECK(action == "prepare" || action == "--help",
                   "usage: undo data prepare [--config FILE] [--data.key VALUE ...]");
  undo::Config cfg;
  int skip = action == "prepare" ? 1 : 0;  // parse_config skips argv[0]
  if (!undo::parse_config(argc - skip, argv + skip, "data prepare", cfg)) return 0;
  undo::prepare_data(cfg);
  std::cout << cfg.data.dir << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return data_stage(argc, argv);
  } catch (const undo::InputError& e) {
    std::cerr << "undo data: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "undo data: fatal: " << e.what() << "\n";
    return 1;
  }
}
