// UNDO's student initialisation (undo-spec.md): applied once to every parameter.
//   matrices (2-D, the tied embedding too): theta <- (1-alpha) theta + alpha beta N,
//     N a fresh Xavier-uniform draw of the same shape
//   vectors (norm scales): theta <- (1-alpha) theta (shrink only)
#pragma once
#include "model/transformer.h"

namespace undo {

void apply_undo_noise(Transformer& model, double alpha, double beta, uint64_t seed);
// One parameter, in place, its noise drawn from `gen` (apply_undo_noise draws
// for every parameter in the model's order from one generator seeded with
// `seed`; a sharded model draws the same way, one whole parameter at a time).
void apply_undo_noise_to(const torch::Tensor& p, double alpha, double beta, at::Generator& gen);

}  // namespace undo
