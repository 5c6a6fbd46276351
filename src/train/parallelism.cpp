#include "train/parallelism.h"

#include "core/error.h"
#include "train/parallelism_layouts.h"

namespace undo {

std::shared_ptr<Parallelism> make_parallelism(const Config& cfg) {
  const auto& d = cfg.dist;
  UNDO_INPUT_CHECK(d.zero == 0 || d.zero == 1 || d.zero == 3, "dist.zero = ", d.zero, ": expected 0, 1 or 3");
  if (d.zero == 3) return sharded_parallelism(distributed(), d);
  return replicated_parallelism(distributed(), d, d.zero == 1);
}

int64_t tensor_bytes(const torch::Tensor& t) { return t.defined() ? int64_t(t.numel() * t.element_size()) : 0; }

int64_t gradient_and_moment_bytes(const NamedTensors& stepped, const AdamW& optimizer) {
  int64_t n = 0;
  for (auto& [name, t] : stepped) n += tensor_bytes(t.grad());
  for (auto* moments : {&optimizer.exp_avg(), &optimizer.exp_avg_sq()})
    for (auto& m : *moments) n += tensor_bytes(m);
  return n;
}

}  // namespace undo
