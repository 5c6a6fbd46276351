// UNDO's student initialisation (undo-spec.md): applied once to every parameter.
//   matrices (2-D, the tied embedding too): theta <- (1-alpha) theta + alpha beta N,
//     N a fresh Xavier-uniform draw of the same shape
//   vectors (norm scales): theta <- (1-alpha) theta (shrink only)
#pragma once
#include "model/transformer.h"

namespace undo {

void apply_undo_noise(Transformer& model, double alpha, double beta, uint64_t seed);

}  // namespace undo
