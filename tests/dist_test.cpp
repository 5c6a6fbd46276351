// Data parallelism through the real CLI under mpirun: world-size invariance,
// ZeRO-1 and ZeRO-3, resume across world sizes and zero levels, and a lost rank.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "cache/logit_cache.h"
#include "core/fs.h"
#include "core/json.h"
#include "numerics.h"
#include "formats/tensor_table.h"
#include "train/checkpoint.h"
#include "test_util.h"

using namespace undo;

namespace {

std::string common_args(const std::string& dir, int steps) {
  return "pretrain --config " + std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini --data.dir " +
         test::tiny_data_dir() + " --run-dir " + dir + " --train.steps " + std::to_string(steps) +
         " --train.log_every 1 --train.eval_every 0 --run.threads 1";
}

// `undo unlearn` of the tiny setting from `base` (a checkpoint), one thread per rank.
std::string unlearn_args(const std::string& base) {
  return "unlearn --config " + std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini --data.dir " + test::tiny_data_dir() +
         " --base " + base + " --run.threads 1";
}

}  // namespace

// Global batch 8 either way: 1 rank x 8 rows, or 2 ranks x 4 rows.
TEST(Distributed, WorldSizeInvarianceFp32WithAndWithoutZero) {
  std::string out;
  auto one = test::temp_dir("w1"), two = test::temp_dir("w2"), zero = test::temp_dir("w2zero");
  ASSERT_EQ(test::run_undo(common_args(one, 12)), 0);
  ASSERT_EQ(test::run_undo_mpi(2, common_args(two, 12) + " --train.batch_size 4", &out), 0) << out;
  ASSERT_EQ(test::run_undo_mpi(2, common_args(zero, 12) + " --train.batch_size 4 --dist.zero 1", &out), 0) << out;
  const auto tol = test::fp32_reordered(test::kTinyLongestSum, 12);
  test::expect_curves_match(test::losses_of(one + "/metrics.jsonl"), test::losses_of(two + "/metrics.jsonl"), tol,
                            "2 ranks");
  test::expect_curves_match(test::losses_of(one + "/metrics.jsonl"), test::losses_of(zero + "/metrics.jsonl"), tol,
                            "2 ranks, zero 1");
  // Only rank 0 writes: one metrics line per step, not two.
  EXPECT_EQ(test::losses_of(two + "/metrics.jsonl").size(), 12u);
}

// The file rendezvous (a path on a shared filesystem) instead of MPI + TCPStore.
TEST(Distributed, FileStoreRendezvous) {
  std::string out;
  auto one = test::temp_dir("f1"), two = test::temp_dir("f2");
  ASSERT_EQ(test::run_undo(common_args(one, 4)), 0);
  ASSERT_EQ(test::run_undo_mpi(2, common_args(two, 4) + " --train.batch_size 4 --dist.store file --dist.store_path " +
                                      two + "/rendezvous",
                               &out),
            0)
      << out;
  test::expect_curves_match(test::losses_of(one + "/metrics.jsonl"), test::losses_of(two + "/metrics.jsonl"),
                            test::fp32_reordered(test::kTinyLongestSum, 4), "file store");
}

// bf16 rounds differently when the batch is split.
TEST(Distributed, WorldSizeInvarianceBf16WithinTolerance) {
  std::string out;
  auto one = test::temp_dir("b1"), two = test::temp_dir("b2");
  std::string bf16 = " --train.precision bf16";
  ASSERT_EQ(test::run_undo(common_args(one, 12) + bf16), 0);
  ASSERT_EQ(test::run_undo_mpi(2, common_args(two, 12) + bf16 + " --train.batch_size 4", &out), 0) << out;
  test::expect_curves_match(test::losses_of(one + "/metrics.jsonl"), test::losses_of(two + "/metrics.jsonl"),
                            test::bf16_rounded(12), "bf16, 2 ranks");
}

