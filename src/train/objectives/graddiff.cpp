#include "train/objectives/unlearning.h"

namespace undo {

uint64_t retain_seed(uint64_t seed) { return splitmix64(seed ^ 0x7265746169ULL); }

GradDiffObjective::GradDiffObjective(std::shared_ptr<StreamMix> forget, std::shared_ptr<StreamMix> retain,
                                     int window, double retain_coef)
    : forget_(std::move(forget)), retain_(std::move(retain)), window_(window), a_(retain_coef) {}

torch::Tensor GradDiffObjective::loss(Transformer& model, const MicroBatch& mb, std::map<std::string, double>* logs) {
  auto ce_forget = next_token_ce(model, window_tensor(*forget_, mb, window_));
  MicroBatch rb = mb;
  rb.seed = retain_seed(mb.seed);
  auto ce_retain = next_token_ce(model, window_tensor(*retain_, rb, window_));
  if (logs) {
    (*logs)["forget_ce"] += ce_forget.item<double>();
    (*logs)["retain_ce"] += ce_retain.item<double>();
  }
  return -ce_forget + a_ * ce_retain;
}

}  // namespace undo
