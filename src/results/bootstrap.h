// Mean and percentile bootstrap interval of a small sample (the seeds of one
// configuration), deterministic: the resampling draws from a fixed seed, so a
// rerun of `undo sweep collect` writes the same interval.
#pragma once
#include <cstdint>
#include <vector>

namespace undo {

struct Interval {
  double mean = 0, lo = 0, hi = 0;
  int n = 0;  // sample size; with n < 2 the interval is not defined (lo = hi = NaN)
};

// The mean and its `level` (0.95) percentile-bootstrap interval over `draws` resamples.
Interval bootstrap_mean(const std::vector<double>& sample, double level = 0.95, int draws = 4000,
                        uint64_t seed = 20250606);

}  // namespace undo
