// What a checkpoint needs of an optimizer: the tensors of its state, named
// and shaped before any is written, then each put into the checkpoint and
// read back from it, consolidated (one tensor per parameter and moment,
// whatever the world size or sharding of the run that wrote it).
#pragma once
#include <torch/torch.h>

#include <vector>

#include "formats/tensor_table.h"

namespace undo {

class CheckpointWriter;
class CheckpointReader;

class OptimizerState {
 public:
  virtual ~OptimizerState() = default;
  // The entries save() will put, in its order (names begin "optimizer.").
  virtual void plan(std::vector<TensorEntry>& entries) const = 0;
  // Collective where the state is sharded: every rank calls it.
  virtual void save(CheckpointWriter& out) = 0;
  virtual void load(const CheckpointReader& in) = 0;
};

}  // namespace undo
