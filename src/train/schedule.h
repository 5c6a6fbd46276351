// Learning-rate schedules: linear warmup, then cosine to min_lr or constant.
#pragma once
#include <cmath>

#include "core/config.h"

namespace undo {

inline double learning_rate(const OptimConfig& o, int64_t step, int64_t total_steps) {
  if (o.warmup > 0 && step < o.warmup) return o.lr * double(step + 1) / double(o.warmup);
  if (o.schedule == "constant") return o.lr;
  double span = std::max<int64_t>(1, total_steps - o.warmup);
  double progress = std::min(1.0, double(step - o.warmup) / span);
  return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + std::cos(M_PI * progress));
}

}  // namespace undo
