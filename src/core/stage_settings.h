// The training settings a stage sets for itself, in one place. Unlearning,
// distillation and the relearning attack each train with their own budget
// (unlearn.*, distill.*, relearn.*) and the optimiser the spec fixes for them,
// which replace the general optim.* / train.* keys (in a shared config those
// are the pretraining budget). A general key given on the command line that
// the stage would replace with another value is refused (InputError, exit 2),
// naming the stage key to use: a flag is never silently ignored.
#pragma once
#include <string>
#include <vector>

#include "core/config.h"

namespace undo {

enum class TrainingStage { Unlearn, Distill, Relearn };

// Sets cfg's optim.* and train.* for `stage` (the attack's `attack_lr` for
// Relearn), after checking that no command-line key is overridden.
void apply_stage_settings(Config& cfg, TrainingStage stage, double attack_lr = 0);

// The general keys `stage` sets itself ("optim.lr", ...). A sweep passes its
// overrides of these keys to pretraining only.
std::vector<std::string> stage_owned_keys(TrainingStage stage);

// Whether `stage` (a command: "data", "pretrain", "unlearn", "cache-logits",
// "distill", "relearn"; a Trainer's "pretrain-base" counts as "pretrain")
// reads the config key `key`. Each stage's own section (pretrain.*,
// unlearn.*, distill.*, relearn.*) is read by that stage alone, and by
// cache-logits for distill.* (the cache's key); data preparation reads data.*
// and run.*. A sweep job's hash and a run's identity cover exactly the
// keys their stage reads: an [unlearn] budget used to change the pretraining
// jobs' hashes, so that base and oracle were retrained.
bool stage_reads_key(const std::string& stage, const std::string& key);

// The relearning attack's batch: relearn.batch_size rows per rank, or, where
// that is 0, the rows whose whole attack (relearn.steps x relearn.accum
// micro-batches) replays relearn.forget_share of the forget rows pretraining
// saw (train.steps x train.batch_size x train.accum, the share of
// data.base_mix that is data.forget_mix), at least one. `forget_share` is the
// share the batch replays (NaN where base_mix holds no forget stream). Both
// are per rank, so pretraining and the attack at one world size compare.
struct AttackBatch {
  int rows = 0;
  double forget_share = 0;
};
AttackBatch attack_batch(const Config& cfg);

}  // namespace undo
