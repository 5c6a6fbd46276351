// Cross-entropy over the vocabulary as one autograd node. The stock
// log_softmax + nll_loss pair spends more time than the matrix products at our
// sizes (a log-softmax pass, a zero-filled gradient buffer and a scatter);
// here the forward is one log-sum-exp and the backward one softmax written
// in place, minus one at each target.
#pragma once
#include <torch/torch.h>

namespace undo {

// logits [N, V] (any float dtype, computed in fp32), targets [N] -> mean loss.
torch::Tensor fused_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets);

}  // namespace undo
