// Unit tests that run on every rank of `mpirun -np 2` (registered in CTest):
// the collectives, the bucketed gradient reducer and the ZeRO-1 optimizer.
#include <gtest/gtest.h>

#include "core/config.h"
#include "distributed/communicator.h"
#include "distributed/grad_reducer.h"
#include "train/adamw.h"

using namespace undo;

namespace {
std::shared_ptr<Communicator> comm() { return distributed(); }

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
  // Expected: the mean over ranks of each rank's accumulated gradient.
  auto expect = make_params();
  for (int r = 0; r < 2; ++r)
    for (int micro = 0; micro < 2; ++micro) loss_of(expect, data_of(r) * (micro + 1)).backward();
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_TRUE(torch::allclose(params[i].grad(), expect[i].grad() / 2, 1e-6, 1e-7)) << i;
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
  for (size_t i = 0; i < sharded.size(); ++i) EXPECT_TRUE(torch::equal(sharded[i], local[i])) << i;
  // The consolidated state is complete on every rank.
  torch::serialize::OutputArchive a;
  zero.save(a);
  std::ostringstream bytes;
  a.save_to(bytes);
  torch::serialize::InputArchive in;
  std::istringstream is(bytes.str());
  in.load_from(is);
  torch::Tensor m;
  for (size_t i = 0; i < ns.size(); ++i) EXPECT_TRUE(in.try_read("exp_avg.p" + std::to_string(i), m));
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  init_distributed(DistConfig{});
  int rc = RUN_ALL_TESTS();
  // Every rank must agree before MPI is finalised.
  if (comm()) rc = comm()->mean(rc) > 0 ? 1 : 0;
  shutdown_distributed();
  return rc;
}
