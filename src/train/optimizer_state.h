// What a checkpoint needs of an optimizer: its state written into and read
// from the checkpoint's archive, consolidated (one tensor per parameter and
// moment, whatever the world size or sharding of the run that wrote it).
#pragma once
#include <torch/torch.h>

namespace undo {

class OptimizerState {
 public:
  virtual ~OptimizerState() = default;
  // Collective where the state is sharded: every rank calls it.
  virtual void save(torch::serialize::OutputArchive& archive) = 0;
  virtual void load(torch::serialize::InputArchive& archive) = 0;
};

}  // namespace undo
