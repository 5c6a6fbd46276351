// Graceful stop: SIGTERM / SIGUSR1 arriving in the middle of a long step, an
// evaluation or a logit-cache build stops the run at the next safe point,
// keeps what was finished, exits 75, and a rerun ends exactly where an
// uninterrupted run ends. The signal is sent by the process itself at a
// chosen safe point (UNDO_FAULT_TERM_AT_POLL) or by the objective at a chosen
// micro-batch, so each case is deterministic.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "cache/logit_cache.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/stop_signal.h"
#include "eval/evaluator.h"
#include "fixtures.h"
#include "train/checkpoint.h"
#include "sweep/plan.h"
#include "test_util.h"
#include "train/trainer.h"

using namespace undo;
namespace fs = std::filesystem;

namespace {

std::string tiny_ini() { return std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini"; }

// Cross-entropy that sends this process SIGTERM when its micro-batch number `signal_at` starts.
class SignallingObjective : public CrossEntropyObjective {
 public:
  using CrossEntropyObjective::CrossEntropyObjective;
  torch::Tensor loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) override {
    if (++calls == signal_at) std::raise(SIGTERM);
    return CrossEntropyObjective::loss(model, mb, logs);
  }
  int64_t calls = 0, signal_at = -1;
};

TrainResult train(const Config& cfg, int64_t signal_at, int64_t* calls = nullptr, Evaluator* evaluator = nullptr,
                  std::function<bool(int64_t)> stopping_rule = {}) {
  auto mix = std::make_shared<StreamMix>(cfg.data.dir, parse_mix("data.base_mix", cfg.data.base_mix), "train",
                                         cfg.model.seq_len);
  SignallingObjective objective(mix, cfg.model.seq_len);
  objective.signal_at = signal_at;
  Transformer model(cfg.model);
  model->init_weights(7);
  Trainer trainer(cfg, "pretrain-base", model, objective, evaluator);
  trainer.stopping_rule = stopping_rule;
  struct Count {
    int64_t* out;
    SignallingObjective& o;
    ~Count() {
      if (out) *out = o.calls;
    }
  } count{calls, objective};
  return trainer.run();
}

// The lines of a metrics.jsonl that carry an evaluation, by step.
std::vector<std::string> eval_lines(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (line.find("\"retain_ce\"") != std::string::npos) out.push_back(test::without_wall_clock(line));
  return out;
}

std::string cache_command(const std::string& out, const std::string& run_dir) {
  return "cache-logits --config " + tiny_ini() + " --data.dir " + test::tiny_data_dir() + " --teacher " +
         test::trained_tiny_checkpoint() + " --tokens 3200 --run.threads 1 --out " + out + " --run-dir " + run_dir;
}

}  // namespace

