// The CPU loops of model/vector_loops.h, through the kernels built on them
// (model/block_kernels.h, train/fused_ce.h), against the same arithmetic
// from ATen's kernels: the cross-entropy from the head's product, the gated
// activations, the causal softmax and RMSNorm's output in a product's type,
// forward and backward, in fp32 and bf16, with row lengths that leave a
// partial vector at the end. Their results do not depend on the thread count,
// and they run the instruction set that ATEN_CPU_CAPABILITY allows (launch/test
// runs this file again under each: tests/numerics.h).
//
// Where two sides round to bf16 from fp32 values that differ by an ulp or
// two, the check is that every output is equal or one bf16 unit apart: the
// tolerance helpers' bf16 bound is a derivation over stages, not a unit.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include <cstdlib>
#include <limits>
#include <string>

#include "core/error.h"
#include "model/block_kernels.h"
#include "model/precision.h"
#include "model/vector_loops.h"
#include "numerics.h"
#include "train/fused_ce.h"

using namespace undo;

namespace {

// Every value of `have` equal to `want`'s or one bf16 unit apart (a unit of
// the larger: at most 2^-7 of it) beyond `floor` (an absolute allowance per
// value, where a side is an approximation), and at most `share` of them apart.
void expect_bf16_within_a_unit(const torch::Tensor& want_in, const torch::Tensor& have_in, const std::string& what,
                               const torch::Tensor& floor = {}, double share = 0.05) {
  auto want = want_in.to(torch::kDouble), have = have_in.to(torch::kDouble);
  ASSERT_EQ(want.sizes(), have.sizes()) << what;
  auto unit = torch::maximum(want.abs(), have.abs()) * std::ldexp(1.0, -7);
  if (floor.defined()) unit = unit + floor;
  EXPECT_TRUE((want - have).abs().le(unit).all().item<bool>())
      << what << ": a value more than a bf16 unit apart (largest difference "
      << (want - have).abs().max().item<double>() << ")";
  EXPECT_LE(want.ne(have).sum().item<int64_t>(), int64_t(share * double(want.numel()))) << what;
}

// act(g) in float64, written so that the tails keep their relative
// accuracy (ATen's gelu is x (1 + erf) / 2, whose lower tail cancels even in
// float64): the values the loops approximate.
torch::Tensor exact_activation(const torch::Tensor& g, const std::string& act) {
  if (act == "silu") return g * torch::sigmoid(g);
  if (act == "gelu_tanh") return g * torch::sigmoid(2 * 0.7978845608028654 * (g + 0.044715 * g.pow(3)));
  return g * 0.5 * torch::erfc(-g / std::sqrt(2.0));
}

torch::Tensor bf16_rounded(const torch::Tensor& t) { return t.to(torch::kBFloat16).to(torch::kDouble); }

}  // namespace

// The loss and its gradient from the head's product as one loop over each
// row, against PositionLoss's default: the logits cast to fp32, the
// log-sum-exp, the softmax minus the one-hot, the gradient cast back.
TEST(VectorLoops, CrossEntropyFromTheProductEqualsTheFp32Path) {
  torch::manual_seed(21);
  const int64_t n = 37, V = 1003;  // 62 whole vectors and a partial one per row
  auto targets = torch::randint(0, V, {n}, torch::kLong);
  targets[0] = 0, targets[1] = V - 1;  // the first element, and one in the partial vector
  CrossEntropyRows loss(targets);
  for (auto type : {torch::kFloat, torch::kBFloat16}) {
    const std::string what = c10::toString(type);
    auto z = (torch::randn({n, V}) * 4).to(type);
    torch::Tensor want_grad, have_grad;
    auto want = loss.PositionLoss::sum_of_products(0, z, 0, &want_grad);
    auto have = loss.sum_of_products(0, z, 0, &have_grad);
    ASSERT_EQ(have_grad.scalar_type(), type) << what;
    // Both sides sum V exps per row and n rows, in other orders, from fp32 logits that are equal.
    test::expect_value_near(want.item<double>(), have.item<double>(), test::fp32_reordered(V + n), what + ": loss");
    if (type == torch::kFloat)
      test::expect_tensors_close(want_grad, have_grad, test::fp32_reordered(V, 1, 1), what + ": gradient");
    else
      expect_bf16_within_a_unit(want_grad, have_grad, what + ": gradient");
    // The loss without its gradient is the same number.
    EXPECT_EQ(loss.sum_of_products(0, z, 0, nullptr).item<float>(), have.item<float>()) << what;
  }
  // A row's second half, as chunks see it.
  auto z = torch::randn({n, V});
  auto want = loss.PositionLoss::sum_of_products(20, z.narrow(0, 20, 17), 0, nullptr);
  auto have = loss.sum_of_products(20, z.narrow(0, 20, 17), 0, nullptr);
  test::expect_value_near(want.item<double>(), have.item<double>(), test::fp32_reordered(V + n), "rows from 20");
}

