#include "train/objectives/unlearning.h"

namespace undo {

// Sharpness-aware minimisation: the gradient that the trainer applies is taken
// at theta + rho g/|g| (g the gradient at theta); the weights go back to theta
// right after that backward pass. In a distributed run g is each rank's own
// (m-sharpness), which saves a second all-reduce.
torch::Tensor SamObjective::loss(Transformer& model, const MicroBatch& mb, std::map<std::string, double>* logs) {
  params_.clear();
  for (auto& [name, p] : inner_->trainable(model)) params_.push_back(p);
  auto first = inner_->loss(model, mb, nullptr);
  auto grads = torch::autograd::grad({first}, params_, {}, /*retain_graph=*/false, /*create_graph=*/false,
                                     /*allow_unused=*/true);
  double sq = 0;
  for (auto& g : grads)
    if (g.defined()) sq += g.to(torch::kDouble).pow(2).sum().item<double>();
  double scale = rho_ / (std::sqrt(sq) + 1e-12);
  offsets_.clear();
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) {
      auto e = grads[i].defined() ? (grads[i].to(torch::kFloat) * scale) : torch::zeros_like(params_[i]);
      params_[i].add_(e);
      offsets_.push_back(e);
    }
  }
  if (logs) (*logs)["sam_grad_norm"] += std::sqrt(sq);
  return inner_->loss(model, mb, logs);
}

void SamObjective::after_backward(Transformer&) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) params_[i].sub_(offsets_[i]);
  offsets_.clear();
}

}  // namespace undo
