// The fused pieces of a transformer block, each built of ATen's own kernels
// (so that every CPU runs them vectorised as ATen dispatches them: a
// hand-written loop here was slower, docs/PERFORMANCE.md) and each a single
// step where the written-out form takes several:
//  - projections that read one input (q, k and v; an MLP's gate and up) as one
//    matrix product: under autocast the input is cast to bf16 once, not once per
//    projection, its gradient comes back as one product and one cast instead of
//    several added up, and the products are wider;
//  - rotary as one autograd node, forward and backward four in-place kernels
//    each, with no concatenation and no temporaries, in x's own type;
//  - on CPUs, attention's softmax in the scores' type, not cast to fp32 and back;
//  - RMSNorm as one autograd node with its backward written out.
// The written-out forms stay beside them as the reference path
// (train.fused_blocks = false; model/transformer.cpp), and tests compare the
// two (BlockKernels.*).
#pragma once
#include <torch/torch.h>

#include <vector>

namespace undo {

// x [..., in] through `projections` (each Linear of the same `in`) as one
// product: their outputs, in order, as views of it. Gradients reach each
// projection's weight and bias as if each had been applied alone.
std::vector<torch::Tensor> project_together(const torch::Tensor& x, const std::vector<torch::nn::Linear>& projections);

// Rotary on x [B, H, T, hd]: pairs (x[..., :hd/2], x[..., hd/2:]) rotated by
// the angles whose cos and sin are `cos`, `sin` [T, hd/2], and multiplied by
// `scale` (attention's query scale, free here: it scales the angles' tables).
// The result is contiguous and of x's type: under autocast, bf16 with the
// tables rounded to bf16 (as a bf16 model's rotary is in transformers), where
// the written-out form returns fp32 that the next product casts to bf16 (two
// casts of q and k saved per layer, forward and backward).
torch::Tensor rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, double scale = 1);

// RMSNorm with Gemma's (1 + w) scale over x's last dimension, computed in
// fp32 and returned in x's type, as model/transformer.h's RMSNorm.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

// The keys a query may not see, [T, T] (true: hidden): the later ones, and
// with window > 0 those `window` or more positions back. Both attention paths use it.
torch::Tensor hidden_keys(int64_t T, int window, torch::Device device);

// Causal attention of q [B, H, T, hd] (already scaled) over k, v, as
// model/transformer.h's masked_softmax_attention computes it, with the
// softmax in the scores' own type (bf16 under autocast: ATen sums it in fp32)
// instead of two casts of the [B, H, T, T] scores around an fp32 softmax, and
// the mask applied in place.
torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               double softcap = 0, int window = 0);

}  // namespace undo
