#include "train/nonfinite_steps.h"

#include <utility>

#include "core/error.h"

namespace undo {

NonFiniteSteps::NonFiniteSteps(std::string stage, int max_skipped)
    : stage_(std::move(stage)), max_skipped_(max_skipped) {}

torch::Tensor NonFiniteSteps::flag(const torch::Tensor& loss, const torch::Tensor& grad_norm) {
  torch::NoGradGuard no_grad;
  auto finite = torch::isfinite(loss.detach().to(torch::kDouble)).logical_and(
      torch::isfinite(grad_norm.detach().to(loss.device(), torch::kDouble)));
  auto skip = finite.logical_not().to(torch::kFloat).reshape({});
  if (!run_.defined()) {
    run_ = torch::zeros({}, skip.options());
    longest_ = torch::zeros({}, skip.options());
    total_ = torch::zeros({}, skip.options());
  }
  // A skip extends the current run; an applied step ends it.
  run_.add_(skip).mul_(skip);
  longest_ = torch::maximum(longest_, run_);
  total_.add_(skip);
  return skip;
}

int64_t NonFiniteSteps::check(int64_t step) {
  if (!run_.defined()) return 0;
  auto host = torch::stack({longest_, total_}).to(torch::kCPU);
  const auto longest = int64_t(host[0].item<float>()), total = int64_t(host[1].item<float>());
  if (longest > max_skipped_)
    throw RuntimeError(stage_ + ": " + std::to_string(longest) +
                       " consecutive steps had a non-finite loss or gradient and were skipped (by step " +
                       std::to_string(step) + "; train.max_skipped_steps = " + std::to_string(max_skipped_) +
                       "): the run stops with the weights of its last applied step; lower optim.lr or raise "
                       "optim.warmup, or train in fp32");
  return total;
}

}  // namespace undo
