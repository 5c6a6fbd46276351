// How a run spreads over its ranks: the one object, built once per run from
// dist.* and the job's communicator, that knows which layout it is. It lays
// the run's models out (whole on every rank, or sharded as they are made or
// read), and for each training run it wraps the model and answers for what
// the optimizer steps, how gradients are reduced, how the optimizer's state is
// kept and checkpointed, and what to redo when the weights move between
// forward passes (SAM). The Trainer, the objectives and the stages hold only
// this interface and never ask which layout it is: a new one (tensor
// parallelism on GPUs) is a new implementation here and nowhere else, as
// hybrid sharding was.
//
// Layouts today (make_parallelism):
// - replicated (dist.zero 0 and 1): every rank holds the whole model;
//   gradients are all-reduced in buckets (distributed/grad_reducer.h); at
//   zero 1 each AdamW moment lives on one owner rank (train/adamw.h);
// - fully sharded (dist.zero 3): each rank holds 1/N of every unit
//   (distributed/zero3.h), gathered for the unit's forward and backward and
//   reduce-scattered after;
// - hybrid sharding (dist.zero 3, dist.shard_group G): sharded as above
//   within each group of G consecutive ranks, replicated across the groups,
//   each shard's gradient all-reduced over its replicas once a step.
// Every layout's checkpoints are the same consolidated file, so a run resumes
// under any other, at any world size.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "distributed/communicator.h"
#include "model/transformer.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/optimizer_state.h"

namespace undo {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// One training run's view of the layout (one Trainer's): made by
// Parallelism::train, alive while that run trains.
class ParallelTraining {
 public:
  virtual ~ParallelTraining() = default;
  // What the optimizer steps, named: the trained parameters themselves, or
  // this rank's shards of them. Their gradients are what clipping and SAM see.
  virtual const NamedTensors& stepped() const = 0;
  // Collective: every rank starts from rank 0's weights, whatever it made or loaded.
  virtual void start_from_rank0() = 0;
  // The optimizer, and the state that checkpoints save and resume.
  virtual AdamW& optimizer() = 0;
  virtual OptimizerState& optimizer_state() = 0;
  // Around each micro-batch's backward: `last` is the step's last one (where
  // the gradients are reduced). gradients_ready() once after the last one:
  // from then on stepped()'s gradients are the mean over all ranks' rows.
  virtual void before_backward(bool last) {}
  virtual void gradients_ready() {}
  // Non-null where each rank holds a part of the gradient (shards): a norm
  // over stepped() is a sum of squares over this communicator.
  virtual Communicator* gradient_parts_over() const { return nullptr; }
  // The stepped tensors changed in place (SAM's move, the optimizer's step):
  // nothing gathered from their old values may be used again.
  virtual void weights_changed() {}
  // Bytes of training state this rank holds for the optimizer: stepped
  // tensors that are not the model's own parameters, gradients, moments.
  virtual int64_t state_bytes() const = 0;
  // The run is over (its last checkpoint holds the optimizer's state): what
  // only training needed is freed; the model stays as the layout keeps it.
  virtual void end() = 0;
};

class Parallelism {
 public:
  virtual ~Parallelism() = default;
  // "replicated", "zero-1", "zero-3" or "zero-3 in groups of G", for messages.
  virtual std::string name() const = 0;

  // The run's models on the compute device, laid out as this layout keeps
  // them; their values equal those of the whole model made the plain way
  // (load_model, init_weights, apply_undo_noise), bit for bit.
  virtual Transformer loaded_model(const CheckpointReader& in, bool frozen) = 0;
  virtual Transformer initialised_model(const ModelConfig& cfg, uint64_t seed) = 0;
  virtual Transformer noised_model(const CheckpointReader& teacher, double alpha, double beta, uint64_t seed) = 0;
  // A frozen copy of `model` (RMU's target, NPO's reference), laid out alike.
  virtual Transformer frozen_copy(Transformer& model) = 0;

  // Wraps `model` to train `trained` (the objective's tensors; the model's
  // other parameters stay frozen) with AdamW under `optim`. `stage` names it
  // in errors.
  virtual std::unique_ptr<ParallelTraining> train(Transformer& model, const NamedTensors& trained,
                                                  const OptimConfig& optim, const std::string& stage) = 0;
};

// The layout dist.* asks for, over the job's ranks (distributed(); none: one process).
std::shared_ptr<Parallelism> make_parallelism(const Config& cfg);

}  // namespace undo
