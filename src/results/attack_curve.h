// Relearning-attack curves: one evaluation per (LR, seed, step), and the
// attacker's worst case over LRs and seeds. Torch-free: the sweep's collect
// and report read them too.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/json.h"

namespace undo {

// One evaluation of one attack: the model after `step` steps at `lr` (seed `seed`).
struct AttackPoint {
  double lr = 0;  // 0 in a worst-case curve (the LR that attained it is in `worst_lr`)
  int64_t seed = 0;
  int64_t step = 0;
  // forget_ce, retain_ce, and with arithmetic forget_acc, retain_acc, forget_answer_ce, retain_answer_ce
  std::map<std::string, double> metrics;
  double worst_lr = 0;
  JsonObject to_json() const;
  // Throws InputError naming the key whose value is not a number (lr, seed,
  // step and worst_lr also must be whole, finite and in range).
  static AttackPoint from_json(const std::map<std::string, std::string>& line);
};
// Every point of an attack-curve file (attack.jsonl, a per-LR curve); bad
// content is an InputError naming the file and the evaluation.
std::vector<AttackPoint> read_attack_points(const std::string& path);

// The attacker's result at each evaluated step: the best forget performance
// over all LRs and seeds (highest forget_acc where measured, else lowest
// forget_ce, or by `metric` when given); the other metrics are those of the
// run that attained it. The choice is made on validation (`metric`'s
// validation_metric_of) where the points measured it, so that the reported
// test figure is never the one selected on; curves from before validation
// existed choose on `metric` itself (selected_on says which).
std::vector<AttackPoint> worst_case(const std::vector<AttackPoint>& points, std::string metric = "");
// The validation figure that selection on `metric` uses: "val_forget_acc" for
// forget_acc and for its generalisation twin forget_gen_acc (selection is
// never made on a test or generalisation set).
std::string validation_metric_of(const std::string& metric);
// What the worst case over `points` selects on: "validation", or "test"
// (points from before validation figures existed).
std::string selected_on(const std::vector<AttackPoint>& points, const std::string& metric);
// The generalisation twin of a forget or retain metric ("forget_acc" ->
// "forget_gen_acc"; "" for text CE, which has none).
std::string generalisation_metric_of(const std::string& metric);
// The forget metric the worst case optimises by default: "forget_acc" where
// measured, else "forget_ce".
std::string attack_metric(const std::vector<AttackPoint>& points);
// The forget metrics robustness can be computed on.
const std::vector<std::string>& forget_metrics();  // forget_acc, forget_answer_ce, forget_ce, forget_mcq_acc
// Whether a higher value of `metric` means more was relearned (accuracies), or
// a lower one (the cross-entropies).
bool relearned_when_higher(const std::string& metric);
// The retain metric that goes with a forget metric ("forget_x" -> "retain_x").
std::string retain_metric_of(const std::string& forget_metric);
// The forget and retain metrics of a worst-case point, as a JSON object with its step and LR.
JsonObject attack_point_metrics(const AttackPoint& p);
// The grid's edge: the LR that attains the worst case after the whole attack,
// against the largest LR attacked. Where they are the same the worst case is
// censored: it may lie at a larger LR (results/support.h's grid-edge rule).
struct GridEdge {
  double worst_lr = 0, largest_lr = 0;
  bool censored() const { return worst_lr >= largest_lr; }
};
GridEdge grid_edge(const std::vector<AttackPoint>& points, const std::string& metric);
// Why the attack at one LR diverged ("" if it did not): a metric of its last
// evaluation that is not a number. (A retain CE worse than uniform is not
// divergence: results/grid_extension.h says why.)
std::string attack_divergence(const std::vector<AttackPoint>& lr_points);

// The worst-case point at `step` or the last one before it.
const AttackPoint& worst_at_or_before(const std::vector<AttackPoint>& worst, int64_t step);

}  // namespace undo
