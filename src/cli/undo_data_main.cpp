// undo-data: the data stage as a program of its own, with no LibTorch in it
// (see CMakeLists.txt for why). Users call it as `undo data prepare ...`,
// which execs this binary; calling it directly works the same.
#include <iostream>

#include "core/error.h"
#include "prepare/mcq_tokenize.h"
#include "prepare/prepare.h"

namespace {

// `undo data mcq`: a question file's tokens by a prepared directory's
// tokenizer (prepare/mcq_tokenize.h), for `undo eval --mcq`.
int mcq_stage(int argc, const char* const* argv) {
  undo::Config cfg;
  std::string questions, out;
  if (!undo::parse_config(argc - 1, argv + 1, "data mcq", cfg,
                          {{"questions", "multiple-choice questions (JSONL: question, choices, answer)", &questions,
                            true, true},
                           {"out", "where their tokens go", &out, true}}))
    return 0;
  undo::tokenize_mcq_file(cfg.data.dir, questions, out);
  return 0;
}

int data_stage(int argc, const char* const* argv) {
  std::string action = argc >= 2 ? argv[1] : "";
  if (action == "mcq") return mcq_stage(argc, argv);
  UNDO_INPUT_CHECK(action == "prepare" || action == "--help",
                   "usage: undo data prepare [--config FILE] [--data.key VALUE ...]\n"
                   "       undo data mcq --data.dir DIR --questions FILE.jsonl --out TOKENS.jsonl");
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
