// The fused pieces of a block (model/block_kernels.h) against the written-out
// reference path (train.fused_blocks = false): the same outputs and the same
// gradients, alone and through whole models of each kind the fusions touch
// (grouped-query heads, q/k/v biases, SiLU and GELU gates), in fp32 and under
// bf16 autocast.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>

#include "model/block_kernels.h"
#include "model/precision.h"
#include "model/transformer.h"
#include "numerics.h"

using namespace undo;

namespace {

// The written-out rotary (model/transformer.cpp's reference path).
torch::Tensor rotary_written_out(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  auto half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  return torch::cat({x1 * cos - x2 * sin, x1 * sin + x2 * cos}, -1);
}

ModelConfig small_model(int kv_heads, bool qkv_bias, const std::string& activation) {
  ModelConfig m;
  m.vocab_size = 97, m.d_model = 32, m.n_layers = 2, m.n_heads = 4, m.n_kv_heads = kv_heads, m.d_ff = 48;
  m.seq_len = 16, m.qkv_bias = qkv_bias, m.activation = activation;
  return m;
}

struct Pass {
  torch::Tensor loss;
  std::map<std::string, torch::Tensor> grads;
};

// A weighted sum of the logits (weights fixed), and every parameter's gradient.
Pass run(Transformer& model, const torch::Tensor& tokens, const torch::Tensor& weights, bool fused) {
  model->set_fused_blocks(fused);
  model->zero_grad();
  auto loss = (model->forward(tokens).to(torch::kFloat) * weights).sum();
  loss.backward();
  Pass p{loss.detach(), {}};
  for (auto& item : model->named_parameters()) p.grads[item.key()] = item.value().grad().clone();
  return p;
}

}  // namespace

TEST(BlockKernels, RotaryEqualsTheWrittenOutFormForwardAndBackward) {
  torch::manual_seed(3);
  auto angles = torch::rand({16, 8}) * 6;
  auto cos = angles.cos(), sin = angles.sin();
  // [B, H, T, hd] as the attention makes it: a transposed view of [B, T, H, hd].
  auto x0 = torch::randn({2, 16, 3, 16}).transpose(1, 2);
  auto g = torch::randn({2, 3, 16, 16});
  for (double scale : {1.0, 0.25}) {
    const std::string what = "scale " + std::to_string(scale);
    auto a = x0.clone().requires_grad_(true), b = x0.clone().requires_grad_(true);
    auto ref = rotary_written_out(a, cos * scale, sin * scale), got = rotary(b, cos, sin, scale);
    EXPECT_TRUE(got.is_contiguous()) << what;
    (ref * g).sum().backward();
    (got * g).sum().backward();
    // Two products and a sum per output on both sides, the fused side's second product and sum one
    // multiply-add: an ulp or two.
    test::expect_tensors_close(ref, got, test::fp32_reordered(2, 1, 1), what + ": rotary output");
    test::expect_tensors_close(a.grad(), b.grad(), test::fp32_reordered(2, 1, 1), what + ": gradient");
  }
}

// In bf16 the fused rotary rounds where its header says: the tables, and on
// a CPU each output once (one loop, model/vector_loops.h). Checked against
// that arithmetic written out in fp32 with the same roundings: every value
// equal, but where the loop's multiply-add and a product then a sum land on
// two sides of a bf16 rounding boundary (one unit).
TEST(BlockKernels, TheBf16RotaryRoundsItsTablesAndEachOutputOnce) {
  torch::manual_seed(13);
  auto angles = torch::rand({16, 8}) * 6;
  auto x = torch::randn({2, 16, 3, 16}).transpose(1, 2).to(torch::kBFloat16).requires_grad_(true);
  auto g = torch::randn({2, 3, 16, 16}).to(torch::kBFloat16);
  const double scale = 0.25;
  auto bf = [](const torch::Tensor& t) { return t.to(torch::kBFloat16).to(torch::kFloat); };
  auto c = bf(angles.cos() * scale), s = bf(angles.sin() * scale);
  // out1 = round(x1 c - x2 s), out2 = round(x2 c + x1 s); backward: the opposite angle.
  auto rotate = [&](const torch::Tensor& v, double sign) {
    auto v1 = v.to(torch::kFloat).narrow(-1, 0, 8), v2 = v.to(torch::kFloat).narrow(-1, 8, 8);
    return torch::cat({bf(v1 * c - sign * v2 * s), bf(v2 * c + sign * v1 * s)}, -1);
  };
  auto got = rotary(x, angles.cos(), angles.sin(), scale);
  ASSERT_EQ(got.scalar_type(), torch::kBFloat16);
  got.backward(g);
  for (auto [what, want, have] : {std::tuple{"output", rotate(x.detach(), 1), got.detach().to(torch::kFloat)},
                                  std::tuple{"gradient", rotate(g, -1), x.grad().to(torch::kFloat)}}) {
    auto differ = want.ne(have);
    EXPECT_LE(differ.sum().item<int64_t>(), want.numel() / 100) << what << ": more than 1% of the values differ";
    // One bf16 unit of the larger of the two: 2^-7 of its binade's bottom, at most 2^-7 of the value.
    auto unit = torch::maximum(want.abs(), have.abs()) * std::ldexp(1.0, -7);
    EXPECT_TRUE((want - have).abs().le(unit).all().item<bool>()) << what << ": a value more than a unit apart";
  }
}

