// How the model runs each of its parts. A Transformer calls every part (the
// embedding, each block, the final norm, the output head) through its runner
// when one is set: that is where a parallelism that keeps parameters
// elsewhere (ZeRO-3, distributed/zero3.h) brings them in for the call and
// takes them away after, without the model knowing how. No runner: the parts
// run directly on the module's own parameters.
//
// Such a runner also answers for the parameters it keeps: their names and
// shapes, their whole values one at a time (to save them), and its part of
// each (to load it), so that checkpoints (train/checkpoint.h) read and write a
// sharded model without it ever being whole.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace undo {

class UnitRunner {
 public:
  virtual ~UnitRunner() = default;
  // fn(x), with the parameters of `unit` (a module of the model) present while
  // it runs. A runner may call fn again later (to recompute it in backward),
  // so fn owns what it captures.
  virtual torch::Tensor run(torch::nn::Module& unit, const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                            const torch::Tensor& x) = 0;

  // Every parameter's name (as the model names it) and shape, in the model's order.
  virtual std::vector<std::pair<std::string, std::vector<int64_t>>> parameter_shapes() const = 0;
  // Collective: fn(i, the whole fp32 tensor of parameter i) for every
  // parameter in that order; the tensor is valid during the call only.
  virtual void for_each_whole_parameter(const std::function<void(size_t, const torch::Tensor&)>& fn) = 0;
  // Local: read(i, start, dst) fills `dst` with elements [start, start +
  // dst.numel()) of parameter i, flattened: this rank's part of each.
  virtual void read_parameters(const std::function<void(size_t, int64_t, const torch::Tensor&)>& read) = 0;
};

}  // namespace undo
