// What one rank holds to train a model, by ZeRO level and world size,
// computed from the model's shape alone (torch-free, so `undo sweep plan` can
// print it for a cluster it is not running on). Training state only: fp32
// weights, fp32 gradients and AdamW's two fp32 moments; activations, the
// data loader and the framework's own memory come on top.
//
// The sharding follows the code: ZeRO-1 gives each rank the moments of about
// 1/N of the parameters; ZeRO-3 (distributed/zero3.h) cuts every unit (the
// embedding, each block, the final norm) into N padded shards and, while a unit
// runs backward, holds it whole plus two whole-unit gradient buffers and the
// next unit, gathered ahead.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"

namespace undo {

struct RankMemory {
  int64_t weights = 0, gradients = 0, optimizer = 0;  // held throughout, bytes
  int64_t transient = 0;  // zero 3: the gathered units with their gradient buffers, at the peak
  int64_t total() const { return weights + gradients + optimizer + transient; }
};

// Parameter counts of the model's units: the embedding (tied with the output
// head), each block, the final norm, an untied head; each as zero 3 shards
// it, in two parts: its matrices and the rest. `vocab` replaces
// model.vocab_size when that is 0.
struct UnitParameters {
  int64_t matrices = 0, rest = 0;
  int64_t total() const { return matrices + rest; }
};
std::vector<UnitParameters> unit_parameters(const ModelConfig& model, int64_t vocab);
RankMemory rank_memory(const ModelConfig& model, int64_t vocab, int world, int zero);
// A table of rank_memory at zero 0, 1 and 3 for each world size, for the plan.
std::string rank_memory_table(const ModelConfig& model, int64_t vocab, const std::vector<int>& worlds);

}  // namespace undo