// Attention with the softmax in the scores' type against the written-out
// form's fp32 softmax, with the soft-cap and the sliding window, forward and backward.
TEST(BlockKernels, AttentionWithItsSoftmaxInTheScoresTypeEqualsTheWrittenOutForm) {
  torch::manual_seed(8);
  auto q0 = torch::randn({2, 3, 16, 8}), k0 = torch::randn({2, 3, 16, 8}), v0 = torch::randn({2, 3, 16, 8});
  auto g = torch::randn({2, 3, 16, 8});
  const double scale = 1.0 / std::sqrt(8.0);
  for (bool bf16 : {false, true})
    for (auto [softcap, window] : std::vector<std::pair<double, int>>{{0, 0}, {5, 0}, {0, 4}}) {
      const std::string what = std::string(bf16 ? "bf16" : "fp32") + ", softcap " + std::to_string(softcap) +
                               ", window " + std::to_string(window);
      auto type = bf16 ? torch::kBFloat16 : torch::kFloat;
      std::vector<torch::Tensor> ref_in, got_in;
      for (auto& t : {q0, k0, v0}) {
        ref_in.push_back(t.to(type).clone().requires_grad_(true));
        got_in.push_back(t.to(type).clone().requires_grad_(true));
      }
      auto ref = masked_softmax_attention(ref_in[0], ref_in[1], ref_in[2], scale, softcap, window);
      auto got = causal_attention((got_in[0] * scale).to(type), got_in[1], got_in[2], softcap, window);
      (ref.to(torch::kFloat) * g).sum().backward();
      (got.to(torch::kFloat) * g).sum().backward();
      // fp32: another order of the 16 keys' sums and a softmax on the way (Model.FusedAttentionEqualsMaskedSoftmax).
      // bf16, as that test derives it: the scores s are rounded to bf16, which moves each exp(s) by
      // |s| u and their sum by up to max|s| u, then the weights and the output: 2 + 2 max|s| units of
      // the values averaged, max|v|; the fused side's scaled q is rounded once more, which moves each
      // score by |s| u again: 3 + 3 max|s|. The gradients retrace those products backward: twice that,
      // at the largest gradient's scale.
      const double max_score = (torch::matmul(q0, k0.transpose(-2, -1)) * scale).abs().max().item<double>();
      const int depth = 3 + 3 * int(std::ceil(max_score));
      auto tol = [&](double scale_of, int stages) {
        return bf16 ? test::bf16_rounded(stages, scale_of) : test::fp32_reordered(16, 2, 1);
      };
      test::expect_tensors_close(ref.to(torch::kFloat), got.to(torch::kFloat), tol(v0.abs().max().item<double>(), depth),
                                 what + ": output");
      for (int i = 0; i < 3; ++i) {
        auto ref_grad = ref_in[size_t(i)].grad().to(torch::kFloat);
        test::expect_tensors_close(ref_grad, got_in[size_t(i)].grad().to(torch::kFloat),
                                   tol(ref_grad.abs().max().item<double>(), 2 * depth), what + ": d input " + std::to_string(i));
      }
    }
}

TEST(BlockKernels, RmsNormEqualsTheWrittenOutFormForwardAndBackward) {
  torch::manual_seed(12);
  auto w = (torch::randn({24}) * 0.3).requires_grad_(true), w2 = w.detach().clone().requires_grad_(true);
  auto g = torch::randn({3, 7, 24});
  for (auto type : {torch::kFloat, torch::kBFloat16}) {
    const std::string what = c10::toString(type);
    auto x0 = torch::randn({3, 7, 24}) * 3;
    auto a = x0.to(type).requires_grad_(true), b = x0.to(type).requires_grad_(true);
    auto af = a.to(torch::kFloat);
    auto ref = (af * torch::rsqrt(af.pow(2).mean(-1, true) + 1e-6) * (1 + w)).to(type);
    auto got = rms_norm(b, w2, 1e-6);
    EXPECT_EQ(got.scalar_type(), type) << what;
    (ref.to(torch::kFloat) * g).sum().backward();
    (got.to(torch::kFloat) * g).sum().backward();
    // fp32 on both sides: sums of 24 terms per row (and 21 rows for dw) in another order. In bf16
    // both round the output and dx once from fp32.
    const auto tol = type == torch::kFloat ? test::fp32_reordered(24, 2, 1) : test::bf16_rounded(1, 1);
    test::expect_tensors_close(ref.to(torch::kFloat), got.to(torch::kFloat), tol, what + ": output");
    test::expect_tensors_close(a.grad().to(torch::kFloat), b.grad().to(torch::kFloat), tol, what + ": d x");
    test::expect_tensors_close(w.grad(), w2.grad(), test::fp32_reordered(21, 2, w.grad().abs().max().item<double>()),
                               what + ": d weight");
    w.mutable_grad() = torch::Tensor(), w2.mutable_grad() = torch::Tensor();
  }
}

