// Tests that need a CUDA GPU. They are part of every build and skipped (and
// reported as skipped, not passed) where no GPU is visible, as in CI;
// launch/gpu-check runs them on a GPU machine.
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "core/fs.h"
#include "train/checkpoint.h"
#include "model/device.h"
#include "test_util.h"
#include "train/trainer.h"

using namespace undo;

namespace {

#define SKIP_WITHOUT_GPU() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible: skipped, not passed"

std::vector<double> train_losses(Config cfg, const std::string& device, Transformer* out = nullptr) {
  select_compute_device(device, 0);
  Transformer model(cfg.model);
  model->init_weights(3);
  model->to(compute_device());
  auto mix = std::make_shared<StreamMix>(cfg.data.dir, parse_mix("data.base_mix", cfg.data.base_mix), "train",
                                         cfg.model.seq_len);
  CrossEntropyObjective objective(mix, cfg.model.seq_len);
  auto r = Trainer(cfg, "pretrain-base", model, objective, nullptr).run();
  if (out) *out = model;
  select_compute_device("cpu", 0);
  return r.losses;
}

}  // namespace

TEST(Cuda, TrainingOnTheGpuFollowsTheCpuCurve) {
  SKIP_WITHOUT_GPU();
  Config cfg = test::tiny_config(test::temp_dir("cpu"));
  cfg.train.steps = 20;
  auto cpu = train_losses(cfg, "cpu");
  cfg.run.dir = test::temp_dir("gpu");
  auto gpu = train_losses(cfg, "cuda");
  ASSERT_EQ(cpu.size(), gpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) EXPECT_NEAR(gpu[i], cpu[i], 1e-3 * cpu[i]) << "step " << i;
}

// ZeRO-3's unit runner on the GPU (one rank: the gathers are copies, the
// recompute runs under CUDA autocast): the same curve as the replicated CPU run.
TEST(Cuda, ZeroThreeOnTheGpuFollowsTheCpuCurve) {
  SKIP_WITHOUT_GPU();
  Config cfg = test::tiny_config(test::temp_dir("cpu"));
  cfg.train.steps = 20;
  auto cpu = train_losses(cfg, "cpu");
  for (std::string precision : {"fp32", "bf16"}) {
    cfg.run.dir = test::temp_dir("gpu_zero3_" + precision);
    cfg.dist.zero = 3;
    cfg.train.precision = precision;
    auto gpu = train_losses(cfg, "cuda");
    ASSERT_EQ(cpu.size(), gpu.size());
    const double tolerance = precision == "fp32" ? 1e-3 : 2e-2;
    for (size_t i = 0; i < cpu.size(); ++i) EXPECT_NEAR(gpu[i], cpu[i], tolerance * cpu[i]) << precision << " step " << i;
  }
}

TEST(Cuda, CheckpointsWrittenOnTheGpuLoadOnTheCpuAndBack) {
  SKIP_WITHOUT_GPU();
  Config cfg = test::tiny_config(test::temp_dir("run"));
  cfg.train.steps = 5;
  Transformer gpu_model(cfg.model);
  train_losses(cfg, "cuda", &gpu_model);
  CheckpointMeta meta;
  meta.model = gpu_model->cfg;
  meta.stage = "pretrain-base";
  save_checkpoint(cfg.run.dir + "/gpu.ckpt", meta, gpu_model, nullptr);
  torch::NoGradGuard no_grad;
  auto tokens = torch::randint(cfg.model.vocab_size, {2, cfg.model.seq_len}, torch::kLong);
  auto on_gpu = gpu_model->forward(tokens.cuda()).cpu();
  Transformer cpu_model = load_model(cfg.run.dir + "/gpu.ckpt");
  for (auto& p : cpu_model->parameters()) EXPECT_TRUE(p.device().is_cpu());
  EXPECT_TRUE(torch::allclose(cpu_model->forward(tokens), on_gpu, 1e-4, 1e-4));
  // And back: written from the CPU, loaded onto the GPU.
  save_checkpoint(cfg.run.dir + "/cpu.ckpt", meta, cpu_model, nullptr);
  Transformer again = load_model(cfg.run.dir + "/cpu.ckpt");
  again->to(torch::kCUDA);
  EXPECT_TRUE(torch::allclose(again->forward(tokens.cuda()).cpu(), on_gpu, 1e-4, 1e-4));
}

TEST(Cuda, WholePipelineRunsOnTheGpu) {
  SKIP_WITHOUT_GPU();
  auto dir = test::temp_dir("pipeline");
  std::string common = " --config " + std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini --data.dir " +
                       test::tiny_data_dir() + " --run.device cuda --eval.arith_per_op 4";
  std::string out;
  ASSERT_EQ(test::run_undo("pretrain" + common + " --train.steps 10 --run-dir " + dir + "/base", &out), 0) << out;
  ASSERT_EQ(test::run_undo("unlearn" + common + " --base " + dir + "/base/model.ckpt --unlearn.steps 5 --run-dir " +
                               dir + "/unlearn",
                           &out),
            0)
      << out;
  ASSERT_EQ(test::run_undo("distill" + common + " --teacher " + dir + "/unlearn/model.ckpt --distill.steps 5 " +
                               "--distill.cache off --run-dir " + dir + "/student",
                           &out),
            0)
      << out;
  ASSERT_EQ(test::run_undo("relearn" + common + " --model " + dir + "/student/model.ckpt --lrs 1e-3 --steps 4 " +
                               "--eval-every 2 --run-dir " + dir + "/attack",
                           &out),
            0)
      << out;
  // Every result written on the GPU is read back on the CPU.
  ASSERT_EQ(test::run_undo("eval --config " + std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini --data.dir " +
                               test::tiny_data_dir() + " --model " + dir + "/student/model.ckpt --run-dir " + dir +
                               "/eval",
                           &out),
            0)
      << out;
}
