// The loops behind the CPU kernels of model/block_kernels.h and of the
// chunked cross-entropy (train/fused_ce.h): each reads its rows once or twice
// and writes its result once, where the same arithmetic from ATen's kernels
// takes a pass (and a temporary) per operation. They are what a transformer
// step does outside its matrix products: the loss's softmax, the gated MLP's
// activation, attention's causal softmax, RMSNorm and rotary.
//
// Torch-free, on raw contiguous rows of fp32 or bf16 (bf16 as its 16 bits:
// computed in fp32, rounded to nearest even once per output, as ATen's bf16
// kernels round). Every function takes a range of rows [begin, end) so that
// the caller splits the work over threads (at::parallel_for) and the result
// does not depend on how.
//
// Written with GCC's vector extensions, 16 floats at a time, and compiled
// for AVX-512, AVX2 and baseline x86-64, with one chosen per process (the
// widest the CPU has, capped by ATEN_CPU_CAPABILITY as ATen's own dispatch
// is), so that one binary runs on any x86-64 and uses what the machine has.
// exp and erf are this file's own polynomials (vector_loops.cpp gives each
// one's source and accuracy): the C library's are scalar.
#pragma once
#include <cstdint>

namespace undo::loops {

// The instruction set the loops run with: avx512, avx2 or baseline.
const char* isa_name();

// What an element is: fp32, or bf16's upper 16 bits of an fp32.
enum class Dtype { f32, bf16 };

// The gated MLP's activation act(gate) * up: silu (SwiGLU), gelu with tanh
// (Gemma's GeGLU) or exact gelu (erf).
enum class Activation { silu, gelu_tanh, gelu_erf };

// Cross-entropy of rows z [rows, V] (logits) against `targets` [rows]: for
// rows [begin, end), loss[r] = logsumexp(z[r]) - z[r, t] and, when grad is not
// null, grad[r] = softmax(z[r]) - onehot(t) in z's dtype. Targets are in
// [0, V) (the caller checks).
void cross_entropy_rows(Dtype dt, const void* z, int64_t V, const int64_t* targets, int64_t begin, int64_t end,
                        float* loss, void* grad);

// gu [rows, 2F] (gate, then up, per row) -> out [rows, F] = act(gate) * up.
void gated_activation_rows(Dtype dt, Activation act, const void* gu, int64_t F, int64_t begin, int64_t end, void* out);
// Its backward: dout [rows, F] -> dgu [rows, 2F] = (dout up act'(gate), dout act(gate)).
void gated_activation_grad_rows(Dtype dt, Activation act, const void* gu, const void* dout, int64_t F, int64_t begin,
                                int64_t end, void* dgu);

// Causal softmax of scores [rows of T, T] in place of `out`: row r is query
// position i = r % T, which sees keys j with i - window < j <= i (window 0:
// every j <= i); the rest of its row is 0.
void causal_softmax_rows(Dtype dt, const void* scores, int64_t T, int window, int64_t begin, int64_t end, void* out);
// Its backward from the output p and its gradient dp: ds = p (dp - sum(dp p)).
void causal_softmax_grad_rows(Dtype dt, const void* p, const void* dp, int64_t T, int window, int64_t begin,
                              int64_t end, void* ds);

// RMSNorm with (1 + w) scale over rows x [rows, d] (w fp32 [d]): rstd[r] =
// 1 / sqrt(mean(x[r]^2) + eps), out[r] = x[r] rstd[r] (1 + w), out of type
// out_dt: x's, or bf16 from fp32 x (a norm that feeds a bf16 product).
void rms_norm_rows(Dtype dt, Dtype out_dt, const void* x, const float* w, double eps, int64_t d, int64_t begin,
                   int64_t end, float* rstd, void* out);
// Its backward: g (the output's gradient, of type out_dt) -> dx (x's type)
// and, added into dw_sum [d] (fp32), the sum over the rows of g xhat.
void rms_norm_grad_rows(Dtype dt, Dtype out_dt, const void* x, const float* w, const float* rstd, const void* g,
                        int64_t d, int64_t begin, int64_t end, void* dx, float* dw_sum);

// Rotary on x [B, H, T, hd] with element strides `strides` (b, h, t; hd is
// contiguous), rows r = (b H + h) T + t: out row r (contiguous) = (x1 cos -
// sign x2 sin, x2 cos + sign x1 sin), pairs (i, i + hd/2), with cos, sin
// [T, hd/2] in x's dtype. sign -1 is the transpose (the backward).
void rotary_rows(Dtype dt, const void* x, int64_t H, int64_t T, const int64_t* strides, const void* cos,
                 const void* sin, int64_t hd, float sign, int64_t begin, int64_t end, void* out);

}  // namespace undo::loops