TEST(VectorLoops, ACrossEntropyTargetOutsideTheVocabularyIsRefused) {
  CrossEntropyRows loss(torch::tensor({3, 10}, torch::kLong));
  try {
    loss.sum_of_products(0, torch::zeros({2, 10}), 0, nullptr);
    FAIL() << "a target equal to V was taken";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("outside the vocabulary [0, 10)"), std::string::npos) << e.what();
  }
}

// act(gate) * up and its gradient, for each activation, against the exact
// values in float64 (exact_activation, differentiated by autograd). fp32:
// each within 32 ulps of the largest magnitude it is made of; the erf gelu's
// Phi is Abramowitz and Stegun 7.1.26 (as ATen's vectorised erf is), whose
// |error| <= 1.5e-7 in erf adds 0.75e-7 per unit of |x| (and of |up|). bf16:
// the exact value rounded once, which is what the loop does from an fp32
// value a few ulps away: equal or a unit apart, beyond that allowance for
// the erf gelu and 1e-30 for values the loops flush to 0.
TEST(VectorLoops, GatedActivationEqualsTheWrittenOutForm) {
  torch::manual_seed(22);
  const int64_t F = 37;  // two whole vectors and a partial one
  for (const std::string act : {"silu", "gelu_tanh", "gelu"})
    for (auto type : {torch::kFloat, torch::kBFloat16}) {
      const std::string what = act + " " + c10::toString(type);
      auto gu0 = (torch::randn({5, 6, 2 * F}) * 2.5).to(type);
      auto dout = torch::randn({5, 6, F}).to(type);
      auto a = gu0.to(torch::kDouble).requires_grad_(true), b = gu0.clone().requires_grad_(true);
      auto halves = a.chunk(2, -1);
      auto want = exact_activation(halves[0], act) * halves[1];
      auto have = gated_activation(b, act);
      ASSERT_EQ(have.scalar_type(), type) << what;
      want.backward(dout.to(torch::kDouble));
      have.backward(dout);
      // Per output the magnitudes it is made of: |g| |u|, and per input |g|, |u| times |dout|.
      auto x = gu0.to(torch::kDouble).abs(), d = dout.to(torch::kDouble).abs();
      auto g = x.narrow(-1, 0, F), u = x.narrow(-1, F, F);
      auto out_size = (g + 1) * (u + 1), grad_size = torch::cat({(g + 1) * (u + 1) * d, (g + 1) * d}, -1);
      const double approx = act == "gelu" ? 0.75e-7 : 0;
      for (auto [part, w, h, size] : {std::tuple{"output", want.detach(), have.detach(), out_size},
                                      std::tuple{"gradient", a.grad(), b.grad(), grad_size}}) {
        auto floor = size * approx + 1e-30;
        if (type == torch::kFloat) {
          auto bound = size * 32 * 2 * test::kFp32Unit + floor;
          auto diff = (w - h.to(torch::kDouble)).abs();
          EXPECT_TRUE(diff.le(bound).all().item<bool>())
              << what << ": " << part << " differs by " << diff.max().item<double>() << " where the bound is "
              << bound.flatten()[diff.flatten().argmax()].item<double>();
        } else {
          expect_bf16_within_a_unit(bf16_rounded(w), h, what + ": " + part, floor);
        }
      }
    }
}

// The causal softmax with its mask inside the loop, against the hidden keys
// filled with -inf and ATen's softmax, with and without a sliding window.
TEST(VectorLoops, CausalSoftmaxEqualsTheMaskedSoftmax) {
  torch::manual_seed(23);
  const int64_t T = 37;
  for (int window : {0, 5})
    for (auto type : {torch::kFloat, torch::kBFloat16}) {
      const std::string what = "window " + std::to_string(window) + " " + c10::toString(type);
      auto s0 = (torch::randn({2, 3, T, T}) * 3).to(type);
      auto dp = torch::randn({2, 3, T, T}).to(type);
      auto a = s0.clone().requires_grad_(true), b = s0.clone().requires_grad_(true);
      auto masked = a.to(torch::kFloat).masked_fill(hidden_keys(T, window, torch::kCPU),
                                                    -std::numeric_limits<float>::infinity());
      auto want = torch::softmax(masked, -1);
      auto have = causal_softmax(b, window);
      ASSERT_EQ(have.scalar_type(), type) << what;
      want.backward(dp.to(torch::kFloat));
      have.backward(dp);
      // The hidden keys are exactly 0, their gradients too.
      auto hidden = hidden_keys(T, window, torch::kCPU).expand_as(have);
      EXPECT_TRUE(have.masked_select(hidden).eq(0).all().item<bool>()) << what;
      EXPECT_TRUE(b.grad().masked_select(hidden).eq(0).all().item<bool>()) << what;
      if (type == torch::kFloat) {
        // Sums of at most T terms in other orders, in two stages forward (the exps and their sum, from
        // another exp; then the normalisation) and a third backward (the dot product of p and dp).
        test::expect_tensors_close(want, have, test::fp32_reordered(T, 2, 1), what + ": output");
        test::expect_tensors_close(a.grad(), b.grad(), test::fp32_reordered(T, 3, 1), what + ": gradient");
      } else {
        // ATen's bf16 softmax, forward and backward, on the same inputs: each sums in fp32 and rounds
        // once, its backward from the bf16 output, as the loop does.
        auto c = s0.clone().requires_grad_(true);
        auto aten = torch::softmax(c.masked_fill(hidden_keys(T, window, torch::kCPU),
                                                 -std::numeric_limits<float>::infinity()), -1);
        aten.backward(dp);
        expect_bf16_within_a_unit(aten.detach(), have, what + ": output");
        expect_bf16_within_a_unit(c.grad(), b.grad(), what + ": gradient");
        expect_bf16_within_a_unit(bf16_rounded(want.detach()), have, what + ": output against fp32");
      }
    }
}