// A signal in the middle of a step of 4 micro-batches: the step is dropped,
// the last whole step is checkpointed, and the resumed run is bitwise the
// uninterrupted one.
TEST(GracefulStop, InsideAStepCheckpointsTheLastWholeStepAndResumesExactly) {
  Config cfg = test::tiny_config(test::temp_dir("whole"));
  cfg.train.steps = 6;
  cfg.train.batch_size = 2;
  cfg.train.accum = 4;
  cfg.train.ckpt_every = 1000;
  cfg.run.threads = 1;
  auto whole = train(cfg, -1);

  cfg.run.dir = test::temp_dir("stopped");
  int64_t calls = 0;
  try {
    train(cfg, /*signal_at=*/3 * 4 + 2, &calls);  // the second micro-batch of step 4
    FAIL() << "the run did not stop";
  } catch (const Preempted& e) {
    EXPECT_NE(std::string(e.what()).find("inside step 4 (micro-batch 3 of 4); checkpointed at step 3"),
              std::string::npos)
        << e.what();
  }
  clear_stop_signal();
  EXPECT_EQ(calls, 3 * 4 + 2);  // stopped at the next micro-batch, not at the end of the step
  auto latest = latest_valid_checkpoint(cfg.run.dir);
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(read_checkpoint_meta(*latest).step, 3);

  cfg.run.resume = true;
  auto resumed = train(cfg, -1);
  ASSERT_EQ(resumed.losses.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(resumed.losses[i], whole.losses[3 + i]) << "step " << 4 + i;
}

// A signal during an evaluation: the checkpoint says the evaluation is still
// owed, the resume runs it first, and the log ends as an uninterrupted run's.
TEST(GracefulStop, InsideAnEvaluationResumesWithThatEvaluation) {
  auto dir = test::temp_dir("eval_stop");
  const std::string args = "pretrain --config " + tiny_ini() + " --data.dir " + test::tiny_data_dir() +
                           " --run.threads 1 --train.steps 6 --train.eval_every 2 --train.log_every 1"
                           " --train.ckpt_every 1000 --run-dir ";
  std::string out;
  ASSERT_EQ(test::run_undo(args + dir + "/whole", &out), 0) << out;
  // accum 1: the only safe points are the evaluation's batches; the second is in the evaluation after step 2.
  int rc = test::run_command("env UNDO_FAULT_TERM_AT_POLL=2 " + std::string(UNDO_BINARY) + " " + args + dir +
                                 "/cut 2>&1",
                             &out);
  EXPECT_EQ(rc, kExitPreempted) << out;
  EXPECT_NE(out.find("stop signal received in the evaluation after step 2; checkpointed at step 2"),
            std::string::npos)
      << out;
  EXPECT_TRUE(eval_lines(dir + "/cut/metrics.jsonl").empty());
  ASSERT_EQ(test::run_undo(args + dir + "/cut --resume", &out), 0) << out;
  EXPECT_NE(out.find("resuming from"), std::string::npos) << out;
  EXPECT_EQ(test::losses_of(dir + "/cut/metrics.jsonl"), test::losses_of(dir + "/whole/metrics.jsonl"));
  auto cut = eval_lines(dir + "/cut/metrics.jsonl"), whole = eval_lines(dir + "/whole/metrics.jsonl");
  ASSERT_EQ(whole.size(), 3u);  // steps 2, 4 and 6
  EXPECT_EQ(cut, whole);
}

// The evaluation a signal interrupted is followed, on resume, by the stopping
// rule's look at it (a distillation that would have stopped there stops).
TEST(GracefulStop, TheStoppingRuleSeesTheResumedEvaluation) {
  Config cfg = test::tiny_config(test::temp_dir("rule"));
  cfg.train.steps = 6;
  cfg.train.eval_every = 2;
  cfg.train.ckpt_every = 1000;
  cfg.eval.arith_per_op = 0;
  cfg.run.threads = 1;
  Evaluator evaluator(cfg);
  auto rule = [&](int64_t step) { return step == 2 && !evaluator.last().empty(); };
  EXPECT_THROW(train(cfg, /*signal_at=*/2, nullptr, &evaluator, rule), Preempted);  // in step 2: its evaluation stops
  clear_stop_signal();
  cfg.run.resume = true;
  auto resumed = train(cfg, -1, nullptr, &evaluator, rule);
  EXPECT_EQ(resumed.steps_done, 2);
  EXPECT_EQ(resumed.rule_stopped_at, 2);
  EXPECT_TRUE(resumed.losses.empty());  // no step after the one the rule stopped at
  EXPECT_FALSE(resumed.final_eval.empty());
}

// A signal during a cache build: the finished rows stay in the part, exit 75,
// and the next build continues them into the same bits as an uninterrupted build.
TEST(GracefulStop, ACacheBuildKeepsItsFinishedRowsAndTheNextBuildContinuesThem) {
  auto dir = test::temp_dir("cache_stop");
  std::string out;
  ASSERT_EQ(test::run_undo(cache_command(dir + "/whole.h5", dir + "/r0"), &out), 0) << out;
  const std::string whole_sha = LogitCacheReader(dir + "/whole.h5").recorded_sha256();

  int rc = test::run_command("env UNDO_FAULT_TERM_AT_POLL=4 " + std::string(UNDO_BINARY) + " " +
                                 cache_command(dir + "/c.h5", dir + "/r1") + " 2>&1",
                             &out);
  EXPECT_EQ(rc, kExitPreempted) << out;
  EXPECT_NE(out.find("stop signal received; the teacher's finished rows are kept in"), std::string::npos) << out;
  EXPECT_FALSE(file_exists(dir + "/c.h5"));
  EXPECT_TRUE(file_exists(dir + "/c.h5.part0-of-1"));
  ASSERT_EQ(test::run_undo(cache_command(dir + "/c.h5", dir + "/r2"), &out), 0) << out;
  EXPECT_NE(out.find("continuing after its 24 finished rows"), std::string::npos) << out;  // 3 batches of 8
  EXPECT_EQ(LogitCacheReader(dir + "/c.h5").recorded_sha256(), whole_sha);
  EXPECT_TRUE(file_exists(dir + "/c.h5.part0-of-1"));  // the finished part is the cache's data: the index maps it
}

// Two ranks with uneven shares (6 and 7 batches), the signal on rank 1 only:
// both stop at the same safe point, and the rerun at 2 ranks gives the
// 1-rank build's bits.
TEST(GracefulStop, RanksAgreeOnAStopThatOnlyOneReceived) {
  auto dir = test::temp_dir("cache_stop_2");
  std::string out;
  ASSERT_EQ(test::run_undo(cache_command(dir + "/whole.h5", dir + "/r0"), &out), 0) << out;
  const std::string whole_sha = LogitCacheReader(dir + "/whole.h5").recorded_sha256();
  const std::string inner = "if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then export UNDO_FAULT_TERM_AT_POLL=3; fi; exec " +
                            std::string(UNDO_BINARY) + " " + cache_command(dir + "/c.h5", dir + "/r1");
  int rc = test::run_command("env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 "
                             "--oversubscribe --bind-to none bash -c " +
                                 shell_quote(inner) + " 2>&1",
                             &out);
  EXPECT_EQ(rc, kExitPreempted) << out;
  EXPECT_NE(out.find("c.h5.part0-of-2 and the next build"), std::string::npos) << out;
  EXPECT_NE(out.find("c.h5.part1-of-2 and the next build"), std::string::npos) << out;
  ASSERT_EQ(test::run_undo_mpi(2, cache_command(dir + "/c.h5", dir + "/r2"), &out), 0) << out;
  EXPECT_NE(out.find("continuing after its 16 finished rows"), std::string::npos) << out;  // 2 batches each
  EXPECT_EQ(LogitCacheReader(dir + "/c.h5").recorded_sha256(), whole_sha);
}

// ZeRO-3 on 2 ranks, the signal on rank 1 only, between the micro-batches of a
// step: both ranks stop together, the consolidated checkpoint of the last
// whole step is written (a collective gather), and the resumed run ends with
// the uninterrupted run's curve.
TEST(GracefulStop, AZeroThreeRunStopsTogetherAndResumesItsCurve) {
  auto dir = test::temp_dir("zero3_stop");
  const std::string args = "pretrain --config " + tiny_ini() + " --data.dir " + test::tiny_data_dir() +
                           " --train.steps 6 --train.batch_size 2 --train.accum 2 --train.log_every 1" +
                           " --train.eval_every 0 --train.ckpt_every 1000 --run.threads 1 --dist.zero 3";
  std::string out;
  ASSERT_EQ(test::run_undo_mpi(2, args + " --run-dir " + dir + "/whole", &out), 0) << out;
  const std::string inner = "if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then export UNDO_FAULT_TERM_AT_POLL=6; fi; exec " +
                            std::string(UNDO_BINARY) + " " + args + " --run-dir " + dir + "/cut";
  int rc = test::run_command("env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 "
                             "--oversubscribe --bind-to none bash -c " +
                                 shell_quote(inner) + " 2>&1",
                             &out);
  EXPECT_EQ(rc, kExitPreempted) << out;
  auto latest = latest_valid_checkpoint(dir + "/cut");
  ASSERT_TRUE(latest.has_value()) << out;
  const int64_t at = read_checkpoint_meta(*latest).step;
  EXPECT_GT(at, 0);
  EXPECT_LT(at, 6);
  ASSERT_EQ(test::run_undo_mpi(2, args + " --run-dir " + dir + "/cut --resume", &out), 0) << out;
  auto whole = test::losses_of(dir + "/whole/metrics.jsonl"), cut = test::losses_of(dir + "/cut/metrics.jsonl");
  ASSERT_EQ(whole.size(), cut.size());
  // Bits: the same 2 ranks resume from the exact state (weights, moments, data position, RNG) and
  // run the same kernels on the same shapes, so every step sums in the same order.
  EXPECT_EQ(cut, whole);
}
