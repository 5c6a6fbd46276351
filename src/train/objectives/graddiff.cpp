#include "train/objectives/unlearning.h"

namespace undo {

uint64_t retain_seed(uint64_t seed) { return splitmix64(seed ^ 0x7265746169ULL); }

torch::Tensor GradDiffObjective::loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) {
  auto ce_forget = next_token_ce(model, forget_windows(mb));
  auto ce_retain = next_token_ce(model, retain_windows(mb));
  add_log(logs, "forget_ce", ce_forget);
  add_log(logs, "retain_ce", ce_retain);
  return -ce_forget + a_ * ce_retain;
}

}  // namespace undo