// A pre-norm under bf16 autocast returns bf16, the value autocast's cast of
// its fp32 output would be, and its gradients are those of the fp32 norm fed
// the same bf16 gradient.
TEST(VectorLoops, ANormFeedingAProductReturnsTheProductsType) {
  torch::manual_seed(24);
  auto x0 = torch::randn({4, 9, 40}) * 2;
  auto w = (torch::randn({40}) * 0.3).requires_grad_(true), w2 = w.detach().clone().requires_grad_(true);
  auto g = torch::randn({4, 9, 40}).to(torch::kBFloat16);
  auto a = x0.clone().requires_grad_(true), b = x0.clone().requires_grad_(true);
  auto want = rms_norm(a, w, 1e-6);
  torch::Tensor have;
  {
    AutocastGuard autocast(true, false);
    have = rms_norm(b, w2, 1e-6, /*for_product=*/true);
    EXPECT_EQ(rms_norm(b.detach(), w2.detach(), 1e-6).scalar_type(), torch::kFloat) << "only a product's input changes type";
  }
  ASSERT_EQ(have.scalar_type(), torch::kBFloat16);
  // Both round the same fp32 values once.
  EXPECT_TRUE(torch::equal(want.detach().to(torch::kBFloat16), have)) << "the output is autocast's cast of the fp32 norm";
  want.backward(g.to(torch::kFloat));
  have.backward(g);
  EXPECT_EQ(b.grad().scalar_type(), torch::kFloat);
  // The same loop on the same values (g read as fp32 either way): equal to the bit.
  EXPECT_TRUE(torch::equal(a.grad(), b.grad())) << "d x";
  EXPECT_TRUE(torch::equal(w.grad(), w2.grad())) << "d weight";
}

// Each row is one thread's, and the norm's weight gradient is summed by
// fixed blocks of rows: 1 thread and 2 give the same bits.
TEST(VectorLoops, ResultsDoNotDependOnTheThreadCount) {
  torch::manual_seed(25);
  auto z = torch::randn({300, 515}).to(torch::kBFloat16);
  auto targets = torch::randint(0, 515, {300}, torch::kLong);
  auto gu = torch::randn({300, 2 * 96}).to(torch::kBFloat16).requires_grad_(true);
  auto scores = torch::randn({4, 2, 64, 64}).requires_grad_(true);
  auto x = torch::randn({300, 64}).requires_grad_(true);
  auto w = torch::randn({64}).requires_grad_(true);
  auto run = [&] {
    std::vector<torch::Tensor> out;
    torch::Tensor dz;
    out.push_back(CrossEntropyRows(targets).sum_of_products(0, z, 0, &dz));
    out.push_back(dz);
    for (auto* p : {&gu, &scores, &x, &w}) p->mutable_grad() = torch::Tensor();
    (gated_activation(gu, "gelu").to(torch::kFloat) * 1.5).sum().backward();
    (causal_softmax(scores, 0) * scores.detach()).sum().backward();
    (rms_norm(x, w, 1e-6) * x.detach()).sum().backward();
    for (auto* p : {&gu, &scores, &x, &w}) out.push_back(p->grad().clone());
    return out;
  };
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  auto one = run();
  at::set_num_threads(2);
  auto two = run();
  at::set_num_threads(threads);
  for (size_t i = 0; i < one.size(); ++i) EXPECT_TRUE(torch::equal(one[i], two[i])) << "result " << i;
}

// launch/test's variants cap ATen's dispatch with ATEN_CPU_CAPABILITY; the
// loops follow it, so that each variant runs their other copy.
TEST(VectorLoops, TheLoopsFollowATenCpuCapability) {
  const char* env = std::getenv("ATEN_CPU_CAPABILITY");
  const std::string cap = env ? env : "", isa = loops::isa_name();
  std::cout << "vector loops: " << isa << " (ATEN_CPU_CAPABILITY " << (env ? cap : "unset") << ")\n";
  if (cap == "default") {
    EXPECT_EQ(isa, "baseline");
  } else if (cap == "avx2") {
    EXPECT_NE(isa, "avx512");
  }
}
