#include <gtest/gtest.h>

#include <cmath>

#include "model/transformer.h"
#include "numerics.h"

using namespace undo;

namespace {
ModelConfig small_model() {
  ModelConfig m;
  m.vocab_size = 50;
  m.d_model = 32;
  m.n_layers = 2;
  m.n_heads = 4;
  m.d_ff = 64;
  m.seq_len = 16;
  return m;
}
}  // namespace

TEST(Model, CausalMasking) {
  torch::manual_seed(15);  // fixed data: unseeded, the generator gives other draws each run
  Transformer model(small_model());
  model->init_weights(3);
  torch::NoGradGuard g;
  auto tokens = torch::randint(50, {2, 16}, torch::kLong);
  auto base = model->forward(tokens);
  for (int64_t pos : {3, 9, 15}) {
    auto changed = tokens.clone();
    changed.index_put_({torch::indexing::Slice(), pos}, (changed.select(1, pos) + 1) % 50);
    auto out = model->forward(changed);
    // Logits before the changed position are untouched, to the bit: each row of a product is summed
    // the same way whatever the other rows hold, and a masked key weighs exactly 0. At it they change.
    EXPECT_TRUE(torch::equal(out.narrow(1, 0, pos), base.narrow(1, 0, pos))) << pos;
    EXPECT_FALSE(torch::allclose(out.select(1, pos), base.select(1, pos)));
  }
}

TEST(Model, FusedAttentionEqualsMaskedSoftmax) {
  // The model attends through scaled_dot_product_attention; it must be the
  // masked-softmax formula, in fp32 and under bf16 autocast alike.
  torch::manual_seed(5);
  auto q = torch::randn({2, 4, 16, 8}), k = torch::randn({2, 4, 16, 8}), v = torch::randn({2, 4, 16, 8});
  auto fused = torch::scaled_dot_product_attention(q, k, v, {}, 0.0, true);
  // Another order of the 16 keys' sums, and a softmax (exp, then a sum) on the way: two stages.
  test::expect_tensors_close(masked_softmax_attention(q, k, v), fused, test::fp32_reordered(16, 2), "fp32");
  auto qb = q.to(torch::kBFloat16), kb = k.to(torch::kBFloat16), vb = v.to(torch::kBFloat16);
  auto fused_bf16 = torch::scaled_dot_product_attention(qb, kb, vb, {}, 0.0, true).to(torch::kFloat);
  // The reference rounds the scores s to bf16, which moves each exp(s) by |s| u_bf16 and their sum by up
  // to max |s| u_bf16, then the weights and the output (fused: the output alone): 2 + 2 max |s| units of
  // the values averaged, max |v| (the output, their weighted mean, may cancel below them).
  const double max_score = (torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(8.0)).abs().max().item<double>();
  test::expect_tensors_close(masked_softmax_attention(qb, kb, vb).to(torch::kFloat), fused_bf16,
                             test::bf16_rounded(2 + 2 * int(std::ceil(max_score)), v.abs().max().item<double>()),
                             "bf16");
}

TEST(Model, GemmaNormAndTiedEmbedding) {
  auto cfg = small_model();
  Transformer model(cfg);
  model->init_weights(1);
  std::set<std::string> names;
  for (auto& p : model->named_parameters()) names.insert(p.key());
  EXPECT_TRUE(names.count("embed.weight"));
  EXPECT_TRUE(names.count("layers.1.mlp.down.weight"));
  EXPECT_TRUE(names.count("final_norm.weight"));
  EXPECT_EQ(names.size(), size_t(2 + 2 * 9));  // embed, final norm; 2 norms + 7 matrices per block
  // Norm scales start at 0: (1 + w) = 1, the identity scale.
  RMSNorm norm(4, 1e-6);
  auto x = torch::tensor({{1.0f, -1.0f, 1.0f, -1.0f}});
  test::expect_tensors_close(x / std::sqrt(1 + 1e-6), norm(x), test::fp32_reordered(4), "unit scale");
  // Soft-capping bounds the logits.
  cfg.softcap = 2.0;
  Transformer capped(cfg);
  capped->init_weights(1);
  torch::NoGradGuard g;
  for (auto& p : capped->parameters()) p.mul_(50);
  EXPECT_LE(capped->forward(torch::randint(50, {1, 8}, torch::kLong)).abs().max().item<double>(), 2.0);
}

#include "train/fused_ce.h"

TEST(FusedCrossEntropy, MatchesTorchValueAndGradient) {
  torch::manual_seed(4);  // the same logits in every run: unseeded, the generator gave other ones each run
  auto logits = torch::randn({37, 101}, torch::kFloat).mul_(3).requires_grad_(true);
  auto targets = torch::randint(101, {37}, torch::kLong);
  auto ref = torch::nn::functional::cross_entropy(logits, targets);
  auto ref_grad = torch::autograd::grad({ref * 1.7}, {logits})[0];
  auto ours = fused_cross_entropy(logits, targets);
  auto our_grad = torch::autograd::grad({ours * 1.7}, {logits})[0];
  // Sums over the 101 classes and the 37 rows, in another order. Each gradient entry is a softmax
  // made another way (exp(x - lse) against torch's exp(x - max) / sum), and exp(x - lse) errs by
  // |x - lse| u, so the logits' spread adds to the 101-term sum (as in Distill.ForwardKlEqualsItsFormula).
  // An entry is 1.7 / 37 (p - [target]): at the target a difference of terms up to 1.7 / 37 each, which
  // it errs as (the scale; the smallest entries, exp of -20, are compared at it too).
  test::expect_value_near(ref.item<double>(), ours.item<double>(), test::fp32_reordered(101), "loss");
  const int64_t spread = int64_t(std::ceil(2 * logits.abs().max().item<double>()));
  test::expect_tensors_close(ref_grad, our_grad, test::fp32_reordered(101 + spread, 1, 1.7 / 37), "gradient");
  // The caller's logits are left as they were: the same kernel on the same input gives the same bits.
  EXPECT_TRUE(torch::equal(fused_cross_entropy(logits, targets), ours));
}
