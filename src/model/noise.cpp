#include "model/noise.h"

#include <cmath>

#include "core/error.h"

namespace undo {

void apply_undo_noise_to(const torch::Tensor& p, double alpha, double beta, at::Generator& gen) {
  UNDO_CHECK(alpha >= 0 && alpha <= 1 && beta >= 0 && beta <= 1, "alpha ", alpha, " and beta ", beta,
             " must lie in [0, 1]");
  torch::NoGradGuard no_grad;
  if (p.dim() >= 2) {
    // Xavier-uniform as torch.nn.init computes it: fan_in = size(1), fan_out = size(0).
    double fan_in = double(p.size(1)), fan_out = double(p.size(0));
    for (int64_t d = 2; d < p.dim(); ++d) fan_in *= double(p.size(d)), fan_out *= double(p.size(d));
    double bound = std::sqrt(6.0 / (fan_in + fan_out));
    // Drawn on CPU, so a GPU run gets the same noise as a CPU one.
    auto noise = torch::empty(p.sizes(), p.options().device(torch::kCPU)).uniform_(-bound, bound, gen).to(p.device());
    p.mul_(1 - alpha).add_(noise, alpha * beta);
  } else {
    p.mul_(1 - alpha);
  }
}

void apply_undo_noise(Transformer& model, double alpha, double beta, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& item : model->named_parameters()) apply_undo_noise_to(item.value(), alpha, beta, gen);
}

}  // namespace undo
