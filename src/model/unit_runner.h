// How the model runs each of its parts. A Transformer calls every part (the
// embedding, each block, the final norm, the output head) through its runner
// when one is set: that is where a parallelism that keeps parameters
// elsewhere (ZeRO-3, distributed/zero3.h) brings them in for the call and
// takes them away after, without the model knowing how. No runner: the parts
// run directly on the module's own parameters.
#pragma once
#include <torch/torch.h>

#include <functional>

namespace undo {

class UnitRunner {
 public:
  virtual ~UnitRunner() = default;
  // fn(x), with the parameters of `unit` (a module of the model) present while
  // it runs. A runner may call fn again later (to recompute it in backward),
  // so fn owns what it captures.
  virtual torch::Tensor run(torch::nn::Module& unit, const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                            const torch::Tensor& x) = 0;
};

}  // namespace undo
