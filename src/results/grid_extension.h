// The attack grid's extension: while a model's worst case after the whole
// attack sits at the largest LR attacked, attack it again at twice that LR.
// Torch-free and given the attack as a function, so that its rule (when to go
// on, when to stop) is tested apart from any training (GridExtension.*).
//
// What ends it, and why:
//  - the worst LR is inside the grid ("interior");
//  - relearn.extend doublings were made ("limit": the report marks the figure
//    "censored at grid edge");
//  - the attack at the new LR diverged: a metric that is not a number. A
//    diverged run is never the attacker's worst case while another run is
//    finite (results/attack_curve.h), so the worst LR is then inside the grid.
// A retain CE worse than a uniform guess does not end it: the attacker wants
// the forget capability back and need not keep the rest, so such an LR is
// still an attack, and stopping there left the worst case at the grid's top
// with no way past it (the 500-step oracle of docs/RESULTS.md, session 16).
// Those LRs are listed in the outcome (`retain_broken_lrs`).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/json.h"
#include "results/attack_curve.h"

namespace undo {

struct GridExtensionRule {
  std::string metric;  // the forget metric judged on; "" = attack_metric of the points
  int max_doublings = 4;  // relearn.extend
  int64_t vocab = 0;  // for the retain CE's uniform bound
};

struct GridExtension {
  std::string outcome = "interior";  // "interior", "limit", or "diverged at LR x: why"
  int doublings = 0;
  std::vector<double> retain_broken_lrs;  // LRs attacked whose retain CE ended worse than uniform
  bool diverged() const { return outcome.rfind("diverged", 0) == 0; }
  // Adds grid_extension, grid_doublings and, where any, retain_broken_lrs.
  void add_to(JsonObject& summary) const;
};

// Extends the grid whose points are `grid` (attacked by other runs) and
// `points` (this run's): `attack(lr)` attacks at one LR and returns its points,
// which are appended to `points`.
GridExtension extend_grid(const GridExtensionRule& rule, const std::vector<AttackPoint>& grid,
                          std::vector<AttackPoint>& points,
                          const std::function<std::vector<AttackPoint>(double)>& attack);

}  // namespace undo