TEST(BlockKernels, ProjectionsTogetherEqualEachAloneWithTheirGradients) {
  torch::manual_seed(4);
  for (bool bias : {false, true}) {
    std::vector<torch::nn::Linear> ps;
    for (int out : {8, 4, 4}) ps.push_back(torch::nn::Linear(torch::nn::LinearOptions(16, out).bias(bias)));
    auto x = torch::randn({3, 5, 16}, torch::requires_grad());
    auto together = project_together(x, ps);
    ASSERT_EQ(together.size(), 3u);
    torch::Tensor ref_loss = torch::zeros({}), got_loss = torch::zeros({});
    std::vector<torch::Tensor> gs;
    for (size_t i = 0; i < ps.size(); ++i) {
      gs.push_back(torch::randn(together[i].sizes()));
      got_loss = got_loss + (together[i] * gs[i]).sum();
    }
    got_loss.backward();
    std::vector<torch::Tensor> got_dw, got_db;
    for (auto& p : ps) {
      got_dw.push_back(p->weight.grad().clone());
      if (bias) got_db.push_back(p->bias.grad().clone());
      p->zero_grad();
    }
    auto got_dx = x.grad().clone();
    x.mutable_grad() = torch::Tensor();
    for (size_t i = 0; i < ps.size(); ++i) {
      auto alone = ps[i]->forward(x);
      // A reordered sum errs by (n - 1) u of its terms' total size, |x| |W| here (up to about 3), not of its value.
      const double terms = x.detach().abs().matmul(ps[i]->weight.detach().abs().t()).max().item<double>();
      test::expect_tensors_close(alone, together[i], test::fp32_reordered(16, 1, std::max(1.0, terms)),
                                 "projection " + std::to_string(i));
      ref_loss = ref_loss + (alone * gs[i]).sum();
    }
    ref_loss.backward();
    for (size_t i = 0; i < ps.size(); ++i) {
      test::expect_tensors_close(ps[i]->weight.grad(), got_dw[i], test::fp32_reordered(15, 1, 1), "d weight");
      if (bias) test::expect_tensors_close(ps[i]->bias.grad(), got_db[i], test::fp32_reordered(15, 1, 1), "d bias");
    }
    test::expect_tensors_close(x.grad(), got_dx, test::fp32_reordered(16, 1, 1), "d input");
  }
  std::vector<torch::nn::Linear> mixed = {torch::nn::Linear(torch::nn::LinearOptions(4, 4).bias(true)),
                                          torch::nn::Linear(torch::nn::LinearOptions(4, 4).bias(false))};
  EXPECT_THROW(project_together(torch::randn({2, 4}), mixed), std::exception);
}

// Through whole models: the logits' weighted sum and every parameter's gradient.
TEST(BlockKernels, FusedBlocksEqualTheReferencePathThroughTheModel) {
  struct Kind {
    int kv_heads;
    bool qkv_bias;
    std::string activation;
  };
  for (auto [kv, bias, act] : {Kind{4, false, "gelu_tanh"}, Kind{2, true, "silu"}, Kind{1, false, "gelu"}}) {
    const std::string kind = "kv " + std::to_string(kv) + (bias ? " bias " : " ") + act;
    torch::manual_seed(9);
    Transformer model(small_model(kv, bias, act));
    model->init_weights(21);
    auto tokens = torch::randint(97, {3, 16}, torch::kLong);
    auto weights = torch::randn({3, 16, 97});
    for (bool bf16 : {false, true}) {
      AutocastGuard autocast(bf16, /*cuda=*/false);
      Pass ref = run(model, tokens, weights, false), got = run(model, tokens, weights, true);
      const std::string what = kind + (bf16 ? ", bf16" : ", fp32");
      // fp32: the loss sums 3 x 16 x 97 terms, each through 2 blocks of reordered sums. bf16: each
      // value the forward rounds to bf16 on its way may land on the other bf16 neighbour on the two
      // sides (other sums, other rounding points: the fused rotary's tables and outputs, the softmax
      // in bf16), and moves what follows by a unit: per block, the normed input's cast, the q/k/v
      // product, the rotary's 2, the scores, the softmax, the attention's output, its projection, the
      // MLP's normed input, gate and up, the activation, the gated product and the down product: 13;
      // the head's product and the logits' cast: 2 more. A gradient retraces them backward: twice that.
      const int depth = bf16 ? 2 * (13 * model->cfg.n_layers + 2) : 2 * model->cfg.n_layers + 2;
      auto tol = [&](double scale) {
        return bf16 ? test::bf16_rounded(depth, scale) : test::fp32_reordered(3 * 16 * 97, depth, scale);
      };
      test::expect_value_near(ref.loss.item<double>(), got.loss.item<double>(), tol(weights.abs().sum().item<double>() * 0.05),
                              what + ": loss");
      for (auto& [name, g] : ref.grads)
        test::expect_tensors_close(g, got.grads.at(name), tol(g.abs().max().item<double>()), what + ": d " + name);
    }
  }
}
