// Who may write a run directory, and which checkpoints belong to its run.
// A run directory is written by one process tree at a time (a lock held for
// the process's life), a fresh run never starts over another run's
// checkpoints (nothing there is deleted or pruned), and --resume continues only
// a checkpoint of the same run: every checkpoint carries its run's identity
// (the settings that determine its result, the data manifest's and tokenizer's
// sha256 and the global batch), and a mismatch is refused naming each
// differing key. The directory also records the sha256 of the stage's input
// files (cfg.inputs: --base, --teacher, --model) in inputs.json, and every
// later run there must have the same ones.
#pragma once
#include <map>
#include <string>

#include "core/config.h"
#include "train/checkpoint.h"

namespace undo {

// The identity of the run `cfg` describes, at `world` ranks: "key" -> value.
// Left out are keys that may change on resume without changing the result:
// where and how fast it runs (run.dir, run.threads, run.device, dist.*), how
// often it logs, evaluates and checkpoints, its total step count (a run may be
// extended), and the per-rank batch (the global batch is in instead).
std::map<std::string, std::string> run_identity(Config& cfg, int world);

// Identity entries as checkpoint meta (`id.` keys), and back.
void stamp_identity(CheckpointMeta& meta, const std::map<std::string, std::string>& identity);
// The keys whose values differ, "key a (this run: b), ..."; "" when none, or
// when the checkpoint predates identities.
std::string identity_mismatch(const CheckpointMeta& meta, const std::map<std::string, std::string>& identity);

// Called by every rank before anything is written to cfg.run.dir (rank 0
// decides, the others learn the outcome): locks the directory for this
// process's life, refuses a fresh run where step checkpoints exist, and on
// --resume refuses the latest valid checkpoint of another run. InputErrors
// name the directory and, for a mismatch, the keys.
void claim_run_dir(Config& cfg);

// After a failed start (bad input, exit 2): removes each run directory this
// process created that holds nothing but what claiming and preparing it wrote
// (config.ini, inputs.json, version.json, .lock), so that a refused run leaves nothing behind.
void remove_abandoned_run_dirs();

}  // namespace undo
