// How the suite compares numbers that two computations should agree on, so
// that a comparison holds on every x86-64 CPU, not only on the one it was
// written on. Two kinds of agreement, never mixed up:
//  - bits: both sides run the same kernels on the same shapes, summing in the
//    same order, so they are equal to the bit (torch::equal, EXPECT_EQ on a
//    checksum). Each such comparison says beside it why that holds.
//  - a tolerance: the sides sum in another order (another batch split, world
//    size, thread count or kernel). The tolerance is derived from the dtype's
//    rounding, the length of the longest sum and the number of steps, and
//    carries that derivation as text.
//
// `launch/test` runs the numerics tests (CTest label "numerics") again under
// other instruction sets (ATen's dispatch, oneDNN's, MKL's) and thread counts.
// With UNDO_NUMERICS_LOG naming a file, every tolerance comparison appends the
// share of its tolerance it used; tests/numerics-report then fails any
// comparison that used more than a tenth of it under any variant: the 10x
// headroom that a CPU we never ran on is given.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace undo::test {

// Unit roundoffs: half a unit in the last place, relative.
constexpr double kFp32Unit = 0x1p-24;  // 6.0e-8
constexpr double kBf16Unit = 0x1p-8;   // 3.9e-3 (8 bits of mantissa)

// The tiny setting's (configs/tiny.ini) longest sums: a gradient sums over a
// global batch's tokens (at most 12 rows of 32 in the tests), a softmax over
// the 320-token vocabulary.
constexpr int64_t kTinyLongestSum = 12 * 32;
// A loss that is a difference of cross-entropies (GradDiff, a KL) errs as
// they do, and they are at most about log V, a uniform prediction's.
inline const double kTinyCeScale = 5.77;  // log 320

struct Tolerance {
  double rel = 0;    // allowed |a - b| / max(|reference|, scale)
  double scale = 0;  // a value that is a difference of larger terms (a KL, CE minus CE) errs as those terms do
  std::string why;   // the derivation, one line, shown when the comparison fails
};

// fp32, the sides summing in another order. A reordered sum of n terms
// differs by at most (n - 1) u of the terms' size (Higham's gamma_n, to first
// order); each term's own chain of elementwise operations (exp, log, a
// product, a quotient: vectorised and scalar kernels differ by an ulp or two
// each) adds at most kElementwiseUnits u; and each of `depth` stages in
// sequence (training steps, layers) adds its own: (n + 16) u depth, relative.
// `longest_sum` is the longest sum that feeds the value (a gradient's over the
// batch's tokens, a softmax's over the vocabulary, a product's over d_ff).
constexpr int kElementwiseUnits = 16;
Tolerance fp32_reordered(int64_t longest_sum, int depth = 1, double scale = 0);
// bf16 products (fp32 accumulation, one rounding to bf16 per output): the two
// sides differ where an fp32 difference crosses a bf16 rounding boundary,
// which moves that output by one bf16 unit; a mean of such outputs moves by at
// most that, and each of `depth` stages adds its own: u_bf16 depth.
Tolerance bf16_rounded(int depth = 1, double scale = 0);

// |a[i] - b[i]| <= tol.rel * max(|a[i]|, tol.scale) at every step i; a is the reference.
void expect_curves_match(const std::vector<double>& a, const std::vector<double>& b, const Tolerance& tol,
                         const std::string& what = "curve");
// The same for one value.
void expect_value_near(double reference, double value, const Tolerance& tol, const std::string& what = "value");
// Elementwise, for tensors: |a - b| <= tol.rel * max(|a|, tol.scale) everywhere.
void expect_tensors_close(const torch::Tensor& reference, const torch::Tensor& value, const Tolerance& tol,
                          const std::string& what = "tensor");

}  // namespace undo::test