// Checkpoints are consolidated: saved at world size 2 (ZeRO-1), resumed at 1, and back.
TEST(Distributed, ResumeAcrossWorldSizes) {
  std::string out;
  std::string constant = " --optim.schedule constant --train.ckpt_every 6";
  auto whole = test::temp_dir("whole"), cut = test::temp_dir("cut"), back = test::temp_dir("back");
  ASSERT_EQ(test::run_undo(common_args(whole, 12) + constant), 0);
  auto reference = test::losses_of(whole + "/metrics.jsonl");

  ASSERT_EQ(test::run_undo_mpi(2, common_args(cut, 6) + constant + " --train.batch_size 4 --dist.zero 1", &out), 0)
      << out;
  ASSERT_EQ(test::run_undo(common_args(cut, 12) + constant + " --resume", &out), 0) << out;
  EXPECT_NE(out.find("resuming"), std::string::npos) << out;
  // Another world size after the resume: another order of the gradient's sums.
  const auto tol = test::fp32_reordered(test::kTinyLongestSum, 12);
  test::expect_curves_match(reference, test::losses_of(cut + "/metrics.jsonl"), tol, "2 ranks then 1");

  ASSERT_EQ(test::run_undo(common_args(back, 6) + constant), 0);
  ASSERT_EQ(test::run_undo_mpi(2, common_args(back, 12) + constant + " --train.batch_size 4 --dist.zero 1 --resume",
                               &out),
            0)
      << out;
  test::expect_curves_match(reference, test::losses_of(back + "/metrics.jsonl"), tol, "1 rank then 2");
}

// ZeRO-3 at 1, 2 and 3 ranks (3 splits the tiny model's units unevenly) against
// the replicated single process: global batch 12 each time.
TEST(Distributed, ZeroThreeFollowsTheReplicatedCurveAtWorldOneTwoThree) {
  std::string out;
  auto one = test::temp_dir("z0w1"), z1 = test::temp_dir("z3w1"), z2 = test::temp_dir("z3w2"),
       z3 = test::temp_dir("z3w3");
  ASSERT_EQ(test::run_undo(common_args(one, 8) + " --train.batch_size 12"), 0);
  ASSERT_EQ(test::run_undo(common_args(z1, 8) + " --train.batch_size 12 --dist.zero 3", &out), 0) << out;
  ASSERT_EQ(test::run_undo_mpi(2, common_args(z2, 8) + " --train.batch_size 6 --dist.zero 3", &out), 0) << out;
  ASSERT_EQ(test::run_undo_mpi(3, common_args(z3, 8) + " --train.batch_size 4 --dist.zero 3", &out), 0) << out;
  // With accumulation: each micro-batch's gradients are reduce-scattered into the shards, which sum them.
  auto accum = test::temp_dir("z3w2accum");
  ASSERT_EQ(test::run_undo_mpi(2, common_args(accum, 8) + " --train.batch_size 3 --train.accum 2 --dist.zero 3", &out),
            0)
      << out;
  // Recomputing each unit's forward in backward instead of keeping its graph.
  auto recompute = test::temp_dir("z3w2recompute");
  ASSERT_EQ(test::run_undo_mpi(2, common_args(recompute, 8) + " --train.batch_size 6 --dist.zero 3 --dist.recompute 1",
                               &out),
            0)
      << out;
  auto reference = test::losses_of(one + "/metrics.jsonl");
  for (auto& dir : {z1, z2, z3, accum, recompute})
    test::expect_curves_match(reference, test::losses_of(dir + "/metrics.jsonl"), test::fp32_reordered(test::kTinyLongestSum, 8),
                              std::filesystem::path(dir).filename().string());
  // The stage saves the whole model at the end, as at zero 0.
  EXPECT_EQ(read_checkpoint_meta(z3 + "/model.ckpt").step, 8);
}

// A Llama/Qwen2-style model: its untied head is a unit of its own, which the
// gather-ahead must predict after the final norm (the tied head is the
// embedding again), with grouped-query heads and query/key/value biases.
TEST(Distributed, ZeroThreeShardsAnUntiedGroupedQueryModel) {
  std::string out;
  const std::string llama = " --model.tied_embeddings false --model.embed_scale false --model.activation silu"
                            " --model.n_kv_heads 2 --model.qkv_bias true --model.rope_scaling llama3:4:1:2:16";
  auto one = test::temp_dir("llama_w1"), two = test::temp_dir("llama_z3w2");
  ASSERT_EQ(test::run_undo(common_args(one, 8) + llama + " --train.batch_size 12", &out), 0) << out;
  ASSERT_EQ(test::run_undo_mpi(2, common_args(two, 8) + llama + " --train.batch_size 6 --dist.zero 3", &out), 0)
      << out;
  test::expect_curves_match(test::losses_of(one + "/metrics.jsonl"), test::losses_of(two + "/metrics.jsonl"),
                            test::fp32_reordered(test::kTinyLongestSum, 8), "zero 3, 2 ranks");
  CheckpointMeta meta = read_checkpoint_meta(two + "/model.ckpt");
  EXPECT_FALSE(meta.model.tied_embeddings);
  EXPECT_EQ(meta.model.kv_heads(), 2);
  Transformer model = load_model(two + "/model.ckpt");
  EXPECT_TRUE(model->lm_head);
}

