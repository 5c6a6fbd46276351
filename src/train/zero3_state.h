// The optimizer state of a ZeRO-3 run, as checkpoints hold it: AdamW steps on
// the flat per-unit shards (distributed/zero3.h), but its moments are written
// as one tensor per model parameter, named as an unsharded run names them. So
// a zero-3 checkpoint resumes at another world size, or at zero 0 or 1, and
// the reverse. Saving gathers one unit's moment at a time; loading reads each
// rank's slices of the file straight into its shards.
#pragma once
#include "distributed/zero3.h"
#include "train/adamw.h"
#include "train/optimizer_state.h"

namespace undo {

class Zero3AdamWState : public OptimizerState {
 public:
  // `adamw` steps on `zero3`'s shards, in the order zero3.shards() gives them.
  Zero3AdamWState(AdamW& adamw, Zero3& zero3) : adamw_(adamw), zero3_(zero3) {}
  void plan(std::vector<TensorEntry>& entries) const override;
  void save(CheckpointWriter& out) override;  // collective
  void load(const CheckpointReader& in) override;

 private:
  AdamW& adamw_;
  Zero3& zero3_;
};

}  // namespace undo
