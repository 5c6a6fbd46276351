// What a training stage optimises. The Trainer owns the loop; an objective
// draws its own micro-batches (it knows its data streams) and returns a loss.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>

#include "data/stream.h"
#include "model/transformer.h"

namespace undo {

class ParallelTraining;  // train/parallelism.h

// Rows [begin, end) of the global batch of optimizer step `step`.
struct MicroBatch {
  uint64_t seed;
  int64_t step;
  int begin, end;
};

// Extra scalars an objective reports for a step, kept as (detached) tensors
// on the compute device: reading them would synchronise the host with a GPU,
// so the trainer reads them only when it logs.
using StepLogs = std::map<std::string, torch::Tensor>;
// logs[key] += value (detached); a null `logs` is ignored.
void add_log(StepLogs* logs, const std::string& key, const torch::Tensor& value);

class Objective {
 public:
  virtual ~Objective() = default;
  // Mean loss over the micro-batch's tokens. `logs` may receive extra scalars
  // (e.g. each term of a composite loss) that the trainer averages and logs.
  virtual torch::Tensor loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) = 0;
  // Parameters the optimizer updates, by name (default: all).
  virtual std::vector<std::pair<std::string, torch::Tensor>> trainable(Transformer& model) {
    std::vector<std::pair<std::string, torch::Tensor>> out;
    for (auto& p : model->named_parameters()) out.emplace_back(p.key(), p.value());
    return out;
  }
  virtual int64_t tokens_per_row() const = 0;
  // Called after each micro-batch's backward, before gradients are reduced (SAM restores weights here).
  virtual void after_backward(Transformer& model) {}
  // The training run's layout, before its first step: what the optimizer
  // steps and how its gradients are spread (SAM moves those tensors).
  virtual void bind(ParallelTraining& training) {}
};

// Inputs and next-token targets from a [B, T+1] window tensor.
torch::Tensor window_tensor(const StreamMix& mix, const MicroBatch& mb, int window);
torch::Tensor next_token_ce(Transformer& model, const torch::Tensor& windows);

// Language modelling: next-token cross-entropy on one stream mix (pretraining).
class CrossEntropyObjective : public Objective {
 public:
  CrossEntropyObjective(std::shared_ptr<StreamMix> data, int window) : data_(std::move(data)), window_(window) {}
  torch::Tensor loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) override;
  int64_t tokens_per_row() const override { return window_; }

 private:
  std::shared_ptr<StreamMix> data_;
  int window_;
};

}  // namespace undo
