#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "cli/stages.h"
#include "core/error.h"
#include "core/fs.h"
#include "results/attack_curve.h"
#include "results/chart.h"
#include "results/results_table.h"
#include "results/support.h"
#include "sweep/dashboard.h"
#include "sweep/job_list.h"

namespace undo {

namespace {

using Row = ResultRow;

// The share of pretraining's forget tokens the attacks replayed: one figure, or
// their range where the models' attacks differ.
std::string forget_share_text(const std::vector<Row>& results) {
  double lo = INFINITY, hi = -INFINITY;
  for (auto& r : results)
    if (std::isfinite(r.attack_forget_share)) lo = std::min(lo, r.attack_forget_share), hi = std::max(hi, r.attack_forget_share);
  if (!std::isfinite(lo)) return "an unrecorded share (results.csv predates relearn.batch_size)";
  auto pct = [](double v) { return format_cell(100 * v, v < 0.1 ? 2 : 1) + "%"; };
  return lo == hi ? pct(lo) : pct(lo) + " to " + pct(hi);
}

}  // namespace

// `undo report DIR`: plots and a Markdown summary of a collected sweep.
int stage_report(int argc, const char* const* argv) {
  if (argc != 2 || std::string(argv[1]).rfind("--", 0) == 0) {
    std::cerr << "usage: undo report DIR   (DIR: a sweep's --out, after `undo sweep collect`)\n";
    return argc == 2 && std::string(argv[1]) == "--help" ? 0 : 2;
  }
  std::string dir = argv[1];
  auto results = read_results_csv(join_path(dir, "results.csv"));
  auto curves = read_curves_csv(join_path(dir, "curves.csv"));
  UNDO_INPUT_CHECK(!results.empty(), join_path(dir, "results.csv"), " has no rows");
  const std::string metric = results.front().metric;
  const auto& known = forget_metrics();
  UNDO_INPUT_CHECK(std::find(known.begin(), known.end(), metric) != known.end(), dir, "/results.csv: unknown metric '",
                   metric, "'");
  const bool acc = metric == "forget_acc", answers = metric == "forget_answer_ce";
  const std::string forget_label = acc ? "forget accuracy" : answers ? "forget answer CE (nats)" : "forget CE";
  std::string out = join_path(dir, "report");
  make_dirs(out);
  // Robustness is printed bare only when the results can carry it (results/support.h).
  const Support support = judge_results(results);

  // 1. Relearning curves: the worst case over LRs, one line per model.
  Chart relearn{"Relearning attack (worst case over LRs)", "attack step", forget_label, {}, {}};
  std::vector<std::string> order;
  std::map<std::string, Series> by_model;
  for (auto& r : curves) {
    auto& s = by_model[r.model];
    if (s.name.empty()) {
      s.name = r.model;
      order.push_back(s.name);
    }
    s.points.emplace_back(r.step, r.forget);
  }
  for (auto& name : order) relearn.series.push_back(by_model[name]);

  // 2. Total compute against robustness: each student and control twice, with
  // its teacher's forward pass shared by the students of its cache and alone.
  std::string tradeoff_title = !support.attack_strong ? "Compute vs robustness (WITHHELD: attack too weak to judge)"
                               : !support.supported() ? "Compute vs robustness (MARKED: " + support.marks.front() + "; see report.md)"
                                                      : "Compute vs robustness";
  Chart tradeoff{tradeoff_title, "total compute (unlearn + teacher pass + distillation) / oracle pretraining",
                 "robustness", {}, {}};
  std::map<std::string, Series> students;  // per method and accounting
  std::map<std::string, double> seen_models;
  Series unlearn_pts{"unlearned teacher", {}, false, true, {}};
  for (auto& r : results) {
    if (seen_models.count(r.model)) continue;
    seen_models[r.model] = 1;
    const std::string& role = r.role;
    if (role == "student" || role == "control") {
      std::string who = role == "control" ? "distilled base (control)" : "UNDO / U&D (" + r.method + ")";
      std::string label = role == "control" ? "ctrl" : std::strtod(r.alpha.c_str(), nullptr) >= 1 ? "U&D" : "a=" + r.alpha;
      for (auto [compute, accounting] : {std::pair{r.total_compute_amortised, "teacher shared"},
                                         std::pair{r.total_compute_alone, "teacher alone"}}) {
        auto& s = students[(role == "control" ? "~" : "") + who + accounting];  // the control after the methods
        s.name = who + ", " + accounting;
        s.line = false;
        s.markers = true;
        s.points.emplace_back(compute, r.robustness);
        s.labels.push_back(label);
      }
    } else if (role == "unlearn") {
      unlearn_pts.points.emplace_back(r.compute_vs_oracle, 0.0);
      unlearn_pts.labels.push_back(r.method);
    }
  }
  for (auto& [m, s] : students) tradeoff.series.push_back(s);
  if (!unlearn_pts.points.empty()) tradeoff.series.push_back(unlearn_pts);
  tradeoff.hlines = {{"oracle = 1", 1.0}, {"unlearn only = 0", 0.0}};

  for (auto& [name, chart] : {std::pair{"relearn_curves", relearn}, {"compute_robustness", tradeoff}}) {
    write_file_atomic(join_path(out, std::string(name) + ".svg"), render_svg(chart));
    write_file_atomic(join_path(out, std::string(name) + ".png"), render_png(chart));
  }

  // 3. The Markdown summary: one row per model, worst case over the attack LRs.
  // The retain metric shown after 40 and after all steps is that of the LR
  // that attained the worst-case forget metric there.
  struct Summary {
    Row first;
    double worst40 = NAN, retain40 = NAN, retain_final = NAN;
  };
  std::vector<std::string> models;
  std::map<std::string, Summary> per;
  for (auto& r : results) {
    auto& s = per[r.model];
    if (s.first.model.empty()) {
      s.first = r;
      models.push_back(r.model);
    }
    double v = r.forget_after40;
    if (std::isfinite(v) && (!std::isfinite(s.worst40) || (relearned_when_higher(metric) ? v > s.worst40 : v < s.worst40)))
      s.worst40 = v, s.retain40 = r.retain_after40;
    if (r.forget_final == r.worst_forget_final) s.retain_final = r.retain_final;
  }
  const SupportThresholds thresholds;
  std::ostringstream md;
  std::string r_name = acc ? "retain acc" : answers ? "retain answer CE" : "retain CE",
              f_name = acc ? "forget acc" : answers ? "forget answer CE" : "forget CE";
  md << "# Sweep report: " << dir << "\n\n" << support_summary(support) << "\n\n";
  if (answers)
    md << "Metric: forget answer CE, the negative log-likelihood (nats) of each held-out problem's answer given its "
          "prompt, averaged over multiplication and division, equations and word problems (retain: addition and "
          "subtraction). Lower means more of the capability; it is used where accuracy sits at its floor.\n\n";
  md << "Support rules (results/support.h): the oracle relearns (" << (acc ? "forget accuracy +" : f_name + " -")
     << (acc ? format_cell(thresholds.min_oracle_gain_acc, 2) : format_cell(100 * thresholds.min_oracle_drop_ce, 0) + "%")
     << "); the attacked base scores |robustness| < " << format_cell(thresholds.max_base_robustness, 1)
     << "; every model's worst LR lies inside its grid; at least " << thresholds.min_replicates
     << " independent replicates; at least " << thresholds.min_attack_lrs << " attack LRs and "
     << thresholds.min_attack_steps << " attack steps; "
     << (metric != "forget_ce" ? std::to_string(thresholds.min_eval_per_op_format) + " evaluation problems per operation and format"
             : std::to_string(thresholds.min_eval_windows) + " evaluation windows")
     << "; a distilled model met its stopping rule. A figure that fails one carries its mark.\n\n"
     << "The attack replays " << forget_share_text(results)
     << " of the forget tokens the base saw in pretraining (the paper's attack: about 1%).\n\n"
     << "Worst case over attack LRs (" << (acc ? "highest " : "lowest ") << f_name
     << "). Robustness = (P - P_unlearn) / (P_oracle - P_unlearn) on the worst-case forget metric after the "
        "full attack. Compute is relative to the oracle's pretraining tokens: distillation compute is the "
        "student's training tokens; total compute adds the unlearning that made the teacher and the teacher's "
        "forward pass (a third of a training token per token): at the positions the student read (consumed), "
        "shared by the students of its cache, or the whole pass alone. "
        "Against the oracle (1.00) on total compute is the comparison the paper's claim rests on.\n\n"
     << "Each model's " << r_name << " is shown before the attack next to its forget metric, and after 40 and "
        "all steps for the LR that attained the worst case there; the base's and the teacher's rows give the "
        "students' retain reference.\n\n"
     << "| model | role | alpha | distillation compute | total compute (teacher consumed / shared / alone) | " << f_name
     << " / " << r_name << " before | after 40 | after all | robustness |\n|---|---|---|---|---|---|---|---|---|\n";
  for (auto& m : models) {
    auto& s = per[m];
    const Row& f = s.first;
    md << "| " << m << " | " << f.role << " | " << (f.alpha.empty() ? "-" : f.alpha) << " | "
       << format_cell(f.compute_vs_oracle, 2) << " | "
       << (std::isfinite(f.total_compute_amortised)
               ? format_cell(f.total_compute_consumed, 2) + " / " + format_cell(f.total_compute_amortised, 2) + " / " +
                     format_cell(f.total_compute_alone, 2)
               : "-")
       << " | " << format_cell(f.forget_before) << " / " << format_cell(f.retain_before) << " | " << format_cell(s.worst40) << " / "
       << format_cell(s.retain40) << " | " << format_cell(f.worst_forget_final) << " / "
       << format_cell(s.retain_final) << " | " << robustness_text(support, f, f.robustness) << " |\n";
  }
  // Robustness per configuration over its replicates: mean, and a 95% interval or the range.
  md << "\nRobustness per configuration, over its replicates (which vary the " << support.varied
     << "): mean, and the 95% bootstrap interval with at least " << thresholds.min_replicates
     << " independent replicates, else their range.\n\n| role | method | alpha | beta | signal | n | robustness mean | "
        "interval |\n|---|---|---|---|---|---|---|---|\n";
  std::set<std::string> configs_seen;
  for (auto& m : models) {
    auto& r = per[m].first;
    if (r.role != "student" && r.role != "control") continue;
    if (!configs_seen.insert(configuration_of(r)).second) continue;
    md << "| " << r.role << " | " << (r.method.empty() ? "-" : r.method) << " | " << r.alpha << " | "
       << (r.beta.empty() ? "-" : r.beta) << " | " << (r.signal.empty() ? "-" : r.signal) << " | "
       << (std::isfinite(r.robustness_seeds) ? std::to_string(int64_t(r.robustness_seeds)) : "") << " | "
       << robustness_text(support, r, r.robustness_mean) << " | " << interval_text(support, r) << " |\n";
  }
  md << "\n![relearning curves](relearn_curves.svg)\n\n![compute vs robustness](compute_robustness.svg)\n";
  write_file_atomic(join_path(out, "report.md"), md.str());
  std::cout << md.str();
  // The dashboard: the same results, sortable, with every job of the sweep (OUT/jobs.tsv) and the charts.
  write_dashboard(read_job_list(dir));
  std::cerr << "report: " << out << "/{report.md, index.html, relearn_curves.svg/.png, compute_robustness.svg/.png}\n";
  return 0;
}

}  // namespace undo