TEST(Distributed, ZeroThreeBf16WithinTolerance) {
  std::string out;
  auto one = test::temp_dir("z3b1"), two = test::temp_dir("z3b2");
  std::string bf16 = " --train.precision bf16";
  ASSERT_EQ(test::run_undo(common_args(one, 12) + bf16), 0);
  ASSERT_EQ(test::run_undo_mpi(2, common_args(two, 12) + bf16 + " --train.batch_size 4 --dist.zero 3", &out), 0)
      << out;
  test::expect_curves_match(test::losses_of(one + "/metrics.jsonl"), test::losses_of(two + "/metrics.jsonl"),
                            test::bf16_rounded(12), "bf16, zero 3, 2 ranks");
}

// RMU trains one matrix a block: at zero 3 the frozen rest of each shard has
// gradient 0 and no moments, and the frozen model its retain term reads is
// sharded too. Its curve and model equal zero 0's at the same 2 ranks, and a
// zero-3 checkpoint resumes at zero 0 (its optimizer state names only what trains).
TEST(Distributed, ZeroThreeUnlearnsWithRmuAsZeroZeroDoes) {
  std::string out;
  auto dir = test::temp_dir("z3rmu");
  ASSERT_EQ(test::run_undo(common_args(dir + "/base", 4)), 0);
  const std::string rmu = unlearn_args(dir + "/base/model.ckpt") +
                          " --unlearn.method rmu --train.batch_size 2 --train.ckpt_every 3 --train.log_every 1";
  ASSERT_EQ(test::run_undo_mpi(2, rmu + " --unlearn.steps 6 --run-dir " + dir + "/z0", &out), 0) << out;
  ASSERT_EQ(test::run_undo_mpi(2, rmu + " --unlearn.steps 6 --dist.zero 3 --run-dir " + dir + "/z3", &out), 0)
      << out;
  auto reference = test::losses_of(dir + "/z0/metrics.jsonl");
  ASSERT_EQ(reference.size(), 6u);
  // Both at 2 ranks: zero 3 reduce-scatters where zero 0 all-reduces, another order of the same sums.
  const auto tol = test::fp32_reordered(test::kTinyLongestSum, 6, test::kTinyCeScale);
  test::expect_curves_match(reference, test::losses_of(dir + "/z3/metrics.jsonl"), tol, "zero 3");
  auto a = load_model(dir + "/z0/model.ckpt")->named_parameters();
  auto b = load_model(dir + "/z3/model.ckpt")->named_parameters();
  for (auto& p : a) test::expect_tensors_close(p.value(), b[p.key()], test::fp32_reordered(test::kTinyLongestSum, 6), p.key());
  // Killed before step 4 (after its step-3 checkpoint), resumed at zero 0.
  EXPECT_NE(test::run_undo_mpi(2, rmu + " --unlearn.steps 6 --dist.zero 3 --run-dir " + dir + "/cut", &out,
                               "UNDO_FAULT_EXIT=4"),
            0)
      << out;
  ASSERT_TRUE(std::filesystem::exists(dir + "/cut/ckpt/step_00000003.ckpt"));
  ASSERT_EQ(test::run_undo_mpi(2, rmu + " --unlearn.steps 6 --resume --run-dir " + dir + "/cut", &out), 0) << out;
  EXPECT_NE(out.find("resuming"), std::string::npos) << out;
  test::expect_curves_match(reference, test::losses_of(dir + "/cut/metrics.jsonl"), tol, "zero 3, resumed at zero 0");
}

