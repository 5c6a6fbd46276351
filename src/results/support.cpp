#include "results/support.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "results/attack_curve.h"
#include "results/results_table.h"

namespace undo {
namespace {

std::string num(double v) {
  std::ostringstream os;
  os.precision(3);
  os << v;
  return os.str();
}

std::string joined(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

// Whether the oracle relearned enough for "did not relearn" to mean something.
void judge_attack(const SweepEvidence& e, const SupportThresholds& t, Support& s) {
  if (!e.has_oracle) {
    s.attack_note = "no oracle was attacked, so the attack's strength cannot be judged";
  } else if (relearned_when_higher(e.metric)) {
    s.attack_strong = e.oracle_after - e.oracle_before >= t.min_oracle_gain_acc;
    s.attack_note = "the oracle's " + e.metric + " went from " + num(e.oracle_before) + " to " + num(e.oracle_after) +
                    " under the worst attack (needed: +" + num(t.min_oracle_gain_acc) + ")";
  } else {
    double drop = e.oracle_before > 0 ? (e.oracle_before - e.oracle_after) / e.oracle_before : 0;
    s.attack_strong = drop >= t.min_oracle_drop_ce;
    s.attack_note = "the oracle's " + std::string(e.metric == "forget_ce" ? "forget CE" : "forget answer CE") +
                    " went from " + num(e.oracle_before) + " to " + num(e.oracle_after) +
                    " under the worst attack (needed: -" + num(100 * t.min_oracle_drop_ce) + "%)";
  }
}

void fail(Support& s, const std::string& mark, const std::string& why) {
  s.marks.push_back(mark);
  s.failed.push_back(why);
}

// The rules on the sweep's size, which a spec can be judged on before it runs.
void judge_size(const SweepEvidence& e, const SupportThresholds& t, Support& s) {
  if (e.attack_lrs < t.min_attack_lrs)
    fail(s, std::to_string(e.attack_lrs) + " attack LRs",
         std::to_string(e.attack_lrs) + " attack LRs (< " + std::to_string(t.min_attack_lrs) + ")");
  if (e.attack_steps < t.min_attack_steps)
    fail(s, std::to_string(e.attack_steps) + " attack steps",
         std::to_string(e.attack_steps) + " attack steps (< " + std::to_string(t.min_attack_steps) + ")");
  if (!e.independent || e.replicates < t.min_replicates)
    fail(s, "n = " + std::to_string(e.replicates),
         "n = " + std::to_string(e.replicates) + " replicate" + (e.replicates == 1 ? "" : "s") + " varying " +
             e.varied + (e.independent ? "" : " only") + " (needed: " + std::to_string(t.min_replicates) +
             " independent replicates, each reseeding the whole pipeline)");
  // Question accuracy (forget_mcq_acc) has no size rule of its own: its test
  // set is judged by its standard error against the base-oracle gap alone.
  if (e.metric.find("_mcq_") != std::string::npos) return;
  const bool problems = e.metric.find("answer_ce") != std::string::npos || relearned_when_higher(e.metric);
  if (problems && e.eval_per_op_format < t.min_eval_per_op_format)
    fail(s, "small test set",
         std::to_string(e.eval_per_op_format) + " problems per operation and format (< " +
             std::to_string(t.min_eval_per_op_format) + ")");
  if (!problems && e.eval_windows < t.min_eval_windows)
    fail(s, "small test set",
         std::to_string(e.eval_windows) + " evaluation windows (< " + std::to_string(t.min_eval_windows) + ")");
}

constexpr const char* kNotCompetent = "base not competent";

// Whether the base knows what the oracle never learned, clearly beyond the
// test set's sampling error: robustness is measured in that gap.
void judge_competence(const SweepEvidence& e, const SupportThresholds& t, Support& s) {
  if (!std::isfinite(e.base_before) || !e.has_oracle) return;  // no base or oracle: judged by their own rules
  const bool acc = relearned_when_higher(e.metric);
  const double gap = acc ? e.base_before - e.oracle_before : e.oracle_before - e.base_before;
  const double needed = acc ? t.min_base_gap_acc : t.min_base_gap_ce * e.oracle_before;
  if (!(gap >= needed))
    fail(s, kNotCompetent,
         "the base's " + e.metric + " before the attack is " + num(e.base_before) + " against the oracle's " +
             num(e.oracle_before) + " (a gap of " + num(gap) + "; needed: " + num(needed) +
             "): the base is not clearly off the floor, so robustness would be measured in noise");
  else if (std::isfinite(e.base_before_se) && e.base_before_se > t.max_se_of_gap * gap)
    fail(s, "small test set",
         "the test " + e.metric + " has a standard error of " + num(e.base_before_se) + ", more than " +
             num(100 * t.max_se_of_gap) + "% of the base-oracle gap " + num(gap));
}

}  // namespace

double robustness_between(double p, double p_unlearn, double p_oracle) {
  return std::abs(p_oracle - p_unlearn) > 1e-12 ? (p - p_unlearn) / (p_oracle - p_unlearn) : NAN;
}

Support judge_support(const SweepEvidence& e, const SupportThresholds& t) {
  Support s;
  judge_attack(e, t, s);
  if (!e.has_base)
    fail(s, "base not attacked", "the base was not attacked, so the metric's sanity cannot be checked");
  else if (!(std::abs(e.base_robustness) < t.max_base_robustness))
    fail(s, "base not near 0",
         "the attacked base scores robustness " + num(e.base_robustness) + " (|r| must be below " +
             num(t.max_base_robustness) + " for a model that never unlearned): the metric cannot separate models");
  judge_competence(e, t, s);
  if (e.selected_on != "validation")
    fail(s, "selected on test set",
         "the attack's worst LR was chosen on the test figures it reports (curves from before validation sets; "
         "rerun the attacks on data prepared with them)");
  if (!e.censored.empty())
    fail(s, "censored at grid edge",
         "censored at grid edge: the worst LR of " + joined(e.censored, ", ") +
             " is the largest of its grid, so the true worst case may lie above it");
  judge_size(e, t, s);
  s.replicated = e.independent && e.replicates >= t.min_replicates;
  s.varied = e.varied;
  return s;
}

std::vector<std::string> plan_support_gaps(const SweepEvidence& planned, const SupportThresholds& t) {
  Support s;
  judge_size(planned, t, s);
  return s.failed;
}

// A student's or control's configuration, whose replicates are pooled.
std::string configuration_of(const ResultRow& r) {
  return r.role + "|" + r.method + "|" + r.alpha + "|" + r.beta + "|" + r.signal;
}

namespace {

// The models whose worst LR after the full attack is the largest of their
// grid: each model's rows (one per LR, its final forget metric) judged by the
// same grid_edge that decides the attack's own extension (results/attack_curve.h).
std::vector<std::string> censored_models(const std::vector<ResultRow>& results, const std::string& metric) {
  std::map<std::string, std::vector<AttackPoint>> finals;
  std::vector<std::string> order;
  for (auto& r : results) {
    if (!finals.count(r.model)) order.push_back(r.model);
    AttackPoint p;
    p.lr = r.attack_lr;
    p.step = std::isfinite(r.attack_steps) ? int64_t(r.attack_steps) : 0;
    p.metrics[metric] = r.forget_final;
    // The extension chose on validation where it was measured, and so does this rule. A diverged
    // attack's row (NaN on both) keeps its NaN there, so that it does not make the model's choice "test".
    if (std::isfinite(r.forget_final_val) || !std::isfinite(r.forget_final))
      p.metrics[validation_metric_of(metric)] = r.forget_final_val;
    finals[r.model].push_back(p);
  }
  std::vector<std::string> out;
  for (auto& m : order)
    if (grid_edge(finals[m], metric).censored()) out.push_back(m);
  return out;
}

}  // namespace

SweepEvidence evidence_of(const std::vector<ResultRow>& results, const std::string& metric) {
  SweepEvidence e;
  e.metric = metric;
  std::map<std::string, std::set<double>> lrs_per_model;
  std::map<std::string, std::set<std::string>> seeds_per_config;
  const ResultRow *base = nullptr, *unlearn = nullptr, *oracle = nullptr;
  e.attack_steps = std::numeric_limits<int>::max();
  for (auto& r : results) {
    lrs_per_model[r.model].insert(r.attack_lr);
    e.attack_steps = std::min(e.attack_steps, int(r.attack_steps));
    // Independent replicates are counted by replicate, student seeds within one pipeline by seed.
    if (r.role == "student")
      seeds_per_config[configuration_of(r)].insert(r.replicates_vary == kStudentSeedVaries || r.replicate.empty()
                                                       ? "seed " + r.seed
                                                       : "replicate " + r.replicate);
    if (r.role == "oracle" && !e.has_oracle) {
      e.has_oracle = true;
      e.oracle_before = r.forget_before;
      e.oracle_after = r.worst_forget_final;
    }
    // The base that looks most robust (each replicate's, against its own teacher and oracle).
    if (r.role == "base" && (!base || !std::isfinite(base->robustness) ||
                             (std::isfinite(r.robustness) && std::abs(r.robustness) > std::abs(base->robustness))))
      base = &r;
    if (r.selected_on != "validation") e.selected_on = "test";  // "": a table from before the column
    if (r.role == "unlearn" && !unlearn) unlearn = &r;
    if (r.role == "oracle" && !oracle) oracle = &r;
    if (!r.replicates_vary.empty()) e.varied = r.replicates_vary;
    auto count = [](double v) { return std::isfinite(v) ? int64_t(v) : int64_t(0); };
    e.eval_per_op_format = int(count(r.eval_per_op_format));
    e.eval_windows = count(r.eval_windows);
  }
  // The base's robustness as collect measures it (against the first method's teacher), computed here
  // too for a results.csv written before collect did.
  if (base) {
    e.base_robustness = std::isfinite(base->robustness) || !unlearn || !oracle
                            ? base->robustness
                            : robustness_between(base->worst_forget_final, unlearn->worst_forget_final,
                                                 oracle->worst_forget_final);
    e.has_base = std::isfinite(e.base_robustness);
    e.base_before = base->forget_before, e.base_before_se = base->forget_before_se;
  }
  e.independent = e.varied == kEveryStageVaries || e.varied == kAllButBaseOracleVaries;
  e.attack_lrs = std::numeric_limits<int>::max();
  for (auto& [m, lrs] : lrs_per_model) e.attack_lrs = std::min(e.attack_lrs, int(lrs.size()));
  e.replicates = seeds_per_config.empty() ? 1 : std::numeric_limits<int>::max();
  for (auto& [c, seeds] : seeds_per_config) e.replicates = std::min(e.replicates, int(seeds.size()));
  e.censored = censored_models(results, metric);
  return e;
}

Support judge_results(const std::vector<ResultRow>& results) {
  return judge_support(evidence_of(results, results.empty() ? "forget_acc" : results.front().metric));
}

std::string figure_mark(const Support& s, const ResultRow& r) {
  if (!s.attack_strong) return "withheld";
  std::vector<std::string> marks = s.marks;
  const bool distilled = r.role == "student" || r.role == "control";
  if (distilled && !r.stop_metric.empty() && r.stop_metric != "none" && r.stopped_at == 0)
    marks.push_back("stopping rule not met");
  return joined(marks, "; ");
}

std::string robustness_text(const Support& s, const ResultRow& r, double value, int digits) {
  if (!s.attack_strong) return "withheld";
  if (!std::isfinite(value)) return "-";
  const std::string mark = figure_mark(s, r);
  return format_cell(value, digits) + (mark.empty() ? "" : " (" + mark + ")");
}

std::string general_robustness_text(const Support& s, const std::vector<ResultRow>& results, const ResultRow& r,
                                    const SupportThresholds& t) {
  if (!s.attack_strong) return "withheld";
  if (!std::isfinite(r.robustness_general)) return "-";
  SweepEvidence e;
  e.metric = generalisation_metric_of(r.metric);
  for (auto& row : results) {
    if (row.role == "base") e.base_before = row.forget_before_general;
    if (row.role == "oracle") e.oracle_before = row.forget_before_general, e.has_oracle = true;
  }
  // The headline's marks, with competence judged on this metric instead.
  Support general = s, own;
  judge_competence(e, t, own);
  auto& marks = general.marks;
  marks.erase(std::remove(marks.begin(), marks.end(), std::string(kNotCompetent)), marks.end());
  marks.insert(marks.end(), own.marks.begin(), own.marks.end());
  const std::string mark = figure_mark(general, r);
  return format_cell(r.robustness_general, 2) + (mark.empty() ? "" : " (" + mark + ")");
}

std::string interval_text(const Support& s, double replicates, double lo, double hi, double min, double max) {
  if (!s.attack_strong || !std::isfinite(replicates) || replicates < 2) return "-";
  const std::string n = std::to_string(int64_t(replicates));
  if (s.replicated && std::isfinite(lo))
    return "[" + format_cell(lo, 2) + ", " + format_cell(hi, 2) + "] (95%, n = " + n + ")";
  if (!std::isfinite(min)) return "- (n = " + n + ")";
  return "range [" + format_cell(min, 2) + ", " + format_cell(max, 2) + "] (n = " + n + ")";
}

std::string interval_text(const Support& s, const ResultRow& r) {
  return interval_text(s, r.robustness_seeds, r.robustness_ci_lo, r.robustness_ci_hi, r.robustness_min,
                       r.robustness_max);
}

std::string support_summary(const Support& s) {
  if (!s.attack_strong)
    return "Attack too weak to judge: " + s.attack_note +
           ". Models that did not relearn cannot be told from models the attack could not move, so no robustness "
           "figure is given.";
  const std::string intervals =
      s.replicated ? "Intervals are 95% bootstrap intervals over independent replicates."
                   : "Intervals are ranges over replicates that vary the " + s.varied + " only: not 95% intervals.";
  if (!s.supported())
    return "Robustness figures carry the rules they fail: " + joined(s.failed, "; ") +
           ". (The attack itself was strong enough: " + s.attack_note + ".) " + intervals;
  return "Supported: " + s.attack_note +
         "; the attacked base scores near 0, every worst LR lies inside its grid, and the replicates, the attack "
         "grid and the evaluation meet the thresholds. " +
         intervals;
}

}  // namespace undo
