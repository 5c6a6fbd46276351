// Unit tests that run on every rank of `mpirun -np 2` (registered in CTest):
// the collectives, the bucketed gradient reducer, the ZeRO-1 optimizer and
// ZeRO-3's sharded model.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>


#include "core/config.h"
#include "distributed/communicator.h"
#include "distributed/grad_reducer.h"
#include "distributed/zero3.h"
#include "model/device.h"
#include "model/precision.h"
#include "model/transformer.h"
#include "sweep/rank_memory.h"
#include "core/fs.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/stage_models.h"
#include "model/noise.h"
#include "numerics.h"
#include "train/zero3_state.h"

using namespace undo;

namespace {
std::shared_ptr<Communicator> comm() { return distributed(); }

// A file name every rank agrees on (rank 0 draws it), unique to this run.
std::string shared_temp_path(const std::string& what) {
  auto id = torch::tensor({int64_t(::getpid())});
  comm()->broadcast({id}, 0);
  return (std::filesystem::temp_directory_path() / ("undo-multirank-" + what + "-" + std::to_string(id.item<int64_t>()) +
                                                    ".ckpt"))
      .string();
}

// Rank r's data: a deterministic function of r, so each rank can compute all ranks' gradients.
torch::Tensor data_of(int rank) {
  torch::manual_seed(100 + uint64_t(rank));
  return torch::randn({5, 7});
}

std::vector<torch::Tensor> make_params() {
  torch::manual_seed(7);
  return {torch::randn({7, 3}).requires_grad_(), torch::randn({3}).requires_grad_(),
          torch::randn({3, 2}).requires_grad_()};
}

torch::Tensor loss_of(const std::vector<torch::Tensor>& p, const torch::Tensor& x) {
  return (torch::tanh(x.matmul(p[0]) + p[1]).matmul(p[2])).pow(2).mean();
}
}  // namespace

TEST(MultiRank, LaunchedOnTwoRanks) {
  ASSERT_TRUE(comm());
  EXPECT_EQ(comm()->world(), 2);
  EXPECT_NEAR(comm()->mean(double(comm()->rank())), 0.5, 1e-12);
  auto t = torch::full({4}, float(comm()->rank() + 1));
  comm()->broadcast({t}, 1);
  EXPECT_TRUE(torch::equal(t, torch::full({4}, 2.0f)));
}

// Tiny buckets (several per model) and two accumulation micro-batches.
TEST(MultiRank, BucketedReducerAveragesAccumulatedGradients) {
  auto params = make_params();
  GradReducer reducer(params, comm(), /*bucket_mb=*/24.0 / (1 << 20));
  EXPECT_GE(reducer.num_buckets(), 2u);
  int me = comm()->rank();
  for (int micro = 0; micro < 2; ++micro) {
    reducer.arm(micro == 1);
    loss_of(params, data_of(me) * (micro + 1)).backward();
  }
  reducer.finish();
  // Expected: the mean over ranks of each rank's accumulated gradient. The same 4 gradients (2 ranks x
  // 2 micro-batches) summed in another order: they err as their absolute sum, not as the mean (which
  // cancels), so that is the scale.
  auto expect = make_params();
  std::vector<torch::Tensor> magnitude(params.size());
  for (int r = 0; r < 2; ++r)
    for (int micro = 0; micro < 2; ++micro) {
      auto alone = make_params();
      loss_of(alone, data_of(r) * (micro + 1)).backward();
      for (size_t i = 0; i < params.size(); ++i)
        magnitude[i] = magnitude[i].defined() ? magnitude[i] + alone[i].grad().abs() : alone[i].grad().abs();
      loss_of(expect, data_of(r) * (micro + 1)).backward();
    }
  for (size_t i = 0; i < params.size(); ++i)
    test::expect_tensors_close(expect[i].grad() / 2, params[i].grad(),
                               test::fp32_reordered(4, 1, magnitude[i].max().item<double>() / 2),
                               "p" + std::to_string(i));
}

