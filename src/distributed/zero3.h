// ZeRO stage 3 (FSDP-style sharding, dist.zero = 3): every rank keeps 1/N of
// each unit's parameters as one flat fp32 shard, and no rank ever holds the
// whole model while training. A unit is a part the model runs as one
// (model/unit_runner.h): the embedding, each block, the final norm, an untied head.
//
// A unit's parameters are two flats, each padded and sharded on its own: its
// matrices (what autocast multiplies in bf16) and the rest (norm scales,
// biases, the embedding, which stay fp32). Forward: a unit is all-gathered
// just before it runs and freed right after. Under bf16 autocast its matrices
// are gathered in bf16 (each rank rounds its shard as autocast would), half
// the bytes, and the model's products use them as they are (autocast would
// otherwise cast each weight itself and keep that copy for backward, whole,
// for every unit). While a unit runs, the all-gather of the unit expected
// next (the next block in forward, the previous one in backward) is already
// under way, so at most two units are whole at a time.
//
// Backward, as FSDP does it: the unit's autograd graph from the forward is
// kept, but the storage its saved weights point into is freed with the unit;
// the unit's backward gathers into that same storage again, so the graph is
// whole again, runs it, and reduce-scatters the parameter gradients straight
// into the shards' gradients (averaged over ranks, as the data-parallel
// all-reduce would). Activations are those of the model without sharding.
// dist.recompute = 1 keeps only each unit's input instead and recomputes its
// forward in backward: the activations of a checkpointed model, for one more
// forward per step. A forward without gradients (evaluation, a frozen teacher)
// gathers and frees unit by unit the same way.
//
// An objective that trains part of the model (RMU) leaves the rest frozen:
// a frozen parameter's part of a shard takes gradient 0, and a unit with
// nothing to train takes no collective in backward.
//
// The optimizer then steps on the shards alone. Checkpoints are consolidated
// (the same file as at zero 0/1, resumed at any world size and zero level)
// but written and read unit by unit: saving gathers one unit at a time for
// rank 0 to write, loading reads each rank's slices of the file into its
// shards (train/checkpoint.h, train/zero3_state.h). The model stays sharded
// after training, so the stage saves it the same way.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "distributed/communicator.h"
#include "model/transformer.h"

namespace undo {

class Zero3 : public UnitRunner {
 public:
  // Collective: takes rank 0's parameters of `model` (broadcast here) as the
  // shards and empties the model's own tensors. `comm` null is
  // a world of one (the shard is the whole unit). `trained`: the model's
  // parameters that require gradients train; `recompute`: dist.recompute
  // (above). Throws InputError naming dist.zero when a unit has fewer
  // parameters than there are ranks.
  Zero3(Transformer model, std::shared_ptr<Communicator> comm, bool trained, bool recompute = false);
  // Local, and the model is never whole: `model` is laid out without storage
  // (TransformerImpl's storage = false) and its shards, on `device`, start at
  // zero, for read_shards() (a checkpoint file's slices) or fill_from_wholes()
  // (values made one parameter at a time) to fill.
  Zero3(Transformer model, std::shared_ptr<Communicator> comm, bool trained, torch::Device device);
  ~Zero3() override;

  torch::Tensor run(torch::nn::Module& unit, const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                    const torch::Tensor& x) override;

  // The shards, named "zero3.<unit>" (the optimizer's parameters; one whose
  // unit does not train takes no gradient).
  std::vector<std::pair<std::string, torch::Tensor>> shards() const;
  // Every parameter's full name, in the model's order, and whether it trains
  // (a trained Zero3 trains the model's parameters that require gradients; a
  // frozen one's part of a shard has gradient 0).
  const std::vector<std::string>& parameter_names() const { return names_; }
  bool trains(size_t parameter) const;
  const std::vector<int64_t>& shape_of(size_t parameter) const;

  // Checkpoints, unit by unit (model/unit_runner.h): no rank holds more than
  // one unit whole to save a model, and each reads only its own part to load one.
  std::vector<std::pair<std::string, std::vector<int64_t>>> parameter_shapes() const override;
  void for_each_whole_parameter(const std::function<void(size_t, const torch::Tensor&)>& fn) override {
    for_each_whole(nullptr, fn);
  }
  void read_parameters(const std::function<void(size_t, int64_t, const torch::Tensor&)>& read) override {
    read_shards(nullptr, read);
  }
  // The same for any shard-shaped per-unit tensors (an optimizer moment:
  // `per_unit` in shards() order), or for the weights where it is null.
  // Collective: fn(i, parameter i's whole tensor), the unit gathered and freed
  // again around its parameters' calls.
  void for_each_whole(const std::vector<torch::Tensor>* per_unit,
                      const std::function<void(size_t, const torch::Tensor&)>& fn);
  // Local: this rank's part of every parameter read into its place; the padding is zero.
  void read_shards(std::vector<torch::Tensor>* per_unit,
                   const std::function<void(size_t, int64_t, const torch::Tensor&)>& read);
  // Local: whole_of(i) for every parameter in order (so a generator drawing
  // them advances as over the whole model), this rank's slices kept.
  void fill_from_wholes(const std::function<torch::Tensor(size_t)>& whole_of);
  // For a model sharded before its stage knew what it trains: only the
  // parameters in `trained` (TensorImpl pointers) train, and dist.recompute.
  void train_only(const std::set<const void*>& trained, bool recompute);

