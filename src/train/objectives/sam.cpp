#include "train/objectives/unlearning.h"

#include "distributed/communicator.h"
#include "distributed/zero3.h"

namespace undo {

// Sharpness-aware minimisation: the gradient that the trainer applies is taken
// at theta + rho g/|g| (g the gradient at theta); the weights go back to theta
// right after that backward pass. In a distributed run g is each rank's own
// (m-sharpness), which saves a second all-reduce. Under dist.zero = 3 the
// weights are the shards, and their gradient is the ranks' mean (zero 3's
// backward reduce-scatters it anyway): g is the whole batch's gradient, its
// norm summed over the shards, as one process with the global batch has it.
torch::Tensor SamObjective::loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) {
  params_.clear();
  zero3_ = std::dynamic_pointer_cast<Zero3>(model->runner);
  if (zero3_) {
    for (auto& [name, shard] : zero3_->shards())
      if (shard.requires_grad()) params_.push_back(shard);
  } else {
    for (auto& [name, p] : inner_->trainable(model)) params_.push_back(p);
  }
  auto first = inner_->loss(model, mb, nullptr);
  auto grads = torch::autograd::grad({first}, params_, {}, /*retain_graph=*/false, /*create_graph=*/false,
                                     /*allow_unused=*/true);
  // The norm stays a tensor: no host synchronisation inside the step.
  std::vector<torch::Tensor> defined;
  for (auto& g : grads)
    if (g.defined()) defined.push_back(g.to(torch::kFloat));
  auto norm = defined.empty() ? torch::zeros({}, params_[0].options().dtype(torch::kFloat))
                              : torch::stack(torch::_foreach_norm(defined)).norm();
  if (auto comm = distributed(); zero3_ && comm) {  // each rank holds a part of g
    auto squares = (norm * norm).reshape({1});
    comm->allreduce_sum(squares, "all-reduce of SAM's gradient norm");
    norm = squares.sqrt().reshape({});
  }
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
  if (zero3_) zero3_->drop_prefetch();  // no gather of the shards from before the step up
  add_log(logs, "sam_grad_norm", norm);
  return inner_->loss(model, mb, logs);
}

void SamObjective::after_backward(Transformer&) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) params_[i].sub_(offsets_[i]);
  offsets_.clear();
  if (zero3_) zero3_->drop_prefetch();
}

}  // namespace undo