// A zero-3 checkpoint is the consolidated file: saved at 2 ranks, resumed at
// 3 (zero 3) and at 1 (zero 0); saved at 1 rank (zero 3), resumed at 2 (zero 1).
TEST(Distributed, ZeroThreeCheckpointsResumeAtAnyWorldSizeAndZeroLevel) {
  std::string out;
  std::string constant = " --optim.schedule constant --train.ckpt_every 6";
  auto whole = test::temp_dir("z3whole"), to3 = test::temp_dir("z3to3"), to1 = test::temp_dir("z3to1"),
       back = test::temp_dir("z3back");
  ASSERT_EQ(test::run_undo(common_args(whole, 12) + constant + " --train.batch_size 12"), 0);
  auto reference = test::losses_of(whole + "/metrics.jsonl");
  for (auto& dir : {to3, to1})
    ASSERT_EQ(test::run_undo_mpi(2, common_args(dir, 6) + constant + " --train.batch_size 6 --dist.zero 3", &out), 0)
        << out;
  ASSERT_EQ(test::run_undo_mpi(3, common_args(to3, 12) + constant + " --train.batch_size 4 --dist.zero 3 --resume",
                               &out),
            0)
      << out;
  EXPECT_NE(out.find("resuming"), std::string::npos) << out;
  // Issue 29: each of the 3 ranks verified (and read) its own third of the
  // file, not the whole: "each rank verified A-B% of the file's N bytes".
  auto at = out.find("each rank verified ");
  ASSERT_NE(at, std::string::npos) << out;
  double least = 0, most = 0;
  ASSERT_EQ(std::sscanf(out.c_str() + at, "each rank verified %lf-%lf%%", &least, &most), 2) << out.substr(at, 80);
  // Above a third by the head (header, meta, index, table: read by all) and
  // the blocks that straddle two ranks' shards; a block is 1/65536 of a large
  // file, but 4 KiB here, 1/300 of this one.
  EXPECT_GT(least, 100.0 / 3 - 5) << out.substr(at, 80);
  EXPECT_LT(most, 45) << out.substr(at, 80);
  ASSERT_EQ(test::run_undo(common_args(to1, 12) + constant + " --train.batch_size 12 --resume", &out), 0) << out;
  ASSERT_EQ(test::run_undo(common_args(back, 6) + constant + " --train.batch_size 12 --dist.zero 3", &out), 0) << out;
  ASSERT_EQ(test::run_undo_mpi(2, common_args(back, 12) + constant + " --train.batch_size 6 --dist.zero 1 --resume",
                               &out),
            0)
      << out;
  for (auto& dir : {to3, to1, back})
    test::expect_curves_match(reference, test::losses_of(dir + "/metrics.jsonl"), test::fp32_reordered(test::kTinyLongestSum, 12),
                              std::filesystem::path(dir).filename().string());
}

// Issue 29: a corrupted block of the newest checkpoint, in a slice that one
// rank of three reads, is found by that rank alone (named with the tensor);
// every rank then resumes from the older checkpoint together, and the curve
// is the uninterrupted run's, bit for bit.
TEST(Distributed, ACorruptedSliceOnOneRankSendsEveryRankToTheOlderCheckpoint) {
  std::string out;
  auto dir = test::temp_dir("z3corrupt");
  const std::string args = " --train.batch_size 4 --dist.zero 3 --train.ckpt_every 4 --train.keep_ckpts 2";
  ASSERT_EQ(test::run_undo_mpi(3, common_args(dir, 8) + args, &out), 0) << out;
  const auto reference = test::lines_without_wall_clock(dir + "/metrics.jsonl");
  // A byte a sixth of the way into the largest model tensor of the newest
  // checkpoint, flipped: in one rank's shard (or, in a block that straddles
  // two shards, two ranks'), past the blocks that hold the table.
  const std::string newest = step_checkpoint_path(dir, 8);
  std::string bytes = read_file(newest);
  auto [meta, payload] = unframe_checkpoint(bytes, newest);
  auto table = parse_tensor_table(reinterpret_cast<const uint8_t*>(payload.data()), payload.size(), newest);
  const TensorEntry* largest = nullptr;
  for (auto& e : table.entries)
    if (e.name.rfind("model.", 0) == 0 && (!largest || e.bytes > largest->bytes)) largest = &e;
  ASSERT_NE(largest, nullptr);
  bytes[bytes.size() - payload.size() + table.data_at + largest->offset + largest->bytes / 6] ^= 0x40;
  write_file_atomic(newest, bytes);
  ASSERT_EQ(test::run_undo_mpi(3, common_args(dir, 8) + args + " --resume", &out), 0) << out;
  const std::string says =
      " skips a corrupted checkpoint: checkpoint '" + newest + "' is corrupted in tensor " + largest->name;
  size_t found = 0;
  for (auto at = out.find(says); at != std::string::npos; at = out.find(says, at + 1)) ++found;
  EXPECT_GE(found, 1u) << out;
  EXPECT_LT(found, 3u) << "only the ranks that read that slice verify it: " << out;
  EXPECT_NE(out.find("resume: rank "), std::string::npos) << out;
  EXPECT_EQ(out.find("skipping invalid checkpoint"), std::string::npos) << "its head is intact: " << out;
  EXPECT_NE(out.find("resuming from " + step_checkpoint_path(dir, 4) + " at step 4"), std::string::npos) << out;
  EXPECT_EQ(test::lines_without_wall_clock(dir + "/metrics.jsonl"), reference);
}

