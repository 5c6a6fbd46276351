#include <gtest/gtest.h>

#include <filesystem>

#include <cmath>

#include "core/fs.h"
#include "train/checkpoint.h"
#include "model/noise.h"
#include "numerics.h"
#include "fixtures.h"
#include "test_util.h"
#include "train/objectives/unlearning.h"
#include "train/trainer.h"

using namespace undo;
using test::tiny_model;
using test::trained_tiny_model;

namespace {

// Cross-entropy written out from probabilities in double, independent of the library's kernels.
double manual_ce(Transformer& model, const torch::Tensor& w) {
  auto logits = model->forward(w.narrow(1, 0, 32)).to(torch::kDouble);
  auto p = torch::softmax(logits, -1);
  auto target = w.narrow(1, 1, 32).unsqueeze(-1);
  return -p.gather(-1, target).log().mean().item<double>();
}

double stream_ce(Transformer& model, const std::string& stream) {
  Shard shard(test::tiny_data_dir() + "/" + stream + ".val.bin");
  return shard_ce(model, shard, 32, 32, 16, false);
}

}  // namespace

TEST(UndoNoise, AlphaZeroIsIdentityAndVectorsShrink) {
  Transformer a = tiny_model(3), b = tiny_model(3);
  {
    torch::NoGradGuard g;
    for (auto& p : a->parameters()) p.add_(0.3);  // non-zero norm scales too
    for (auto& p : b->parameters()) p.add_(0.3);
  }
  apply_undo_noise(b, 0.0, 0.7, 11);
  for (auto& p : a->named_parameters()) EXPECT_TRUE(torch::equal(p.value(), b->named_parameters()[p.key()]));
  apply_undo_noise(b, 0.4, 0.7, 11);
  for (auto& p : a->named_parameters()) {
    if (p.value().dim() != 1) continue;
    // One product each side, the factor itself rounded once: two roundings.
    test::expect_tensors_close(p.value() * 0.6, b->named_parameters()[p.key()], test::fp32_reordered(2), p.key());
  }
  // Matrices: (1 - alpha) theta + alpha beta N with |N| <= the Xavier bound.
  auto w0 = a->named_parameters()["layers.0.mlp.gate.weight"], w1 = b->named_parameters()["layers.0.mlp.gate.weight"];
  double bound = std::sqrt(6.0 / (32 + 64));
  auto noise = (w1 - 0.6 * w0) / (0.4 * 0.7);
  // The noise recovered by two fp32 operations on weights of size ~1: a few units of 1e-7 off.
  EXPECT_LE(noise.abs().max().item<double>(), bound + 1e-5);
  EXPECT_GT(noise.abs().max().item<double>(), 0.9 * bound);
}

TEST(UndoNoise, AlphaOneBetaOneIsAFreshXavierInit) {
  Transformer m = tiny_model(5);
  apply_undo_noise(m, 1.0, 1.0, 12);
  for (auto& p : m->named_parameters()) {
    auto& t = p.value();
    if (t.dim() == 1) {
      EXPECT_EQ(t.abs().max().item<double>(), 0.0) << p.key();
      continue;
    }
    double bound = std::sqrt(6.0 / double(t.size(0) + t.size(1)));
    // Uniform(-b, b): mean 0, standard deviation b / sqrt(3); nothing of the old weights left. Bounds on
    // the draw (at least 1024 values: a standard error of at most 0.018 b), not on rounding.
    EXPECT_NEAR(t.mean().item<double>(), 0.0, 0.05 * bound) << p.key();
    EXPECT_NEAR(t.std().item<double>(), bound / std::sqrt(3.0), 0.05 * bound) << p.key();
    EXPECT_LE(t.abs().max().item<double>(), bound) << p.key();
  }
  // Same seed, same draw; another seed, another draw.
  Transformer again = tiny_model(9), other = tiny_model(9);
  apply_undo_noise(again, 1.0, 1.0, 12);
  apply_undo_noise(other, 1.0, 1.0, 13);
  EXPECT_TRUE(torch::equal(again->embed->weight, m->embed->weight));
  EXPECT_FALSE(torch::equal(other->embed->weight, m->embed->weight));
}

TEST(UnlearningLoss, GradDiffEqualsItsFormula) {
  Transformer m = tiny_model(2);
  auto forget = test::tiny_mix("muldiv:1"), retain = test::tiny_mix("english:1");
  GradDiffObjective obj(forget, retain, 32, 15.0);
  MicroBatch mb{42, 3, 0, 4};
  double loss = obj.loss(m, mb, nullptr).item<double>();
  MicroBatch rb = mb;
  rb.seed = retain_seed(mb.seed);
  double expect = -manual_ce(m, window_tensor(*forget, mb, 32)) + 15.0 * manual_ce(m, window_tensor(*retain, rb, 32));
  // The same fp32 forward; the CEs (up to log V each, the retain one weighed 15) summed over the 320
  // classes in fp32 against double.
  test::expect_value_near(expect, loss, test::fp32_reordered(320, 1, 16 * test::kTinyCeScale));
}

