// Where a training step's time goes, for bench/run --profile: LibTorch's own
// profiler (Kineto, CPU operators) records the timed steps, and each
// operator's self time (its time less that of the operators it calls) is put
// in one bucket:
//  - GEMM: the matrix products (mm, bmm, addmm, baddbmm), wherever they run;
//  - allocator: empty, empty_strided, resize_;
//  - else the scope the model marks it with (undo::norm, undo::rotary,
//    undo::attention, undo::activation, undo::loss, undo::optimizer), a backward operator
//    following its forward operator's scope (linked by autograd's sequence
//    number, as PyTorch's profiler links them);
//  - elementwise and other: everything else (residual adds, casts, the
//    embedding, autograd's and the dispatcher's own time).
// Beside it, the bf16 (or fp32) matrix-product rate this machine reaches at
// the model's own shapes, measured in the same run, so that the model's
// GFLOP/s reads as a share of what its products could do.
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "core/config.h"

namespace undo::bench {

class StepProfile {
 public:
  void start();
  // Stops recording and sorts what was recorded into buckets.
  void stop(int steps);
  // The table: bucket, ms per step, share of the step; then the operators
  // that take the most self time.
  void print(std::ostream& out) const;

 private:
  std::map<std::string, double> bucket_ms_;           // per step
  std::vector<std::pair<double, std::string>> top_;  // ms per step, operator
  double step_ms_ = 0;
  std::chrono::steady_clock::time_point started_;
};

// The matrix-product rate (GFLOP/s) at the model's shapes for `rows` rows
// (batch x window), in the precision's dtype: each projection's product, the
// MLP's, the attention's and the head's, forward only, best of a few runs,
// weighted by their FLOPs; with `fused_blocks`, the products train.fused_blocks
// makes (q, k and v as one, gate and up as one).
double measured_gemm_gflops(const ModelConfig& model, int64_t rows, const std::string& precision, bool fused_blocks);

}  // namespace undo::bench
