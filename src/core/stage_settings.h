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

}  // namespace undo