// Issue 29: hybrid sharding (dist.shard_group 2) at 4 ranks in 2 groups of 2:
// the curve of full sharding over the 4 and of replication, each rank holding
// half the training state that a replicated rank holds (full sharding: a
// quarter), as the stage's summary measures it; a checkpoint of full sharding
// resumes under hybrid sharding (resharded: checkpoints are consolidated);
// what cannot be grouped is refused by key.
TEST(Distributed, HybridShardingFollowsFullShardingAndReplicationAtFourRanks) {
  std::string out;
  const std::string constant = " --optim.schedule constant --train.ckpt_every 4 --train.batch_size 3";
  auto replicated = test::temp_dir("hsdp_z0"), full = test::temp_dir("hsdp_z3"), hybrid = test::temp_dir("hsdp_g2"),
       resumed = test::temp_dir("hsdp_resumed");
  ASSERT_EQ(test::run_undo_mpi(4, common_args(replicated, 8) + constant, &out), 0) << out;
  ASSERT_EQ(test::run_undo_mpi(4, common_args(full, 8) + constant + " --dist.zero 3", &out), 0) << out;
  ASSERT_EQ(test::run_undo_mpi(4, common_args(hybrid, 8) + constant + " --dist.zero 3 --dist.shard_group 2", &out), 0)
      << out;
  ASSERT_EQ(test::run_undo_mpi(4, common_args(resumed, 4) + constant + " --dist.zero 3", &out), 0) << out;
  ASSERT_EQ(test::run_undo_mpi(4, common_args(resumed, 8) + constant + " --dist.zero 3 --dist.shard_group 2 --resume",
                               &out),
            0)
      << out;
  EXPECT_NE(out.find("resuming"), std::string::npos) << out;
  const auto reference = test::losses_of(replicated + "/metrics.jsonl");
  ASSERT_EQ(reference.size(), 8u);
  for (auto& dir : {full, hybrid, resumed})
    test::expect_curves_match(reference, test::losses_of(dir + "/metrics.jsonl"),
                              test::fp32_reordered(test::kTinyLongestSum, 8), std::filesystem::path(dir).filename().string());
  auto state = [](const std::string& dir) {
    return json_number("state_bytes_per_rank", parse_flat_json(read_file(dir + "/summary.json")).at("state_bytes_per_rank"));
  };
  const double whole = state(replicated);
  EXPECT_NEAR(state(hybrid) / whole, 0.5, 0.005) << "a group of 2 holds half of the state per rank";
  EXPECT_NEAR(state(full) / whole, 0.25, 0.005) << "4 ranks hold a quarter each";
  std::printf("training state per rank against replication, 4 ranks: hybrid (2 groups of 2) %.4f, full sharding %.4f\n",
              state(hybrid) / whole, state(full) / whole);

  // 3 does not divide 4; and only zero 3 shards.
  auto bad = test::temp_dir("hsdp_bad");
  EXPECT_EQ(test::run_undo_mpi(4, common_args(bad + "/three", 2) + " --dist.zero 3 --dist.shard_group 3", &out), 2)
      << out;
  EXPECT_NE(out.find("dist.shard_group = 3 does not divide the job's 4 ranks"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(bad + "/three/model.ckpt"));
  EXPECT_EQ(test::run_undo(common_args(bad + "/zero1", 2) + " --dist.zero 1 --dist.shard_group 2", &out), 2) << out;
  EXPECT_NE(out.find("dist.shard_group = 2 needs dist.zero = 3"), std::string::npos) << out;
}

// What zero 3 cannot shard is refused by key, before any checkpoint: more
// ranks than a unit has parameters, a zero level that does not exist.
TEST(Distributed, ZeroThreeRefusesWhatItCannotShard) {
  std::string out;
  auto dir = test::temp_dir("z3bad");
  const std::string narrow = " --model.d_model 2 --model.n_heads 1 --model.d_ff 4 --dist.zero 3";
  EXPECT_EQ(test::run_undo_mpi(3, common_args(dir + "/narrow", 2) + " --train.batch_size 4" + narrow, &out), 2)
      << out;
  EXPECT_NE(out.find("dist.zero = 3: unit 'final_norm' has 2 parameters, fewer than the 3 ranks"), std::string::npos)
      << out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/narrow/ckpt"));
  ASSERT_EQ(test::run_undo(common_args(dir + "/base", 2)), 0);
  const std::string unlearn = unlearn_args(dir + "/base/model.ckpt") + " --unlearn.steps 2 --dist.zero 3";
  EXPECT_EQ(test::run_undo(common_args(dir + "/two", 2) + " --dist.zero 2", &out), 2) << out;
  EXPECT_NE(out.find("dist.zero"), std::string::npos) << out;
  // Recomputing is zero 3's: asked for at zero 1 it would be silently ignored, so it is refused.
  EXPECT_EQ(test::run_undo(common_args(dir + "/recompute", 2) + " --dist.zero 1 --dist.recompute 1", &out), 2) << out;
  EXPECT_NE(out.find("dist.recompute = 1 needs dist.zero = 3"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/recompute/config.ini"));
  // A zero-3 run resumed with another model shape: refused by name, its checkpoint left as it was.
  ASSERT_EQ(test::run_undo(common_args(dir + "/shape", 2) + " --dist.zero 3 --train.ckpt_every 1", &out), 0) << out;
  const std::string before = read_file(dir + "/shape/ckpt/step_00000002.ckpt");
  EXPECT_EQ(test::run_undo(common_args(dir + "/shape", 4) + " --dist.zero 3 --model.d_model 48 --resume", &out), 2)
      << out;
  EXPECT_NE(out.find("/shape"), std::string::npos) << out;
  EXPECT_EQ(read_file(dir + "/shape/ckpt/step_00000002.ckpt"), before);
  EXPECT_FALSE(std::filesystem::exists(dir + "/shape/ckpt/step_00000003.ckpt"));
  // An ordinary unlearning method shards: GradDiff at zero 3 runs.
  EXPECT_EQ(test::run_undo(unlearn + " --run-dir " + dir + "/graddiff --unlearn.method graddiff", &out), 0) << out;
}

// SAM under zero 3 moves the shards. Its g is the whole batch's gradient
// (zero 3's backward reduce-scatters it, averaged over ranks), its norm summed
// over the shards: 2 ranks at zero 3 follow one process with the global batch
// (where zero 0's ranks would each use their own g, m-sharpness).
TEST(Distributed, ZeroThreeRunsSamOnTheShards) {
  std::string out;
  auto dir = test::temp_dir("z3sam");
  ASSERT_EQ(test::run_undo(common_args(dir + "/base", 4)), 0);
  const std::string sam = unlearn_args(dir + "/base/model.ckpt") +
                          " --unlearn.method graddiff --unlearn.sam_rho 0.05 --unlearn.steps 4 --train.log_every 1";
  ASSERT_EQ(test::run_undo(sam + " --train.batch_size 4 --run-dir " + dir + "/one", &out), 0) << out;
  ASSERT_EQ(test::run_undo_mpi(2, sam + " --train.batch_size 2 --dist.zero 3 --run-dir " + dir + "/z3", &out), 0)
      << out;
  auto reference = test::losses_of(dir + "/one/metrics.jsonl"), sharded = test::losses_of(dir + "/z3/metrics.jsonl");
  ASSERT_EQ(reference.size(), 4u);
  ASSERT_EQ(sharded.size(), 4u);
  // GradDiff's loss (retain CE minus forget CE) passes near 0: it errs as the CEs do.
  test::expect_curves_match(reference, sharded, test::fp32_reordered(test::kTinyLongestSum, 4, test::kTinyCeScale), "zero 3 SAM");
  auto a = load_model(dir + "/one/model.ckpt")->named_parameters();
  auto b = load_model(dir + "/z3/model.ckpt")->named_parameters();
  // SAM takes two passes a step (its ascent, then the descent): twice the steps.
  for (auto& p : a) test::expect_tensors_close(p.value(), b[p.key()], test::fp32_reordered(test::kTinyLongestSum, 8), p.key());
  EXPECT_GT((a["layers.0.mlp.up.weight"] - load_model(dir + "/base/model.ckpt")->named_parameters()["layers.0.mlp.up.weight"])
                .abs()
                .max()
                .item<double>(),
            1e-4)
      << "unlearning moved the weights";
}

// Rank 1 stops answering before step 5: rank 0 must give up within dist.timeout_s
// (plus the diagnosis), name rank 1, exit non-zero, and leave step 4's checkpoint intact.
// A NaN loss on one rank skips that step on every rank (the check reads the
// loss averaged over ranks and the global gradient norm), so a zero-3 run at
// 2 ranks with a NaN on rank 1 alone is the run with a NaN on both: the same
// lines, bit for bit, and one skipped step in its summary.
TEST(Distributed, ANonFiniteLossOnOneRankSkipsTheStepOnEveryRank) {
  std::string out;
  auto one = test::temp_dir("nan-rank1"), both = test::temp_dir("nan-both");
  const std::string args = " --train.batch_size 4 --dist.zero 3 --train.ckpt_every 0";
  ASSERT_EQ(test::run_undo_mpi(2, common_args(one, 6) + args, &out, "UNDO_FAULT_NAN=2:1:1"), 0) << out;
  ASSERT_EQ(test::run_undo_mpi(2, common_args(both, 6) + args, &out, "UNDO_FAULT_NAN=2:1"), 0) << out;
  EXPECT_EQ(test::lines_without_wall_clock(one + "/metrics.jsonl"), test::lines_without_wall_clock(both + "/metrics.jsonl"));
  const auto losses = test::losses_of(one + "/metrics.jsonl");
  ASSERT_EQ(losses.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(std::isfinite(losses[i]), i != 2) << "step " << i;
  EXPECT_NE(read_file(one + "/summary.json").find("\"skipped_steps\": 1"), std::string::npos)
      << read_file(one + "/summary.json");
}

TEST(Distributed, LostRankIsNamedAndEveryoneExits) {
  std::string out;
  auto dir = test::temp_dir("lost");
  auto t0 = std::chrono::steady_clock::now();
  int rc = test::run_undo_mpi(2, common_args(dir, 12) + " --train.batch_size 4 --dist.timeout_s 3 --train.ckpt_every 2",
                              &out, "UNDO_FAULT_STOP=1:5");
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(rc, 0) << out;
  EXPECT_LT(secs, 60) << out;
  EXPECT_NE(out.find("rank 0: lost rank 1"), std::string::npos) << out;
  auto latest = latest_valid_checkpoint(dir);
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(*latest, step_checkpoint_path(dir, 4));
  EXPECT_EQ(read_checkpoint_meta(*latest).step, 4);
}

// Run by CTest with the Slurm fixture (SLURM_CONF set): the same training as
// one rank, as 2 tasks of srun with PMIx, gives the same curve.
TEST(Slurm, SrunTwoTasksMatchOneRank) {
  ASSERT_NE(std::getenv("SLURM_CONF"), nullptr) << "run through ctest (the Slurm fixture sets SLURM_CONF)";
  std::string out;
  auto one = test::temp_dir("one"), two = test::temp_dir("two");
  ASSERT_EQ(test::run_undo(common_args(one, 12)), 0);
  std::string cmd = "srun -n 2 --mpi=pmix " + std::string(UNDO_BINARY) + " " + common_args(two, 12) +
                    " --train.batch_size 4 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  ASSERT_EQ(::pclose(p), 0) << out;
  test::expect_curves_match(test::losses_of(one + "/metrics.jsonl"), test::losses_of(two + "/metrics.jsonl"),
                            test::fp32_reordered(test::kTinyLongestSum, 12), "srun, 2 tasks");
}

// A logit cache built by 1, 2 and 3 ranks, each writing only its own share
// into its own part: the same content (its draws included), and no second
// copy on disk; a 2-rank student distils from the one 3 ranks built.
TEST(Distributed, LogitCacheBuiltOnOneTwoAndThreeRanksHoldsTheSameBits) {
  std::string out;
  auto dir = test::temp_dir("cache2");
  ASSERT_EQ(test::run_undo(common_args(dir + "/teacher", 2)), 0);
  std::string cache = "cache-logits --config " + std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini --data.dir " +
                      test::tiny_data_dir() + " --teacher " + dir + "/teacher/model.ckpt --tokens 3000 --run.threads 1" +
                      " --distill.cache_k 0 --distill.cache_samples 12 --distill.cache_dtype q8";
  std::string sha;
  for (int world : {1, 2, 3}) {
    const std::string file = dir + "/w" + std::to_string(world) + ".h5";
    const std::string cmd = cache + " --out " + file + " --run-dir " + file + ".run";
    ASSERT_EQ(world == 1 ? test::run_undo(cmd, &out) : test::run_undo_mpi(world, cmd, &out), 0) << out;
    LogitCacheReader reader(file);
    EXPECT_NO_THROW(reader.verify());
    if (sha.empty()) sha = reader.recorded_sha256();
    EXPECT_EQ(reader.recorded_sha256(), sha) << world << " ranks";
    ASSERT_EQ(reader.part_files().size(), size_t(world));
    // The parts are the data, once (no merged copy, at any point): what is on disk is the
    // data and HDF5's metadata, a fixed 16 KiB or so a file (a cache this small shows it).
    uint64_t on_disk = std::filesystem::file_size(file);
    for (auto& p : reader.part_files()) on_disk += std::filesystem::file_size(p);
    const uint64_t data = logit_cache_bytes(reader.key(), reader.rows());
    EXPECT_LT(double(on_disk), 1.1 * double(data) + double(world + 1) * 16384) << world << " ranks: " << on_disk
                                                                                << " bytes for " << data;
  }
  ASSERT_EQ(test::run_undo_mpi(2, "distill --config " + std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini --data.dir " +
                                      test::tiny_data_dir() + " --teacher " + dir + "/teacher/model.ckpt" +
                                      " --cache-file " + dir + "/w3.h5 --distill.cache require --distill.steps 4" +
                                      " --distill.cache_k 0 --distill.cache_samples 12 --distill.cache_dtype q8" +
                                      " --distill.stop_metric none --eval.arith_per_op 0 --train.batch_size 4" +
                                      " --run.threads 1 --run-dir " + dir + "/student",
                                  &out),
            0)
      << out;
  EXPECT_EQ(read_checkpoint_meta(dir + "/student/model.ckpt").step, 4);
}

// dist.zero = 3 shards the frozen teacher too: a cache built by the sharded
// teacher on 2 and on 3 ranks (uneven shares: a rank without a batch still
// joins the gathers) holds the same bytes as one built whole on 1 rank; online
// distillation from a sharded teacher into a sharded student (random or
// noised) follows the replicated single process.
TEST(Distributed, ZeroThreeTeacherCachesTheSameBitsAndDistilsOnline) {
  std::string out;
  auto dir = test::temp_dir("z3teacher");
  ASSERT_EQ(test::run_undo(common_args(dir + "/teacher", 2)), 0);
  const std::string config = " --config " + std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini --data.dir " +
                             test::tiny_data_dir() + " --teacher " + dir + "/teacher/model.ckpt --run.threads 1";
  const std::string cache = "cache-logits" + config + " --tokens 3000 --distill.cache_samples 8";
  ASSERT_EQ(test::run_undo(cache + " --out " + dir + "/one.h5 --run-dir " + dir + "/c1", &out), 0) << out;
  for (int world : {2, 3}) {
    const std::string file = dir + "/zero3-" + std::to_string(world) + ".h5";
    ASSERT_EQ(test::run_undo_mpi(world, cache + " --dist.zero 3 --out " + file + " --run-dir " + file + ".run", &out),
              0)
        << out;
    auto sha = [](const std::string& json) { return json.substr(json.find("\"content_sha256\""), 84); };
    EXPECT_EQ(sha(read_file(dir + "/one.h5.json")), sha(read_file(file + ".json"))) << world << " ranks";
  }
  const std::string online = "distill" + config + " --distill.cache off --distill.steps 4 --train.log_every 1" +
                             " --distill.stop_metric none --eval.arith_per_op 0";
  // Both students: random (Unlearn-and-Distill) and noised from the teacher (UNDO), the sharded one made
  // without ever being whole (each rank draws its slices of the noise).
  for (std::string init : {"random", "noised"}) {
    const std::string run = online + " --distill.init " + init + " --distill.alpha 0.5";
    ASSERT_EQ(test::run_undo(run + " --train.batch_size 8 --run-dir " + dir + "/s1-" + init, &out), 0) << out;
    ASSERT_EQ(test::run_undo_mpi(2, run + " --train.batch_size 4 --dist.zero 3 --run-dir " + dir + "/s2-" + init,
                                 &out),
              0)
        << out;
    // The KL of a noised student is near 0 (5e-4 here): it errs as the teacher's and the student's
    // log-probabilities it is the difference of, not relative to itself.
    test::expect_curves_match(test::losses_of(dir + "/s1-" + init + "/metrics.jsonl"),
                              test::losses_of(dir + "/s2-" + init + "/metrics.jsonl"),
                              test::fp32_reordered(test::kTinyLongestSum, 4, test::kTinyCeScale), init + " student");
  }
}