TEST(UnlearningLoss, MaxEntEqualsItsFormula) {
  torch::manual_seed(12);  // fixed data: unseeded, the generator gives other draws each run
  // KL(U || p) by its definition, sum_v (1/V)(log(1/V) - log p_v), on a hand-made case.
  auto logits = torch::tensor({{{2.0f, 0.0f, -1.0f, 0.5f}}});
  double kl = 0;
  double z = std::exp(2.0) + 1 + std::exp(-1.0) + std::exp(0.5);
  for (double x : {2.0, 0.0, -1.0, 0.5}) kl += 0.25 * (std::log(0.25) - (x - std::log(z)));
  // Sums over 4 and 7 classes, terms of size up to log V (1.4, 1.9).
  test::expect_value_near(kl, kl_uniform_to_model(logits).item<double>(), test::fp32_reordered(4, 1, 1.4), "4 classes");
  test::expect_value_near(0.0, kl_uniform_to_model(torch::zeros({2, 3, 7})).item<double>(),
                          test::fp32_reordered(7, 1, 1.9), "uniform already");

  Transformer m = tiny_model(2);
  auto forget = test::tiny_mix("muldiv:1"), retain = test::tiny_mix("english:1");
  MaxEntObjective obj(forget, retain, 32, 1.0);
  MicroBatch mb{42, 3, 0, 4};
  double loss = obj.loss(m, mb, nullptr).item<double>();
  auto w = window_tensor(*forget, mb, 32);
  auto logp = torch::log_softmax(m->forward(w.narrow(1, 0, 32)).to(torch::kDouble), -1);
  double V = 320;
  double manual_kl = (torch::exp(torch::full_like(logp, -std::log(V))) * (-std::log(V) - logp)).sum(-1).mean().item<double>();
  MicroBatch rb = mb;
  rb.seed = retain_seed(mb.seed);
  test::expect_value_near(manual_kl + manual_ce(m, window_tensor(*retain, rb, 32)), loss,
                          test::fp32_reordered(320, 1, 2 * test::kTinyCeScale));
}

TEST(UnlearningLoss, RmuEqualsItsFormulaAndTrainsOnlyDownProjections) {
  Transformer m = tiny_model(2), frozen = tiny_model(2);
  UnlearnConfig u;
  u.rmu_layer = 1;
  u.rmu_c = 6.5;
  u.rmu_alpha = 100;
  auto forget = test::tiny_mix("muldiv:1"), retain = test::tiny_mix("english:1");
  {
    torch::NoGradGuard g;
    m->layers[0]->as<Block>()->mlp->down->weight.add_(0.01);  // the model has moved away from the frozen copy
  }
  RmuObjective obj(forget, retain, 32, u, frozen, 77);
  test::expect_value_near(1.0, obj.control().norm().item<double>(), test::fp32_reordered(32), "|u|");
  MicroBatch mb{42, 3, 0, 4};
  double loss = obj.loss(m, mb, nullptr).item<double>();
  auto hf = m->hidden_after(window_tensor(*forget, mb, 32).narrow(1, 0, 32), 1).to(torch::kDouble);
  double steer = (hf - 6.5 * obj.control().to(torch::kDouble)).pow(2).mean().item<double>();
  MicroBatch rb = mb;
  rb.seed = retain_seed(mb.seed);
  auto wr = window_tensor(*retain, rb, 32).narrow(1, 0, 32);
  double keep = (m->hidden_after(wr, 1) - frozen->hidden_after(wr, 1)).to(torch::kDouble).pow(2).mean().item<double>();
  EXPECT_GT(keep, 0);
  // The same fp32 activations; means of squares over 4 x 32 x 32 values in fp32 against double.
  test::expect_value_near(steer + 100 * keep, loss, test::fp32_reordered(4 * 32 * 32), "with retain");
  auto names = obj.trainable(m);
  ASSERT_EQ(names.size(), 2u);  // blocks 0..l
  for (auto& [name, p] : names) EXPECT_NE(name.find("mlp.down.weight"), std::string::npos) << name;
  u.rmu_retain_term = false;  // the switch
  RmuObjective no_retain(forget, retain, 32, u, frozen, 77);
  test::expect_value_near(steer, no_retain.loss(m, mb, nullptr).item<double>(), test::fp32_reordered(4 * 32 * 32),
                          "without retain");
}

TEST(Unlearning, MaxEntRaisesForgetCeTowardsUniformKeepsRetain) {
  Transformer m = trained_tiny_model();
  double forget0 = stream_ce(m, "muldiv"), retain0 = stream_ce(m, "english"), uniform = std::log(320.0);
  Config cfg = test::tiny_config(test::temp_dir("maxent"));
  cfg.train.steps = 30;
  cfg.optim.lr = 1e-3;
  cfg.optim.schedule = "constant";
  cfg.optim.min_lr = 1e-3;
  cfg.train.ckpt_every = 0;
  cfg.data.oracle_mix = "english:1";
  auto parallel = make_parallelism(cfg);
  auto obj = make_unlearning_objective(cfg, m, *parallel);
  Trainer(cfg, "unlearn-maxent", m, *obj, nullptr, parallel).run();
  double forget1 = stream_ce(m, "muldiv"), retain1 = stream_ce(m, "english");
  EXPECT_GT(forget1 - forget0, 1.0) << forget0 << " -> " << forget1;
  EXPECT_LT(std::abs(uniform - forget1), 0.6 * std::abs(uniform - forget0));
  EXPECT_LT(std::abs(retain1 - retain0), 0.3 * (forget1 - forget0)) << retain0 << " -> " << retain1;
}

