// undo: every stage of an Unlearn-and-Distill experiment behind one program.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "cli/stages.h"
#include "core/error.h"
#include "core/spelling.h"
#include "core/stop_signal.h"
#include "distributed/communicator.h"
#include "distributed/launch.h"
#include "train/run_dir.h"

namespace {

struct Command {
  int (*run)(int, const char* const*);
  const char* help;
  // A stage that checkpoints at safe points (exit 75 on SIGTERM / SIGUSR1):
  // its handlers go in before its first instruction, so that a signal during
  // start-up (data loading, checkpoint verification) is kept for the first
  // safe point instead of ending the process with 143.
  bool resumable = false;
};

const std::map<std::string, Command>& commands() {
  static const std::map<std::string, Command> c = {
      {"data", {undo::stage_data, "data prepare: extract, filter and tokenize corpora into token shards"}},
      {"pretrain", {undo::stage_pretrain, "train the base (pretrain.target=base) or oracle model", true}},
      {"unlearn", {undo::stage_unlearn, "unlearn the forget data from --base (unlearn.method, +SAM with unlearn.sam_rho)", true}},
      {"cache-logits", {undo::stage_cache_logits, "run --teacher over the distillation stream into an HDF5 logit cache", true}},
      {"cache", {undo::stage_cache, "cache ls [DIR] | verify FILE | gc DIR --keep-referenced [--yes]: manage logit caches"}},
      {"distill", {undo::stage_distill, "distill --teacher into a random (Unlearn-and-Distill) or noised (UNDO) student", true}},
      {"relearn", {undo::stage_relearn, "relearning attack on --model: finetune on forget data per LR, worst case per step", true}},
      {"sweep", {undo::stage_sweep, "sweep plan|run|status|collect --spec FILE --out DIR: the grid as a job graph, local or Slurm"}},
      {"report", {undo::stage_report, "report DIR: relearning curves and compute-vs-robustness plots (SVG) + Markdown"}},
      {"eval", {undo::stage_eval, "evaluate a checkpoint (retain/forget CE, arithmetic accuracy)"}},
      {"export", {undo::stage_export, "export a checkpoint: --format hf (a Hugging Face model directory) | safetensors"}},
      {"import", {undo::stage_import, "import --from-hf DIR: a Hugging Face Llama/Qwen2/Gemma/Gemma-2 model as a checkpoint"}},
  };
  return c;
}

void usage(std::ostream& os) {
  os << "usage: undo <stage> [--config FILE] [--section.key VALUE ...] [--run-dir DIR]\n\nstages:\n";
  for (auto& [name, c] : commands()) os << "  " << name << std::string(14 - name.size(), ' ') << c.help << "\n";
  os << "\n`undo <stage> --help` lists every configuration key with its default; `undo --version` the code's.\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::cout << undo::version_text();
    return 0;
  }
  auto it = commands().find(argv[1]);
  if (it == commands().end()) {
    std::vector<std::string> names;
    for (auto& [name, c] : commands()) names.push_back(name);
    std::cerr << "undo: unknown stage '" << argv[1] << "'" << undo::did_you_mean(argv[1], names) << "\n";
    usage(std::cerr);
    return 2;
  }
  // In a job of several ranks every message names its rank.
  std::string who = "undo " + std::string(argv[1]);
  try {
    auto launch = undo::detect_launch();
    if (launch.world > 1) who = "rank " + std::to_string(launch.rank) + ": " + who;
  } catch (const std::exception&) {
  }
  if (it->second.resumable) undo::install_stop_handlers();
  try {
    int rc = it->second.run(argc - 1, argv + 1);
    undo::shutdown_distributed();
    return rc;
  } catch (const undo::Preempted& e) {
    // Every rank stopped at the same safe point: they can still leave together.
    std::cerr << who << ": " << e.what() << "\n";
    undo::shutdown_distributed();
    return undo::kExitPreempted;
  } catch (const undo::InputError& e) {
    std::cerr << who << ": error: " << e.what() << "\n";
    undo::remove_abandoned_run_dirs();  // a refused run leaves nothing behind
    return 2;
  } catch (const std::exception& e) {
    std::cerr << who << ": fatal: " << e.what() << "\n";
    // After an I/O failure a library may hold a file it could not close (HDF5
    // on a full disk crashed in its exit handler, turning exit 1 into a
    // segfault): a failed run leaves without running exit handlers, so that its
    // exit code is the one reported. Our own files are closed or removed by now.
    std::fflush(nullptr);
    std::_Exit(1);
  }
}
