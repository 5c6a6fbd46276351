// AdamW with the same arithmetic as torch.optim.AdamW, but with its state in
// named tensors that can be sharded across ranks (ZeRO stage 1) and saved as
// one consolidated checkpoint, whatever the world size of the run. The update
// is LibTorch's fused AdamW kernel (optim.fused, on CPUs and GPUs alike), or
// the same formula as per-tensor ops.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "train/optimizer_state.h"

namespace undo {

class Communicator;

class AdamW : public OptimizerState {
 public:
  // `comm` null or `zero` false: every rank keeps and updates everything.
  // With ZeRO-1 each parameter has one owner rank that holds its state and
  // updates it; the new values are then broadcast from the owner.
  AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, const OptimConfig& cfg,
        std::shared_ptr<Communicator> comm, bool zero);

  void zero_grad();
  // `skip` (optional): a float scalar on the device, 1 to leave this step out
  // (train/nonfinite_steps.h): weights, moments and step count stay as they
  // were, decided on the device by the fused kernel, with no host read (the
  // per-tensor ops of optim.fused = false read it).
  void step(double lr, const torch::Tensor& skip = {});
  int64_t steps() const;  // steps applied (a host read of the skipped count)
  int owner(size_t i) const { return owner_[i]; }
  const std::vector<std::pair<std::string, torch::Tensor>>& params() const { return params_; }

  // Consolidated state: "optimizer.step", then each parameter's two moments.
  // Under ZeRO-1 each is broadcast from its owner as it is put; only the
  // writer's checkpoint writes.
  void plan(std::vector<TensorEntry>& entries) const override;
  void save(CheckpointWriter& out) override;
  void load(const CheckpointReader& in) override;

  // The moments of each parameter (undefined where another rank owns it), and
  // their replacement, for a sharded state that consolidates them itself
  // (train/zero3_state.h).
  const std::vector<torch::Tensor>& exp_avg() const { return exp_avg_; }
  const std::vector<torch::Tensor>& exp_avg_sq() const { return exp_avg_sq_; }
  void set_state(int64_t step, const std::vector<torch::Tensor>& exp_avg, const std::vector<torch::Tensor>& exp_avg_sq);

 private:
  void per_tensor_step(double lr, int64_t step);  // optim.fused = false: the formula as separate ops

  std::vector<std::pair<std::string, torch::Tensor>> params_;
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;  // undefined where this rank is not the owner
  std::vector<torch::Tensor> step_count_;  // the fused kernel's per-parameter step (a float scalar on the device)
  std::vector<int> owner_;
  OptimConfig cfg_;
  std::shared_ptr<Communicator> comm_;
  bool zero_;
  int64_t step_ = 0;        // calls of step()
  torch::Tensor skipped_;   // of them, those skipped (a float scalar on the device; undefined until one is asked for)
};

}  // namespace undo
