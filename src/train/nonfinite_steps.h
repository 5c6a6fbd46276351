// Steps whose loss or gradient is not finite (NaN or inf: a bf16 loss spike,
// an overflowing batch) are skipped rather than applied, as a loss scaler
// skips them: the step's flag goes to the optimizer's kernel, which then
// leaves weights, moments and step count as they were (train/adamw.h). The
// flag and the counts stay on the device, so nothing inside a step waits for
// the GPU; the host reads the counts only at the steps that synchronise anyway
// (those that log, evaluate or checkpoint; every step on the CPU, where a read
// costs nothing), and stops the run with an error once more than
// train.max_skipped_steps consecutive steps were skipped. On a GPU the stop
// therefore comes at the first such step after the limit is passed; the
// skipped steps between changed nothing.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace undo {

class NonFiniteSteps {
 public:
  NonFiniteSteps(std::string stage, int max_skipped);

  // This step's flag, a float scalar on the loss's device: 1 when `loss` or
  // `grad_norm` is not finite, else 0. Both must be the same on every rank
  // (the loss averaged over ranks, the global gradient norm), so that every
  // rank skips the same steps. Updates the counts on the device.
  torch::Tensor flag(const torch::Tensor& loss, const torch::Tensor& grad_norm);

  // Reads the counts (a host synchronisation: call at sync steps only). Throws
  // RuntimeError naming the stage, the step and the key once a run of skipped
  // steps passed the limit; else returns how many steps this process skipped.
  int64_t check(int64_t step);

 private:
  std::string stage_;
  int max_skipped_;
  torch::Tensor run_, longest_, total_;  // on the device: the current run of skips, the longest one, all of them
};

}  // namespace undo
