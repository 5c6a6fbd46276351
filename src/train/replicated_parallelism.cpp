// dist.zero 0 and 1 (train/parallelism.h): every rank holds the whole model
// and steps it alike. Gradients are all-reduced in buckets as backward makes
// them (distributed/grad_reducer.h); at zero 1 each parameter's AdamW moments
// live on one owner rank, which broadcasts its new values (train/adamw.h).
#include <utility>

#include "distributed/grad_reducer.h"
#include "model/device.h"
#include "model/noise.h"
#include "train/parallelism_layouts.h"

namespace undo {
namespace {

class ReplicatedTraining final : public ParallelTraining {
 public:
  ReplicatedTraining(Transformer model, const NamedTensors& trained, const OptimConfig& optim,
                     std::shared_ptr<Communicator> comm, const DistConfig& dist, bool zero1)
      : model_(std::move(model)), comm_(std::move(comm)), stepped_(trained),
        optimizer_(stepped_, optim, comm_, zero1) {
    std::vector<torch::Tensor> tensors;
    for (auto& [name, p] : stepped_) tensors.push_back(p);
    if (comm_) reducer_ = std::make_unique<GradReducer>(tensors, comm_, dist.bucket_mb);
  }

  const NamedTensors& stepped() const override { return stepped_; }
  void start_from_rank0() override {
    if (!comm_) return;
    torch::NoGradGuard no_grad;
    comm_->broadcast(model_->parameters(), 0);
  }
  AdamW& optimizer() override { return optimizer_; }
  OptimizerState& optimizer_state() override { return optimizer_; }
  void before_backward(bool last) override {
    if (reducer_) reducer_->arm(last);
  }
  void gradients_ready() override {
    if (reducer_) reducer_->finish();
  }
  int64_t state_bytes() const override { return gradient_and_moment_bytes(stepped_, optimizer_); }
  void end() override {}  // the model trained is the model kept: nothing to free but what its owner drops

 private:
  Transformer model_;
  std::shared_ptr<Communicator> comm_;
  NamedTensors stepped_;
  AdamW optimizer_;
  std::unique_ptr<GradReducer> reducer_;  // null for one process
};

class Replicated final : public Parallelism {
 public:
  Replicated(std::shared_ptr<Communicator> comm, const DistConfig& dist, bool zero1)
      : comm_(std::move(comm)), dist_(dist), zero1_(zero1) {}

  std::string name() const override { return zero1_ ? "zero-1" : "replicated"; }

  Transformer loaded_model(const CheckpointReader& in, bool frozen) override {
    Transformer model = load_model(in);
    if (frozen) model->eval();
    model->to(compute_device());
    return model;
  }
  Transformer initialised_model(const ModelConfig& cfg, uint64_t seed) override {
    Transformer model(cfg);
    model->init_weights(seed);  // on the CPU: the same values on every device
    model->to(compute_device());
    return model;
  }
  Transformer noised_model(const CheckpointReader& teacher, double alpha, double beta, uint64_t seed) override {
    Transformer model = load_model(teacher);
    apply_undo_noise(model, alpha, beta, seed);  // on the CPU: the same noise on every device
    model->to(compute_device());
    return model;
  }
  Transformer frozen_copy(Transformer& model) override {
    Transformer frozen(model->cfg);
    frozen->eval();
    frozen->to(model->parameters()[0].device());
    torch::NoGradGuard no_grad;
    auto source = model->named_parameters();
    for (auto& p : frozen->named_parameters()) p.value().copy_(source[p.key()]);
    return frozen;
  }

  std::unique_ptr<ParallelTraining> train(Transformer& model, const NamedTensors& trained, const OptimConfig& optim,
                                          const std::string&) override {
    return std::make_unique<ReplicatedTraining>(model, trained, optim, comm_, dist_, zero1_);
  }

 private:
  std::shared_ptr<Communicator> comm_;
  DistConfig dist_;
  bool zero1_;
};

}  // namespace

std::shared_ptr<Parallelism> replicated_parallelism(std::shared_ptr<Communicator> comm, const DistConfig& dist,
                                                    bool zero1) {
  return std::make_shared<Replicated>(std::move(comm), dist, zero1);
}

}  // namespace undo