TEST(MultiRank, ZeroOneStepEqualsReplicatedAdamW) {
  OptimConfig o;
  o.weight_decay = 0.1;
  auto sharded = make_params(), local = make_params();
  std::vector<std::pair<std::string, torch::Tensor>> ns, nl;
  for (size_t i = 0; i < sharded.size(); ++i) {
    ns.emplace_back("p" + std::to_string(i), sharded[i]);
    nl.emplace_back("p" + std::to_string(i), local[i]);
  }
  AdamW zero(ns, o, comm(), true), plain(nl, o, nullptr, false);
  // Each rank owns some of the parameters, and both ranks own something.
  int mine = 0;
  for (size_t i = 0; i < ns.size(); ++i) mine += zero.owner(i) == comm()->rank();
  EXPECT_GT(mine, 0);
  EXPECT_LT(mine, int(ns.size()));
  for (int step = 0; step < 3; ++step) {
    for (auto* ps : {&sharded, &local}) {
      for (auto& p : *ps) p.mutable_grad() = torch::Tensor();
      loss_of(*ps, data_of(0)).backward();
    }
    zero.step(1e-2);
    plain.step(1e-2);
  }
  // Bits: both ranks have the same gradients (no reduction), and each parameter's owner runs the
  // same elementwise kernel on it as the replicated optimizer does, then broadcasts it unchanged.
  for (size_t i = 0; i < sharded.size(); ++i) EXPECT_TRUE(torch::equal(sharded[i], local[i])) << i;
  // The consolidated state is complete in rank 0's file: each moment came from its owner.
  const std::string path = shared_temp_path("zero1");
  std::vector<TensorEntry> plan;
  zero.plan(plan);
  CheckpointMeta meta;
  meta.model.vocab_size = 8;  // a meta that parses (the file holds no model)
  CheckpointWriter out(comm()->rank() == 0 ? path : "", meta, plan);
  zero.save(out);
  out.commit();
  if (comm()->rank() == 0) {
    CheckpointReader in(path);
    for (size_t i = 0; i < ns.size(); ++i) {
      EXPECT_TRUE(torch::equal(in.read("optimizer.exp_avg.p" + std::to_string(i)), plain.exp_avg()[i])) << i;
      EXPECT_TRUE(torch::equal(in.read("optimizer.exp_avg_sq.p" + std::to_string(i)), plain.exp_avg_sq()[i])) << i;
    }
    std::filesystem::remove(path);
  }
}

namespace {
// A small model whose units do not split evenly over 2 ranks (odd sizes: padding is exercised).
Transformer small_model(int d_model = 18, int layers = 2, bool tied = true) {
  ModelConfig c;
  c.tied_embeddings = tied;
  c.vocab_size = 37;
  c.d_model = d_model;
  c.n_layers = layers;
  c.n_heads = 3;
  c.d_ff = 2 * d_model + 1;
  c.seq_len = 8;
  Transformer m(c);
  m->init_weights(5);
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(9);
  for (auto& p : m->parameters())
    if (p.dim() == 1) p.normal_(0, 0.1, gen);  // norm scales away from 0, so their gradients mean something
  return m;
}
torch::Tensor tokens_of(int rank) {
  torch::manual_seed(300 + uint64_t(rank));
  return torch::randint(0, 37, {3, 8}, torch::kLong);
}
torch::Tensor lm_loss(Transformer& m, const torch::Tensor& tokens) {
  auto logits = m->forward(tokens.narrow(1, 0, 7));
  return torch::nn::functional::cross_entropy(logits.reshape({-1, 37}), tokens.narrow(1, 1, 7).reshape({-1}));
}
}  // namespace

