// A loss computed from the model's output head chunk by chunk, never holding
// the whole logits. The logits are batch x window x vocabulary: at Gemma-2's
// 256k vocabulary and a window of 1,024 that is 2 GB in bf16 per 4 sequences,
// the largest tensor of a step, for the pretraining CE, the distillation KL
// and the attack alike. Here they exist `chunk` positions at a time: for each
// chunk the logits are made from the final hidden state, the loss and its
// gradient with respect to those logits are taken at once (the loss is a
// scalar, so the gradient is known in the forward), and the two products of
// the head's backward (dh = dz W, dW += dz^T h) follow before the chunk's
// logits are dropped. The backward then only scales what was kept by the
// incoming gradient. Memory: the chunk's logits, dh [N, d] and dW [V, d].
// FLOPs: the unfused path's three products, no recompute. Under bf16
// autocast each chunk's dW product is rounded to bf16 (as the whole path's
// single product is) before the fp32 sum over chunks: one rounding per chunk
// of a partial sum, where LibTorch's CPU kernels have no bf16 product with an
// fp32 output (aten::mm.dtype is CUDA-only in 2.11).
//
// Chunks run over positions only. The default (default_chunk_rows) keeps
// 512 rows at large vocabularies for speed; train.loss_chunk goes as low as
// memory requires, down to one position (1 MB of logits at 256k in fp32), so
// chunking the vocabulary too would cost a second pass over it (for the
// log-sum-exp) for no memory a run needs.
//
// The loss itself is a PositionLoss: the loss of any set of rows given their
// logits. The same object serves the reference path (whole_logits_loss, on
// the logits forward made whole), so that the two paths share their
// arithmetic and differ only in how the logits come to exist.
#pragma once
#include <torch/torch.h>

#include <memory>

namespace undo {

// A per-position loss on logits. Rows are the flattened positions, in order.
class PositionLoss {
 public:
  virtual ~PositionLoss() = default;
  // Rows [begin, begin + x.size(0)) with their logits x [n, V] (fp32, after
  // any soft-cap): the sum of their losses as a 0-dim fp32 tensor, and, when
  // `grad` is not null, d(sum)/dx [n, V] in fp32 written there. `x` is not
  // modified.
  virtual torch::Tensor sum(int64_t begin, const torch::Tensor& x, torch::Tensor* grad) const = 0;

  // The same from the logits as the head's product makes them: z [n, V] in
  // the product's type (bf16 under autocast), before the soft-cap; the
  // gradient, when `grad` is not null, is d(sum)/dz in z's type. This
  // default casts z to fp32, caps it, calls sum() and casts its gradient
  // back; a loss overrides it where one pass over z does all of that
  // (CrossEntropyRows, train/fused_ce.h).
  virtual torch::Tensor sum_of_products(int64_t begin, const torch::Tensor& z, double softcap,
                                        torch::Tensor* grad) const;
};

// The head's logits as forward makes them: softcap(h W^T) in fp32, the
// product in autocast's dtype where autocast is on (softcap 0: none).
torch::Tensor head_logits(const torch::Tensor& h, const torch::Tensor& weight, double softcap);

// The mean over rows of `loss` on softcap(h W^T), h [N, d], weight [V, d],
// holding at most `chunk` rows' logits at once (0: default_chunk_rows).
// Differentiable in h and weight.
torch::Tensor chunked_head_loss(const torch::Tensor& h, const torch::Tensor& weight, double softcap,
                                std::shared_ptr<const PositionLoss> loss, int64_t chunk = 0);

// The reference path: the mean over rows of `loss` on logits [..., V] that
// exist whole. Differentiable in logits.
torch::Tensor whole_logits_loss(const torch::Tensor& logits, std::shared_ptr<const PositionLoss> loss);

// The rows per chunk that chunked_head_loss takes for `chunk` = 0: as many
// as 32 MiB of fp32 logits hold, and at least 512. Fewer rows make the head's
// products thin and dW's accumulation (V x d per chunk) outweigh them: at
// V = 256k, 256 rows per chunk took 25% longer than 512 (bench/head-loss).
int64_t default_chunk_rows(int64_t vocab);

}  // namespace undo
