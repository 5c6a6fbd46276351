#include "results/bootstrap.h"

#include <algorithm>
#include <cmath>

#include "data/stream.h"  // splitmix64

namespace undo {

Interval bootstrap_mean(const std::vector<double>& sample, double level, int draws, uint64_t seed) {
  Interval r;
  r.n = int(sample.size());
  if (sample.empty()) {
    r.mean = r.lo = r.hi = NAN;
    return r;
  }
  double sum = 0;
  for (double v : sample) sum += v;
  r.mean = sum / double(sample.size());
  if (sample.size() < 2) {
    r.lo = r.hi = NAN;
    return r;
  }
  std::vector<double> means(static_cast<size_t>(draws));
  uint64_t h = seed;
  for (auto& m : means) {
    double s = 0;
    for (size_t i = 0; i < sample.size(); ++i) {
      h = splitmix64(h);
      s += sample[h % sample.size()];
    }
    m = s / double(sample.size());
  }
  std::sort(means.begin(), means.end());
  auto at = [&](double q) { return means[std::min(means.size() - 1, size_t(q * double(means.size())))]; };
  r.lo = at((1 - level) / 2);
  r.hi = at(1 - (1 - level) / 2);
  return r;
}

}  // namespace undo
