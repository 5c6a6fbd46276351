#include "results/support.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "results/results_table.h"

namespace undo {
namespace {
std::string num(double v) {
  std::ostringstream os;
  os.precision(3);
  os << v;
  return os.str();
}
}  // namespace

Support judge_support(const SweepEvidence& e, const SupportThresholds& t) {
  Support s;
  if (!e.has_oracle) {
    s.attack_note = "no oracle was attacked, so the attack's strength cannot be judged";
  } else if (e.metric == "forget_acc") {
    double gain = e.oracle_after - e.oracle_before;
    s.attack_strong = gain >= t.min_oracle_gain_acc;
    s.attack_note = "the oracle's forget accuracy went from " + num(e.oracle_before) + " to " + num(e.oracle_after) +
                    " under the worst attack (needed: +" + num(t.min_oracle_gain_acc) + ")";
  } else {
    double drop = e.oracle_before > 0 ? (e.oracle_before - e.oracle_after) / e.oracle_before : 0;
    s.attack_strong = drop >= t.min_oracle_drop_ce;
    s.attack_note = "the oracle's " + std::string(e.metric == "forget_ce" ? "forget CE" : "forget answer CE") +
                    " went from " + num(e.oracle_before) + " to " + num(e.oracle_after) +
                    " under the worst attack (needed: -" + num(100 * t.min_oracle_drop_ce) + "%)";
  }
  if (e.attack_lrs < t.min_attack_lrs)
    s.gaps.push_back(std::to_string(e.attack_lrs) + " attack LRs (< " + std::to_string(t.min_attack_lrs) + ")");
  if (e.attack_steps < t.min_attack_steps)
    s.gaps.push_back(std::to_string(e.attack_steps) + " attack steps (< " + std::to_string(t.min_attack_steps) + ")");
  if (e.seeds < t.min_seeds)
    s.gaps.push_back(std::to_string(e.seeds) + " seed" + (e.seeds == 1 ? "" : "s") + " (< " +
                     std::to_string(t.min_seeds) + ")");
  const bool problems = e.metric != "forget_ce";
  if (problems && e.eval_per_op_format < t.min_eval_per_op_format)
    s.gaps.push_back(std::to_string(e.eval_per_op_format) + " problems per operation and format (< " +
                     std::to_string(t.min_eval_per_op_format) + ")");
  if (!problems && e.eval_windows < t.min_eval_windows)
    s.gaps.push_back(std::to_string(e.eval_windows) + " validation windows (< " + std::to_string(t.min_eval_windows) +
                     ")");
  return s;
}

// A student's or control's configuration, whose seeds are pooled.
std::string configuration_of(const ResultRow& r) {
  return r.role + "|" + r.method + "|" + r.alpha + "|" + r.beta + "|" + r.signal;
}

SweepEvidence evidence_of(const std::vector<ResultRow>& results, const std::string& metric) {
  SweepEvidence e;
  e.metric = metric;
  std::map<std::string, std::set<double>> lrs_per_model;
  std::map<std::string, std::set<std::string>> seeds_per_config;
  e.attack_steps = std::numeric_limits<int>::max();
  for (auto& r : results) {
    lrs_per_model[r.model].insert(r.attack_lr);
    e.attack_steps = std::min(e.attack_steps, int(r.attack_steps));
    if (r.role == "student") seeds_per_config[configuration_of(r)].insert(r.seed);
    if (r.role == "oracle" && !e.has_oracle) {
      e.has_oracle = true;
      e.oracle_before = r.forget_before;
      e.oracle_after = r.worst_forget_final;
    }
    auto count = [](double v) { return std::isfinite(v) ? int64_t(v) : int64_t(0); };
    e.eval_per_op_format = int(count(r.eval_per_op_format));
    e.eval_windows = count(r.eval_windows);
  }
  e.attack_lrs = std::numeric_limits<int>::max();
  for (auto& [m, lrs] : lrs_per_model) e.attack_lrs = std::min(e.attack_lrs, int(lrs.size()));
  e.seeds = seeds_per_config.empty() ? 1 : std::numeric_limits<int>::max();
  for (auto& [c, seeds] : seeds_per_config) e.seeds = std::min(e.seeds, int(seeds.size()));
  return e;
}

}  // namespace undo