  // Waits for an all-gather started ahead and drops it (before the shards change).
  void drop_prefetch();
  // How many gathers found their unit already gathered ahead.
  int64_t prefetch_hits() const { return prefetch_hits_; }
  // Bytes of parameters gathered at this moment (a gather under way
  // included), and the most at any time so far.
  int64_t gathered_bytes() const { return gathered_bytes_; }
  int64_t peak_gathered_bytes() const { return peak_gathered_bytes_; }
  // Bytes of the largest unit, gathered in fp32.
  int64_t largest_unit_bytes() const;

  // For the autograd node of a unit call (zero3.cpp).
  struct Call;
  torch::Tensor backward_of(Call& call, const torch::Tensor& grad_out, torch::Tensor* grad_x);

 private:
  // One flat of a unit's parameters, sharded on its own: shard_numel x world
  // >= numel (the tail is padding); its shard sits at `at` in the unit's shard.
  struct Part {
    int64_t numel = 0, shard_numel = 0, at = 0;
  };
  enum { kMatrices = 0, kRest = 1 };
  struct Unit {
    std::string name;
    torch::nn::Module* module = nullptr;
    std::vector<torch::Tensor> params;  // the model's tensors: empty unless gathered
    std::vector<std::vector<int64_t>> shapes;
    std::vector<int> part;     // kMatrices or kRest, per parameter
    std::vector<bool> trains;  // per parameter
    std::vector<int64_t> offsets, numels;  // within its part
    Part parts[2];
    int64_t numel = 0, shard_numel = 0;  // all parameters; the shard: the matrices' shard, then the rest's
    torch::Tensor shard;
    // The gathered flats: the matrices in fp32 and in bf16, the rest in fp32.
    // Made once: only their storage comes and goes, so that a kept graph's
    // views of the weights are whole again when the unit is gathered for its backward.
    torch::Tensor matrices, matrices_bf16, rest;
    bool gathered = false;
    int backward_depth = 0;  // its backwards under way (one may run inside another's kept graph)
    size_t first_name = 0;   // its parameters' index in names_
  };
  enum class Pass { forward, backward, other };
  // The units and their parts from the model's modules, with zero shards on `device`...
  void lay_out(bool trained, torch::Device device);
  // ...and, the shards filled, the model's own tensors emptied and the pass orders set.
  void start();
  std::pair<const Unit*, size_t> locate(size_t parameter) const;  // its unit, and its index there
  // The part of parameter i of `u` in this rank's shard, if any: its elements
  // [start, start + count) of the parameter, flattened, at `at` in the shard.
  struct Slice {
    int64_t start = 0, count = 0, at = 0;
  };
  std::optional<Slice> slice_of(const Unit& u, size_t i) const;
  Unit& unit_of(torch::nn::Module& module);
  // The unit's parameters, whole, into the model's tensors (its matrices in
  // bf16 where `cast`); in a forward or backward pass, the all-gather of the
  // unit expected next is started.
  void gather(Unit& u, Pass pass = Pass::other, bool cast = false);
  void release(Unit& u);
  // The buffer a part is gathered into; the all-gathers of a unit's parts, started.
  torch::Tensor& buffer(Unit& u, int part, bool cast);
  std::vector<Communicator::Pending> start_gather(Unit& u, bool cast);
  // A shard-shaped tensor of a unit <-> its parts' whole flats (fp32, padded).
  std::vector<torch::Tensor> gathered_parts(Unit& u, const torch::Tensor& shard);
  torch::Tensor shard_of_parts(const Unit& u, const std::vector<torch::Tensor>& wholes) const;
  // A tensor per parameter of the unit (undefined: zeros) -> its parts' whole flats.
  std::vector<torch::Tensor> part_flats(const Unit& u, const std::vector<torch::Tensor>& per_param,
                                        const torch::TensorOptions& options) const;
  // Frees the storage of the unit's gathered buffers (their tensors stay).
  static void free_gathered(Unit& u);
  // Backward of a unit call whose graph was kept / that is recomputed.
  std::vector<torch::Tensor> kept_graph_grads(Call& call, const torch::Tensor& grad_out);
  std::vector<torch::Tensor> recomputed_grads(Call& call, const torch::Tensor& grad_out);
  // The unit a pass runs after unit k, if any. Forward: the embedding, the
  // blocks, the final norm, the head (the embedding again where it is tied).
  // Backward: the reverse. Every rank predicts alike, so their collectives
  // stay in step.
  std::optional<size_t> next_unit(size_t k, Pass pass);
  void count_gathered();

  struct Prefetch {
    size_t unit = 0;  // gathering into its buffers
    bool cast = false;
    std::vector<Communicator::Pending> pending;
  };
  std::optional<Prefetch> prefetch_;
  // The units in the order each pass calls them (a tied embedding twice), and
  // where in it the current pass is.
  std::vector<size_t> forward_order_, backward_order_;
  size_t forward_at_ = 0, backward_at_ = 0;
  int64_t prefetch_hits_ = 0;

  TransformerImpl* model_;  // not owned: the model owns its runner (no cycle that would outlive MPI)
  std::shared_ptr<Communicator> comm_;
  int world_ = 1, rank_ = 0;
  std::vector<Unit> units_;
  std::map<torch::nn::Module*, size_t> index_;
  std::vector<std::string> names_;
  int64_t gathered_bytes_ = 0, peak_gathered_bytes_ = 0;
  bool recompute_ = false;
};

// A model that only runs forward (a frozen reference, such as RMU's) kept
// sharded for good: each forward gathers it unit by unit, and every rank must
// run the same number of forwards. This one is a copy of `whole` (which each
// rank holds): each rank copies only its slices. A frozen teacher is read
// from its file the same way (train/checkpoint.h, load_frozen_sharded).
Transformer frozen_sharded_copy(Transformer& whole, std::shared_ptr<Communicator> comm);

}  // namespace undo
