// One function per subcommand; each parses its config and calls the library.
#pragma once
#include <string>
#include <vector>

#include "core/config.h"
#include "model/device.h"

namespace undo {

int stage_data(int argc, const char* const* argv);  // execs undo-data (no LibTorch there)
// Runs undo-data (next to this executable) with `args` and waits: what a
// stage that needs the tokenizer calls. InputError when it exits 2 (it has
// said why on stderr), RuntimeError on any other failure.
void run_data_tool(const std::vector<std::string>& args);
int stage_pretrain(int argc, const char* const* argv);
int stage_unlearn(int argc, const char* const* argv);
int stage_distill(int argc, const char* const* argv);
int stage_cache_logits(int argc, const char* const* argv);
int stage_cache(int argc, const char* const* argv);  // ls | verify | gc
int stage_relearn(int argc, const char* const* argv);
int stage_sweep(int argc, const char* const* argv);
int stage_report(int argc, const char* const* argv);
int stage_eval(int argc, const char* const* argv);
int stage_export(int argc, const char* const* argv);
int stage_import(int argc, const char* const* argv);  // a Hugging Face model as a checkpoint

// Shared set-up of the training stages: resolves model.vocab_size from the
// vocabulary in data.dir, joins the job's ranks (when launched on several),
// creates run.dir, writes the resolved config.ini and version.json (rank 0), sets the thread
// count and selects the compute device (run.device); the stage then moves its
// models there. Throws InputError before any compute on bad input.
void prepare_run(Config& cfg);

// What `undo --version` prints: the commit (and whether the tree had
// changes), LibTorch's and the CUDA runtime's versions.
std::string version_text();
// The same as RUN_DIR/version.json ({"commit", "dirty", "libtorch", "cuda"}),
// which every run directory holds (prepare_run and import write it).
std::string version_record();

// Refuses (InputError, exit 2) a stage that writes a run directory when none
// is given: no command line --run-dir and no [run] dir in its config. undo
// writes nothing in the current directory unless a path says so.
void require_run_dir(const Config& cfg);

// True on rank 0 or in a single-process run: the rank that writes files.
bool is_writer();


}  // namespace undo
