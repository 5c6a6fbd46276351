#include <cmath>

#include "train/objectives/unlearning.h"

namespace undo {

torch::Tensor kl_uniform_to_model(const torch::Tensor& logits) {
  auto logp = torch::log_softmax(logits.to(torch::kFloat), -1);
  double V = double(logits.size(-1));
  return -std::log(V) - logp.mean(-1).mean();
}

torch::Tensor MaxEntObjective::loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) {
  auto kl = kl_uniform_to_model(model->forward(forget_windows(mb).narrow(1, 0, window_)));
  auto ce_retain = next_token_ce(model, retain_windows(mb));
  add_log(logs, "kl_uniform", kl);
  add_log(logs, "retain_ce", ce_retain);
  return kl + a_ * ce_retain;
}

}  // namespace undo
