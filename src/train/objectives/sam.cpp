#include "train/objectives/unlearning.h"

namespace undo {

// Sharpness-aware minimisation: the gradient that the trainer applies is taken
// at theta + rho g/|g| (g the gradient at theta); the weights go back to theta
// right after that backward pass. In a distributed run g is each rank's own
// (m-sharpness), which saves a second all-reduce.
torch::Tensor SamObjective::loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) {
  params_.clear();
  for (auto& [name, p] : inner_->trainable(model)) params_.push_back(p);
  auto first = inner_->loss(model, mb, nullptr);
  auto grads = torch::autograd::grad({first}, params_, {}, /*retain_graph=*/false, /*create_graph=*/false,
                                     /*allow_unused=*/true);
  // The norm stays a tensor: no host synchronisation inside the step.
  std::vector<torch::Tensor> defined;
  for (auto& g : grads)
    if (g.defined()) defined.push_back(g.to(torch::kFloat));
  auto norm = defined.empty() ? torch::zeros({}, params_[0].options().dtype(torch::kFloat))
                              : torch::stack(torch::_foreach_norm(defined)).norm();
  auto scale = rho_ / (norm + 1e-12);
  offsets_.clear();
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) {
      auto e = grads[i].defined() ? (grads[i].to(torch::kFloat) * scale) : torch::zeros_like(params_[i]);
      params_[i].add_(e);
      offsets_.push_back(e);
    }
  }
  add_log(logs, "sam_grad_norm", norm);
  return inner_->loss(model, mb, logs);
}

void SamObjective::after_backward(Transformer&) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) params_[i].sub_(offsets_[i]);
  offsets_.clear();
}

}  // namespace undo
