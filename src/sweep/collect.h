// `undo sweep collect`: the results table of a sweep, from its jobs' outputs.
#pragma once
#include <string>

#include "sweep/plan.h"

namespace undo {

// Writes OUT/results.csv (one row per model x attack LR: forget and retain
// metrics before the attack, after 40 steps and at the end; compute relative
// to the oracle's pretraining: the distillation's, the teacher's forward pass
// alone and shared by the students of its cache, the unlearning's, and their
// totals; the worst case over LRs and the robustness figure of the spec, with
// the mean and 95% bootstrap interval over the seeds of its configuration; the
// evaluation's size: problems per operation and format, validation windows) and OUT/curves.csv
// (each model's worst-case relearning curve). Models whose attacks are not all
// done are left out and counted in the return value.
int collect_results(const Plan& plan);

}  // namespace undo
