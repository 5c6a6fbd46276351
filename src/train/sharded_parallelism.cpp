// dist.zero 3 (train/parallelism.h): every rank holds 1/N of each unit as
// flat fp32 shards (distributed/zero3.h). Models are sharded as they are made
// or read, never whole on a rank (train/stage_models.h's *_sharded); training
// steps the shards, and the optimizer's moments are checkpointed as one tensor
// per model parameter (train/zero3_state.h), as the replicated layout writes them.
//
// Hybrid sharding (dist.shard_group G, HSDP): the job's ranks form groups of
// G consecutive ranks; each group shards the model among its own ranks (the
// all-gathers and reduce-scatters stay inside it, on a node's fast links) and
// holds a whole copy of it, and the ranks at the same place in every group
// form a replica group, over which each shard's gradient is all-reduced once a
// step (the one collective between nodes). Every group makes its shards from
// the same values (the same file, seed or noise), so the groups agree without
// a broadcast. The mean over the replica group of each group's mean is the
// mean over all ranks: the same gradient, hence the same run, as full
// sharding or replication, with each rank holding 1/G of the training state.
#include <set>
#include <utility>

#include "core/error.h"
#include "distributed/zero3.h"
#include "model/device.h"
#include "train/parallelism_layouts.h"
#include "train/stage_models.h"
#include "train/zero3_state.h"

namespace undo {
namespace {

class ShardedTraining final : public ParallelTraining {
 public:
  // `comm`: the ranks that shard the model; `replicas`: those that hold the
  // same shards in other groups (null without hybrid sharding).
  ShardedTraining(Transformer& model, const NamedTensors& trained, const OptimConfig& optim,
                  std::shared_ptr<Communicator> comm, std::shared_ptr<Communicator> replicas, const DistConfig& dist,
                  const std::string& stage)
      : comm_(std::move(comm)), replicas_(std::move(replicas)) {
    // An objective that trains part of the model (RMU: one matrix a block):
    // the rest is frozen, and its part of a shard has gradient 0. AdamW
    // leaves such an element as it is only without weight decay (which the
    // stages that train part of the model have).
    std::set<const void*> ids;
    for (auto& [name, p] : trained) ids.insert(p.unsafeGetTensorImpl());
    const auto all = model->parameters();
    UNDO_INPUT_CHECK(ids.size() == all.size() || optim.weight_decay == 0, "dist.zero = 3: the ", stage, " stage trains ",
                     ids.size(), " of the model's ", all.size(), " parameter tensors, and weight decay (optim.weight_decay = ",
                     optim.weight_decay, ") would move the frozen rest of its shards; use dist.zero 0 or 1");
    if (auto sharded = std::dynamic_pointer_cast<Zero3>(model->runner)) {
      zero3_ = sharded;  // sharded as this layout made it: told what trains
      zero3_->train_only(ids, dist.recompute);
    } else {  // a whole model (tests, benchmarks): cut into shards from rank 0's weights
      for (auto& p : all)
        if (!ids.count(p.unsafeGetTensorImpl())) p.requires_grad_(false);
      if (auto job = distributed(); job && replicas_) {  // every group cuts the job's rank 0's weights
        torch::NoGradGuard no_grad;
        job->broadcast(all, 0);
      }
      zero3_ = std::make_shared<Zero3>(model, comm_, /*trained=*/true, dist.recompute);
      model->runner = zero3_;
    }
    stepped_ = zero3_->shards();
    optimizer_ = std::make_unique<AdamW>(stepped_, optim, comm_, /*zero=*/false);
    state_ = std::make_unique<Zero3AdamWState>(*optimizer_, *zero3_);
  }

