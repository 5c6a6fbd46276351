#include <cmath>

#include "train/objectives/unlearning.h"

namespace undo {

torch::Tensor kl_uniform_to_model(const torch::Tensor& logits) {
  auto logp = torch::log_softmax(logits.to(torch::kFloat), -1);
  double V = double(logits.size(-1));
  return -std::log(V) - logp.mean(-1).mean();
}

MaxEntObjective::MaxEntObjective(std::shared_ptr<StreamMix> forget, std::shared_ptr<StreamMix> retain, int window,
                                 double retain_coef)
    : forget_(std::move(forget)), retain_(std::move(retain)), window_(window), a_(retain_coef) {}

torch::Tensor MaxEntObjective::loss(Transformer& model, const MicroBatch& mb, std::map<std::string, double>* logs) {
  auto forget = window_tensor(*forget_, mb, window_);
  auto kl = kl_uniform_to_model(model->forward(forget.narrow(1, 0, window_)));
  MicroBatch rb = mb;
  rb.seed = retain_seed(mb.seed);
  auto ce_retain = next_token_ce(model, window_tensor(*retain_, rb, window_));
  if (logs) {
    (*logs)["kl_uniform"] += kl.item<double>();
    (*logs)["retain_ce"] += ce_retain.item<double>();
  }
  return kl + a_ * ce_retain;
}

}  // namespace undo
