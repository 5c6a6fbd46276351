#include "train/objectives/unlearning.h"

#include "core/error.h"
#include "distributed/communicator.h"
#include "train/parallelism.h"

namespace undo {

// Sharpness-aware minimisation: the gradient that the trainer applies is taken
// at theta + rho g/|g| (g the gradient at theta); the weights go back to theta
// right after that backward pass. In a distributed run g is each rank's own
// (m-sharpness), which saves a second all-reduce. SAM moves what the run's
// layout steps (train/parallelism.h): under dist.zero = 3 the shards, whose
// gradient is the ranks' mean (zero 3's backward reduce-scatters it anyway):
// g is then the whole batch's gradient, its norm summed over the parts, as
// one process with the global batch has it.
torch::Tensor SamObjective::loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) {
  UNDO_CHECK(training_, "SAM: loss() before bind() (a Trainer binds its objective to the run's layout)");
  params_.clear();
  for (auto& [name, t] : training_->stepped())
    if (t.requires_grad()) params_.push_back(t);
  auto first = inner_->loss(model, mb, nullptr);
  auto grads = torch::autograd::grad({first}, params_, {}, /*retain_graph=*/false, /*create_graph=*/false,
                                     /*allow_unused=*/true);
  // The norm stays a tensor: no host synchronisation inside the step.
  std::vector<torch::Tensor> defined;
  for (auto& g : grads)
    if (g.defined()) defined.push_back(g.to(torch::kFloat));
  auto norm = defined.empty() ? torch::zeros({}, params_[0].options().dtype(torch::kFloat))
                              : torch::stack(torch::_foreach_norm(defined)).norm();
  if (auto* parts = training_->gradient_parts_over()) {  // each rank holds a part of g
    auto squares = (norm * norm).reshape({1});
    parts->allreduce_sum(squares, "all-reduce of SAM's gradient norm");
    norm = squares.sqrt().reshape({});
  }
  auto scale = rho_ / (norm + 1e-12);
  offsets_.clear();
  training_->weights_changed();  // no gather of the weights from before the step up
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) {
      // A non-finite g (the Trainer then skips the step) must not stay in the
      // weights: its offset would not subtract out again.
      auto e = grads[i].defined() ? (grads[i].to(torch::kFloat) * scale).nan_to_num_(0.0, 0.0, 0.0)
                                  : torch::zeros_like(params_[i]);
      params_[i].add_(e);
      offsets_.push_back(e);
    }
  }
  add_log(logs, "sam_grad_norm", norm);
  return inner_->loss(model, mb, logs);
}

void SamObjective::after_backward(Transformer&) {
  training_->weights_changed();
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) params_[i].sub_(offsets_[i]);
  offsets_.clear();
}

}  // namespace undo