  const NamedTensors& stepped() const override { return stepped_; }
  void start_from_rank0() override {}  // the shards were cut from rank 0's weights, or read alike by every rank
  AdamW& optimizer() override { return *optimizer_; }
  OptimizerState& optimizer_state() override { return *state_; }
  // After the shard group's reduce-scatter (its mean), the mean over the replica groups.
  void gradients_ready() override {
    if (!replicas_) return;
    std::vector<torch::Tensor> grads;
    for (auto& [name, s] : stepped_)
      if (s.grad().defined()) grads.push_back(s.mutable_grad());
    if (grads.empty()) return;
    auto flat = torch::cat(flat_views(grads));  // one all-reduce a step
    replicas_->allreduce_sum(flat, "all-reduce of the shards' gradients across the replica groups");
    flat.div_(replicas_->world());
    int64_t at = 0;
    torch::NoGradGuard no_grad;
    for (auto& g : grads) {
      g.view({-1}).copy_(flat.narrow(0, at, g.numel()));
      at += g.numel();
    }
  }
  // Each group holds every part once: a norm sums its squares over the shard group alone.
  Communicator* gradient_parts_over() const override { return comm_.get(); }
  // Never a gather of the shards from before the change (a prefetch under way).
  void weights_changed() override { zero3_->drop_prefetch(); }
  int64_t state_bytes() const override {
    if (!optimizer_) return 0;
    int64_t shards = 0;
    for (auto& [name, s] : stepped_) shards += tensor_bytes(s);
    return shards + gradient_and_moment_bytes(stepped_, *optimizer_);
  }
  void end() override {
    // The model stays sharded (the stage saves it unit by unit, and evaluates
    // it as in training); the optimizer's moments and the shards' gradients go.
    state_.reset();
    optimizer_.reset();
    for (auto& [name, s] : stepped_) s.mutable_grad() = torch::Tensor();
    stepped_.clear();
  }

 private:
  static std::vector<torch::Tensor> flat_views(const std::vector<torch::Tensor>& ts) {
    std::vector<torch::Tensor> out;
    for (auto& t : ts) out.push_back(t.reshape({-1}));
    return out;
  }

  std::shared_ptr<Communicator> comm_, replicas_;
  std::shared_ptr<Zero3> zero3_;
  NamedTensors stepped_;
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<Zero3AdamWState> state_;
};

class FullySharded final : public Parallelism {
 public:
  // `comm`: the ranks that shard each unit (the job's, or a group's);
  // `replicas`: the ranks holding the same shards in the other groups (hybrid sharding), else null.
  FullySharded(std::shared_ptr<Communicator> comm, std::shared_ptr<Communicator> replicas, const DistConfig& dist)
      : comm_(std::move(comm)), replicas_(std::move(replicas)), dist_(dist) {}

  std::string name() const override {
    return replicas_ ? "zero-3 in groups of " + std::to_string(comm_ ? comm_->world() : 1) : "zero-3";
  }

  Transformer loaded_model(const CheckpointReader& in, bool frozen) override {
    return on_device(load_sharded(in, comm_, compute_device(), frozen));
  }
  Transformer initialised_model(const ModelConfig& cfg, uint64_t seed) override {
    return on_device(initialised_sharded(cfg, comm_, compute_device(), seed));
  }
  Transformer noised_model(const CheckpointReader& teacher, double alpha, double beta, uint64_t seed) override {
    return on_device(noised_sharded(teacher, comm_, compute_device(), alpha, beta, seed));
  }
  Transformer frozen_copy(Transformer& model) override { return frozen_sharded_copy(model, comm_); }

  std::unique_ptr<ParallelTraining> train(Transformer& model, const NamedTensors& trained, const OptimConfig& optim,
                                          const std::string& stage) override {
    return std::make_unique<ShardedTraining>(model, trained, optim, comm_, replicas_, dist_, stage);
  }

 private:
  static Transformer on_device(Transformer model) {
    model->to(compute_device());  // the buffers: the shards are made there
    return model;
  }
  std::shared_ptr<Communicator> comm_, replicas_;
  DistConfig dist_;
};

}  // namespace

std::shared_ptr<Parallelism> sharded_parallelism(std::shared_ptr<Communicator> comm, const DistConfig& dist) {
  const int world = comm ? comm->world() : 1, group = dist.shard_group;
  if (group == 0 || group == world) return std::make_shared<FullySharded>(std::move(comm), nullptr, dist);
  UNDO_INPUT_CHECK(group < world && world % group == 0, "dist.shard_group = ", group,
                   " does not divide the job's ", world, " ranks (groups of equal size shard the model; 0 = all ranks)");
  // Group g: ranks [g G, (g + 1) G); replica group i: the ranks i, i + G, i + 2G, ...
  const int rank = comm->rank(), first = rank / group * group;
  std::vector<int> shard_ranks, replica_ranks;
  for (int r = first; r < first + group; ++r) shard_ranks.push_back(r);
  for (int r = rank % group; r < world; r += group) replica_ranks.push_back(r);
  auto shards = comm->subgroup(shard_ranks, "shard" + std::to_string(rank / group));
  auto replicas = comm->subgroup(replica_ranks, "replica" + std::to_string(rank % group));
  // A group of one holds the whole model: its Zero3 needs no communicator.
  return std::make_shared<FullySharded>(group == 1 ? nullptr : shards, std::move(replicas), dist);
}

}  // namespace undo
