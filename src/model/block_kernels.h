// The fused pieces of a transformer block, each a single step where the
// written-out form takes several:
//  - projections that read one input (q, k and v; an MLP's gate and up) as one
//    matrix product: under autocast the input is cast to bf16 once, not once per
//    projection, its gradient comes back as one product and one cast instead of
//    several added up, and the products are wider;
//  - the gated MLP's act(gate) * up from that one product, and its gradient
//    as that product's whole gradient;
//  - rotary as one autograd node, in x's own type, with no concatenation;
//  - attention's causal softmax with the mask inside it, in the scores' type,
//    not cast to fp32 and back;
//  - RMSNorm as one autograd node with its backward written out.
// On CPUs each of the last four is a loop of model/vector_loops.h that reads
// its rows once or twice (the same arithmetic from ATen's kernels takes a pass
// per operation); elsewhere (GPUs) each is composed of ATen's kernels.
// The written-out forms stay beside them as the reference path
// (train.fused_blocks = false; model/transformer.cpp), and tests compare the
// two (BlockKernels.*).
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace undo {

// x [..., in] through `projections` (each Linear of the same `in`) as one
// product [..., sum of outs], their outputs side by side. Gradients reach each
// projection's weight and bias as if each had been applied alone.
torch::Tensor project_concatenated(const torch::Tensor& x, const std::vector<torch::nn::Linear>& projections);
// The same, the outputs in order as views of that product.
std::vector<torch::Tensor> project_together(const torch::Tensor& x, const std::vector<torch::nn::Linear>& projections);

// A gated MLP's activation by name (model.activation: silu | gelu_tanh |
// gelu), from ATen's kernels: the written-out path's.
torch::Tensor activation(const torch::Tensor& g, const std::string& name);
// activation(gate) * up from gu [..., 2F], the gate and up product side by
// side (project_concatenated's): [..., F].
torch::Tensor gated_activation(const torch::Tensor& gu, const std::string& name);

// Rotary on x [B, H, T, hd]: pairs (x[..., :hd/2], x[..., hd/2:]) rotated by
// the angles whose cos and sin are `cos`, `sin` [T, hd/2], and multiplied by
// `scale` (attention's query scale, free here: it scales the angles' tables).
// The result is contiguous and of x's type: under autocast, bf16 with the
// tables rounded to bf16 (as a bf16 model's rotary is in transformers), where
// the written-out form returns fp32 that the next product casts to bf16 (two
// casts of q and k saved per layer, forward and backward). On a CPU each
// output is rounded once (one loop); elsewhere after each of its two ATen
// kernels.
torch::Tensor rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, double scale = 1);

// RMSNorm with Gemma's (1 + w) scale over x's last dimension, computed in
// fp32 and returned in x's type, as model/transformer.h's RMSNorm; with
// `for_product` on a CPU under autocast, in autocast's type (the same value
// autocast's cast of it would give the product, without the cast).
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps, bool for_product = false);

// The keys a query may not see, [T, T] (true: hidden): the later ones, and
// with window > 0 those `window` or more positions back. Both attention paths use it.
torch::Tensor hidden_keys(int64_t T, int window, torch::Device device);

// The softmax over the last dimension of scores [..., T, T] with the keys
// hidden_keys hides given no weight, in the scores' own type (bf16 under
// autocast: summed in fp32 and rounded once, as ATen's softmax of bf16 is).
// Off the CPU it masks `scores` in place (attention's own temporary).
torch::Tensor causal_softmax(const torch::Tensor& scores, int window = 0);

// Causal attention of q [B, H, T, hd] (already scaled) over k, v, as
// model/transformer.h's masked_softmax_attention computes it, with
// causal_softmax instead of two casts of the [B, H, T, T] scores around an
// fp32 softmax.
torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               double softcap = 0, int window = 0);

}  // namespace undo
