// Steps with a non-finite loss or gradient are skipped on the device and
// counted (train/nonfinite_steps.h): the optimizer's skip flag, the counts,
// and a Trainer with a NaN injected at known steps (UNDO_FAULT_NAN).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "test_util.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/nonfinite_steps.h"
#include "train/trainer.h"

using namespace undo;

namespace {

// UNDO_FAULT_NAN for one scope.
struct InjectedNan {
  explicit InjectedNan(const char* spec) { setenv("UNDO_FAULT_NAN", spec, 1); }
  ~InjectedNan() { unsetenv("UNDO_FAULT_NAN"); }
};

TrainResult pretrain(const Config& cfg) {
  auto mix = std::make_shared<StreamMix>(cfg.data.dir, parse_mix("data.base_mix", cfg.data.base_mix), "train",
                                         cfg.model.seq_len);
  CrossEntropyObjective objective(mix, cfg.model.seq_len);
  Transformer model(cfg.model);
  model->init_weights(4);
  Trainer trainer(cfg, "pretrain-base", model, objective, nullptr);
  return trainer.run();
}

std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> lines;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

torch::Tensor weights_at(const std::string& dir, int64_t step) {
  Transformer m = load_model(step_checkpoint_path(dir, step));
  return m->named_parameters()["layers.0.mlp.up.weight"].clone();
}

}  // namespace

// A skipped step leaves weights, both moments and the step count as they
// were, in the fused kernel and in the per-tensor formula; an unskipped one
// is the plain step.
TEST(NonFinite, ASkippedOptimizerStepChangesNothing) {
  for (bool fused : {true, false}) {
    OptimConfig o;
    o.weight_decay = 0.1;
    o.fused = fused;
    torch::manual_seed(3);
    auto a = torch::randn({20, 10}), b = a.clone();
    std::vector<std::pair<std::string, torch::Tensor>> pa{{"w", a}}, pb{{"w", b}};
    AdamW flagged(pa, o, nullptr, false), plain(pb, o, nullptr, false);
    const auto no = torch::zeros({}), yes = torch::ones({});
    for (int step = 0; step < 4; ++step) {
      auto g = torch::randn({20, 10});
      a.mutable_grad() = g.clone();
      b.mutable_grad() = g.clone();
      flagged.step(1e-2, no);
      plain.step(1e-2);
    }
    EXPECT_TRUE(torch::equal(a, b)) << "fused " << fused << ": a step flagged 0 is the plain step";
    auto before = a.clone(), m = flagged.exp_avg()[0].clone(), v = flagged.exp_avg_sq()[0].clone();
    a.mutable_grad() = torch::full({20, 10}, std::numeric_limits<float>::quiet_NaN());
    flagged.step(1e-2, yes);
    EXPECT_TRUE(torch::equal(a, before)) << "fused " << fused;
    EXPECT_TRUE(torch::equal(flagged.exp_avg()[0], m)) << "fused " << fused;
    EXPECT_TRUE(torch::equal(flagged.exp_avg_sq()[0], v)) << "fused " << fused;
    EXPECT_EQ(flagged.steps(), 4) << "fused " << fused << ": the skipped step is not counted";
    // The next applied step is the plain optimizer's fifth: the bias correction did not move.
    auto g = torch::randn({20, 10});
    a.mutable_grad() = g.clone();
    b.mutable_grad() = g.clone();
    flagged.step(1e-2, no);
    plain.step(1e-2);
    EXPECT_TRUE(torch::equal(a, b)) << "fused " << fused;
  }
}

// The counts are kept on the device and read when asked: runs of skips, the
// longest of them, and the limit on it.
TEST(NonFinite, TheCountsFollowRunsOfSkipsAndStopPastTheLimit) {
  NonFiniteSteps steps("pretrain", 3);
  const auto finite = torch::tensor(1.0), nan = torch::tensor(std::numeric_limits<double>::quiet_NaN()),
             inf = torch::tensor(std::numeric_limits<double>::infinity());
  // Steps: skip, skip, applied, skip (inf norm), skip, skip: longest run 3.
  const std::vector<std::pair<torch::Tensor, torch::Tensor>> seen{{nan, finite},    {finite, nan}, {finite, finite},
                                                                  {finite, inf},    {nan, nan},    {inf, finite}};
  std::vector<float> flags;
  for (auto& [loss, norm] : seen) flags.push_back(steps.flag(loss, norm).item<float>());
  EXPECT_EQ(flags, (std::vector<float>{1, 1, 0, 1, 1, 1}));
  EXPECT_EQ(steps.check(6), 5);
  steps.flag(nan, finite);  // a fourth in a row
  try {
    steps.check(7);
    FAIL() << "four consecutive skips passed a limit of 3";
  } catch (const RuntimeError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("pretrain: 4 consecutive steps"), std::string::npos) << msg;
    EXPECT_NE(msg.find("by step 7"), std::string::npos) << msg;
    EXPECT_NE(msg.find("train.max_skipped_steps = 3"), std::string::npos) << msg;
  }
}

// A NaN loss at step 4 (of 8): that step is skipped (its checkpoint holds the
// weights of step 3), it is counted in the result and in metrics.jsonl, and
// the run goes on to finite losses. Then a NaN that does not go away stops the
// run with the error once the limit is passed, its last checkpoint intact.
TEST(NonFinite, AnInjectedNanIsSkippedCountedAndTooManyStopTheRun) {
  Config cfg = test::tiny_config(test::temp_dir("nan"));
  cfg.train.precision = "fp32";
  cfg.train.steps = 8;
  cfg.train.ckpt_every = 1;
  cfg.train.keep_ckpts = 100;
  cfg.train.log_every = 1;
  TrainResult r;
  {
    InjectedNan nan("3:1");  // 0-based step 3: the fourth
    r = pretrain(cfg);
  }
  EXPECT_EQ(r.steps_done, 8);
  EXPECT_EQ(r.skipped_steps, 1);
  ASSERT_EQ(r.losses.size(), 8u);
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(std::isfinite(r.losses[i]), i != 3) << "step " << i;
  EXPECT_TRUE(torch::equal(weights_at(cfg.run.dir, 3), weights_at(cfg.run.dir, 4))) << "the NaN step moved the weights";
  EXPECT_FALSE(torch::equal(weights_at(cfg.run.dir, 4), weights_at(cfg.run.dir, 5)));
  auto lines = lines_of(cfg.run.dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 8u);
  EXPECT_NE(lines[2].find("\"skipped_steps\": 0"), std::string::npos) << lines[2];
  EXPECT_NE(lines[3].find("\"loss\": null"), std::string::npos) << lines[3];
  EXPECT_NE(lines[7].find("\"skipped_steps\": 1"), std::string::npos) << lines[7];

  cfg.run.dir = test::temp_dir("nan-stops");
  cfg.train.max_skipped_steps = 2;
  InjectedNan nan("2:100");
  try {
    pretrain(cfg);
    FAIL() << "a NaN at every step from step 3 did not stop the run";
  } catch (const RuntimeError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("3 consecutive steps had a non-finite loss or gradient"), std::string::npos) << msg;
    EXPECT_NE(msg.find("train.max_skipped_steps = 2"), std::string::npos) << msg;
  }
  auto last = latest_valid_checkpoint(cfg.run.dir);
  ASSERT_TRUE(last);
  EXPECT_EQ(read_checkpoint_meta(*last).step, 4);  // steps 3 and 4 skipped and checkpointed; step 5 stopped it
  EXPECT_TRUE(torch::equal(weights_at(cfg.run.dir, 2), weights_at(cfg.run.dir, 4)));
}
