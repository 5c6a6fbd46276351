// Cross-entropy over the vocabulary as a PositionLoss (model/head_loss.h), so
// that the chunked head and the whole-logits reference compute it alike. The
// stock log_softmax + nll_loss pair spends more time than the matrix products
// at our sizes (a log-softmax pass, a zero-filled gradient buffer and a
// scatter); here the loss is one log-sum-exp and its gradient one softmax
// written in place, minus one at each target.
#pragma once
#include <torch/torch.h>

#include "model/head_loss.h"

namespace undo {

// Targets [N] (int64), one per row of the flattened positions.
class CrossEntropyRows : public PositionLoss {
 public:
  explicit CrossEntropyRows(torch::Tensor targets) : targets_(targets.reshape({-1})) {}
  torch::Tensor sum(int64_t begin, const torch::Tensor& x, torch::Tensor* grad) const override;
  // On CPUs without a soft-cap, one loop over each row of z in its own type
  // (model/vector_loops.h): its log-sum-exp, its loss and its gradient
  // softmax - onehot written in z's type, with no fp32 copy of the logits.
  torch::Tensor sum_of_products(int64_t begin, const torch::Tensor& z, double softcap,
                                torch::Tensor* grad) const override;

 private:
  torch::Tensor targets_;
};

// logits [N, V] (any float dtype, computed in fp32), targets [N] -> mean loss,
// on logits that exist whole (the reference path, and evaluation's).
torch::Tensor fused_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets);

}  // namespace undo