// Each rank's shard gradient, gathered, is the mean over ranks of the whole
// model's gradient; the loss equals the unsharded model's. In each way zero 3
// runs a unit: its graph kept (fp32, and under bf16 autocast with the
// matrices gathered in bf16: the same rounding autocast does) or recomputed.
TEST(MultiRank, ZeroThreeGradientsEqualTheReplicatedModels) {
  struct Mode {
    const char* name;
    bool recompute, bf16;
    bool twice = false;  // two forwards, one backward of their sum (as GradDiff's forget and retain terms)
  };
  int64_t fp32_peak = 0;  // of the kept graph, tied head
  for (Mode mode : {Mode{"kept graph", false, false}, Mode{"recomputed", true, false},
                    Mode{"kept graph, bf16 autocast", false, true}, Mode{"kept graph, two forwards", false, false, true}})
    for (bool tied : {true, false}) {  // an untied head is a unit of its own, gathered after the final norm
      SCOPED_TRACE(std::string(mode.name) + (tied ? ", tied head" : ", untied head"));
      auto whole = small_model(18, 2, tied), sharded = small_model(18, 2, tied);
      auto zero3 = std::make_shared<Zero3>(sharded, comm(), /*trained=*/true, mode.recompute);
      sharded->runner = zero3;
      for (auto& p : sharded->parameters()) EXPECT_EQ(p.numel(), 0);  // nothing whole is kept
      const int me = comm()->rank();
      AutocastGuard autocast(mode.bf16, /*cuda=*/false);
      // The rank's loss; with `twice`, plus half the loss of the other rank's tokens, run after it.
      auto loss_of = [&](Transformer& m, int rank) {
        auto l = lm_loss(m, tokens_of(rank));
        return mode.twice ? l + 0.5 * lm_loss(m, tokens_of(1 - rank)) : l;
      };
      // The whole model's kernels see the same values, laid out elsewhere: sums of <= 42 terms (the
      // 2 x 3 x 7 tokens, the 37 classes, the 37 of d_ff) through 4 stages (embedding, 2 blocks, head).
      const auto tol = mode.bf16 ? test::bf16_rounded(4) : test::fp32_reordered(42, 4);
      auto loss = loss_of(sharded, me);
      test::expect_value_near(loss_of(whole, me).item<double>(), loss.item<double>(), tol, std::string(mode.name) + " loss");
      // Between forward and backward the kept graphs point at freed storage: no unit is whole.
      EXPECT_EQ(zero3->gathered_bytes(), 0);
      for (auto& p : sharded->parameters()) EXPECT_EQ(p.numel(), 0);
      loss.backward();
      for (int r = 0; r < 2; ++r) (loss_of(whole, r) / 2).backward();
      std::vector<torch::Tensor> grads;
      for (auto& [name, shard] : zero3->shards()) grads.push_back(shard.grad());
      auto named = whole->named_parameters();
      size_t compared = 0;
      zero3->for_each_whole(&grads, [&](size_t i, const torch::Tensor& full) {
        const auto& name = zero3->parameter_names()[i];
        EXPECT_EQ(full.scalar_type(), torch::kFloat) << name;
        test::expect_tensors_close(named[name].grad(), full, tol, std::string(mode.name) + " " + name);
        ++compared;
      });
      EXPECT_EQ(compared, named.size());
      EXPECT_EQ(zero3->gathered_bytes(), 0);  // every unit released again, no gather left under way
      // At most two units were whole at any time: the one running and the one gathered ahead.
      EXPECT_LE(zero3->peak_gathered_bytes(), 2 * zero3->largest_unit_bytes());
      EXPECT_GT(zero3->peak_gathered_bytes(), zero3->largest_unit_bytes() / 2);
      // Every gather but the first of each pass found its unit gathered ahead: forward
      // embed, 2 blocks, norm, head (5 gathers); backward the same in reverse.
      if (!mode.twice) {
        EXPECT_EQ(zero3->prefetch_hits(), 10 - 2);
      }
      // Under bf16 the blocks' matrices are gathered in bf16: about half the bytes at the peak.
      if (tied && !mode.bf16 && !mode.recompute) fp32_peak = zero3->peak_gathered_bytes();
      if (tied && mode.bf16) {
        EXPECT_LT(zero3->peak_gathered_bytes(), 0.6 * double(fp32_peak));
      }
    }
}