TEST(Unlearning, RmuSteersForgetActivationsTowardsCU) {
  Transformer m = trained_tiny_model();
  Config cfg = test::tiny_config(test::temp_dir("rmu"));
  cfg.unlearn.method = "rmu";
  cfg.unlearn.rmu_layer = 1;
  cfg.unlearn.rmu_alpha = 1;  // the paper's 1200 matches its far larger activations
  cfg.train.steps = 40;
  cfg.optim.lr = 3e-3;
  cfg.optim.schedule = "constant";
  cfg.optim.min_lr = 3e-3;
  cfg.train.ckpt_every = 0;
  auto parallel = make_parallelism(cfg);
  auto obj = make_unlearning_objective(cfg, m, *parallel);
  auto* rmu = dynamic_cast<RmuObjective*>(obj.get());
  ASSERT_NE(rmu, nullptr);
  auto forget = test::tiny_mix(cfg.data.forget_mix);
  auto probe = window_tensor(*forget, MicroBatch{999, 0, 0, 16}, 32).narrow(1, 0, 32);
  auto distance = [&] {
    torch::NoGradGuard g;
    return (m->hidden_after(probe, 1) - cfg.unlearn.rmu_c * rmu->control()).pow(2).mean().item<double>();
  };
  double before = distance();
  auto embed_before = m->embed->weight.clone();
  Trainer(cfg, "unlearn-rmu", m, *obj, nullptr, parallel).run();
  EXPECT_LT(distance(), 0.5 * before);
  EXPECT_TRUE(torch::equal(m->embed->weight, embed_before));  // only down-projections move
}

TEST(Unlearning, SamTakesTheGradientAtPerturbedWeightsAndRestoresThem) {
  Transformer m = tiny_model(4);
  auto forget = test::tiny_mix("muldiv:1"), retain = test::tiny_mix("english:1");
  SamObjective sam(std::make_unique<GradDiffObjective>(forget, retain, 32, 1.0), 0.05);
  // Bound to a run's layout, as a Trainer binds it: SAM moves what its optimizer steps.
  const Config cfg = test::tiny_config(test::temp_dir("sam"));
  auto training = make_parallelism(cfg)->train(m, sam.trainable(m), cfg.optim, "unlearn-graddiff-sam");
  sam.bind(*training);
  auto before = m->embed->weight.clone();
  MicroBatch mb{42, 0, 0, 4};
  auto loss = sam.loss(m, mb, nullptr);
  EXPECT_FALSE(torch::equal(m->embed->weight, before));  // moved by rho g/|g| for the second pass
  loss.backward();
  sam.after_backward(m);
  // (w + e) - e, |e| <= rho = 0.05: two roundings of values of size at most max |w| + rho.
  test::expect_tensors_close(before, m->embed->weight,
                             test::fp32_reordered(2, 1, before.abs().max().item<double>() + 0.05), "restored");
  GradDiffObjective plain(forget, retain, 32, 1.0);
  EXPECT_NE(loss.item<double>(), plain.loss(m, mb, nullptr).item<double>());
}

TEST(Cli, UnlearnStageRunsFromABaseCheckpoint) {
  Transformer m = trained_tiny_model();
  auto dir = test::temp_dir("cli");
  CheckpointMeta meta;
  meta.model = m->cfg;
  meta.stage = "pretrain-base";
  save_checkpoint(dir + "/base.ckpt", meta, m, nullptr);
  std::string out;
  std::string args = "unlearn --config " + std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini --data.dir " +
                     test::tiny_data_dir() + " --base " + dir + "/base.ckpt --run-dir " + dir +
                     "/unlearn --unlearn.method graddiff --unlearn.steps 5 --unlearn.sam_rho 0.02";
  ASSERT_EQ(test::run_undo(args, &out), 0) << out;
  auto result = read_checkpoint_meta(dir + "/unlearn/model.ckpt");
  EXPECT_EQ(result.stage, "unlearn-graddiff-sam");
  EXPECT_EQ(result.step, 5);
  EXPECT_EQ(test::run_undo("unlearn --config " + std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini --base /nope.ckpt",
                           &out),
            2);
  EXPECT_NE(out.find("/nope.ckpt"), std::string::npos);
  // A general key the stage replaces is refused by name before anything is written.
  EXPECT_EQ(test::run_undo("unlearn --config " + std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini --data.dir " +
                               test::tiny_data_dir() + " --base " + dir + "/base.ckpt --run-dir " + dir +
                               "/refused --optim.weight_decay 0.1",
                           &out),
            2);
  EXPECT_NE(out.find("optim.weight_decay"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/refused"));
}