// Per-rank bytes of parameters + gradients + AdamW moments: about 1/N of the
// replicated model's, plus at most two gathered units at the peak.
TEST(MultiRank, ZeroThreeKeepsAboutOneNthOfTheTrainingState) {
  auto model = small_model(/*d_model=*/48, /*layers=*/4);
  const int64_t replicated = 4 * model->num_params() * int64_t(sizeof(float));
  auto zero3 = std::make_shared<Zero3>(model, comm(), /*trained=*/true);
  model->runner = zero3;
  AdamW adamw(zero3->shards(), OptimConfig{}, comm(), /*zero=*/false);
  lm_loss(model, tokens_of(comm()->rank())).backward();
  adamw.step(1e-3);
  int64_t held = 0;
  for (auto& [name, shard] : zero3->shards()) held += (shard.numel() + shard.grad().numel()) * 4;
  for (size_t i = 0; i < adamw.exp_avg().size(); ++i)
    held += (adamw.exp_avg()[i].numel() + adamw.exp_avg_sq()[i].numel()) * 4;
  for (auto& p : model->parameters()) held += p.numel() * 4;  // the model's own tensors: empty
  // The plan's calculator (undo sweep plan) predicts exactly this.
  int64_t all = 0;
  for (auto& u : unit_parameters(model->cfg, 0)) all += u.total();
  EXPECT_EQ(all, int64_t(replicated / 16));
  auto predicted = rank_memory(model->cfg, 0, 2, 3);
  EXPECT_EQ(predicted.weights + predicted.gradients + predicted.optimizer, held);
  EXPECT_EQ(rank_memory(model->cfg, 0, 1, 0).total(), replicated);
  const double share = double(held) / double(replicated);
  EXPECT_GE(share, 0.5);
  EXPECT_LT(share, 0.5 * 1.01) << "padding may cost at most 1%";
  EXPECT_LE(zero3->peak_gathered_bytes(), 2 * zero3->largest_unit_bytes());
  std::printf("zero 3, 2 ranks: %.4f of the replicated state per rank; peak gathered %lld bytes (at most 2 units)\n",
              share, static_cast<long long>(zero3->peak_gathered_bytes()));
}

// A sharded model is saved one gathered unit at a time (never two whole at
// once, let alone the model) into the same file its whole copy writes, and a
// sharded model loads by reading only its own slices (no gather at all); the
// optimizer's sharded moments round-trip the same way.
TEST(MultiRank, ZeroThreeCheckpointsAUnitAtATimeAndLoadsItsOwnSlices) {
  const std::string path = shared_temp_path("zero3"), whole_path = path + ".whole";
  CheckpointMeta meta;
  auto whole = small_model(), sharded = small_model();
  meta.model = whole->cfg;
  auto zero3 = std::make_shared<Zero3>(sharded, comm(), /*trained=*/true);
  sharded->runner = zero3;
  const bool writer = comm()->rank() == 0;
  save_checkpoint(writer ? path : "", meta, sharded, nullptr);
  if (writer) save_checkpoint(whole_path, meta, whole, nullptr);
  comm()->barrier();
  EXPECT_EQ(zero3->gathered_bytes(), 0);
  EXPECT_LE(zero3->peak_gathered_bytes(), zero3->largest_unit_bytes()) << "more than one unit whole while saving";
  EXPECT_GT(zero3->peak_gathered_bytes(), 0);
  EXPECT_EQ(read_file(path), read_file(whole_path)) << "the sharded model's file differs from the whole model's";

  // A frozen teacher read from that file, or copied from a whole model, is
  // never whole: laid out without memory, each rank reads its slices; its
  // forward equals the whole model's.
  const auto tokens = tokens_of(comm()->rank()).narrow(1, 0, 7);
  for (bool from_file : {true, false}) {
    auto teacher = from_file ? load_sharded(CheckpointReader(path), comm(), torch::kCPU, /*frozen=*/true)
                             : frozen_sharded_copy(whole, comm());
    auto* z = dynamic_cast<Zero3*>(teacher->runner.get());
    ASSERT_TRUE(z);
    EXPECT_EQ(z->peak_gathered_bytes(), 0) << from_file;
    for (auto& p : teacher->parameters()) EXPECT_EQ(storage_bytes(p), 0) << from_file;
    torch::NoGradGuard no_grad;
    // The same weights, gathered into other memory: a product's kernel may block them otherwise.
    test::expect_tensors_close(whole->forward(tokens), teacher->forward(tokens), test::fp32_reordered(42, 4),
                               from_file ? "teacher from the file" : "teacher copied");
    EXPECT_LE(z->peak_gathered_bytes(), 2 * z->largest_unit_bytes()) << from_file;
  }
  // A fresh model and UNDO's noised student, made sharded one parameter at a
  // time, hold exactly the values the whole model's init and noise give.
  auto expect_equal_to = [&](Transformer& sharded_model, Transformer& reference, const std::string& what) {
    auto* z = dynamic_cast<Zero3*>(sharded_model->runner.get());
    ASSERT_TRUE(z) << what;
    EXPECT_EQ(z->peak_gathered_bytes(), 0) << what << ": made without a gather";
    auto named = reference->named_parameters();
    z->for_each_whole_parameter([&](size_t i, const torch::Tensor& t) {
      EXPECT_TRUE(torch::equal(t, named[z->parameter_names()[i]])) << what << ": " << z->parameter_names()[i];
    });
  };
  auto fresh = initialised_sharded(whole->cfg, comm(), torch::kCPU, 31);
  Transformer fresh_whole(whole->cfg);
  fresh_whole->init_weights(31);
  expect_equal_to(fresh, fresh_whole, "init");
  auto noised = noised_sharded(CheckpointReader(whole_path), comm(), torch::kCPU, 0.5, 0.1, 8);
  Transformer noised_whole = load_model(whole_path);
  apply_undo_noise(noised_whole, 0.5, 0.1, 8);
  expect_equal_to(noised, noised_whole, "noise");
  // Laid out without storage, a model has its shapes and no memory.
  Transformer shapes_only(whole->cfg, /*storage=*/false);
  auto full = whole->named_parameters();
  for (auto& p : shapes_only->named_parameters()) {
    EXPECT_EQ(p.value().sizes(), full[p.key()].sizes()) << p.key();
    EXPECT_EQ(storage_bytes(p.value()), 0) << p.key();
  }

  // Train a step so that the moments mean something, save with them, load into another sharded model.
  AdamW adamw(zero3->shards(), OptimConfig{}, comm(), /*zero=*/false);
  Zero3AdamWState state(adamw, *zero3);
  lm_loss(sharded, tokens_of(comm()->rank())).backward();
  adamw.step(1e-3);
  save_checkpoint(writer ? path : "", meta, sharded, &state);
  comm()->barrier();
  auto other = small_model();
  other->init_weights(77);  // other weights, to be overwritten
  auto zero3b = std::make_shared<Zero3>(other, comm(), /*trained=*/true);
  other->runner = zero3b;
  AdamW adamw_b(zero3b->shards(), OptimConfig{}, comm(), /*zero=*/false);
  Zero3AdamWState state_b(adamw_b, *zero3b);
  load_checkpoint(path, other, &state_b);
  EXPECT_EQ(zero3b->peak_gathered_bytes(), 0) << "loading gathered a unit";
  auto a = zero3->shards(), b = zero3b->shards();
  for (size_t k = 0; k < a.size(); ++k) {
    EXPECT_TRUE(torch::equal(a[k].second, b[k].second)) << a[k].first;
    EXPECT_TRUE(torch::equal(adamw.exp_avg()[k], adamw_b.exp_avg()[k])) << a[k].first;
    EXPECT_TRUE(torch::equal(adamw.exp_avg_sq()[k], adamw_b.exp_avg_sq()[k])) << a[k].first;
  }
  EXPECT_EQ(adamw_b.steps(), 1);
  comm()->barrier();
  if (writer) std::filesystem::remove(path), std::filesystem::remove(whole_path);
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // UNDO_TEST_THREADS=N: launch/test's thread variants (tests/numerics.h).
  if (const char* n = std::getenv("UNDO_TEST_THREADS"); n && *n) at::set_num_threads(std::atoi(n));
  init_distributed(DistConfig{});
  int rc = RUN_ALL_TESTS();
  // Every rank must agree before MPI is finalised.
  if (comm()) rc = comm()->mean(rc) > 0 ? 1 : 0;
  shutdown_distributed();
  return rc;
}
