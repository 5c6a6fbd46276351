#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <sstream>

#include "cli/stages.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/owned_output.h"
#include "core/utf8.h"
#include "results/attack_curve.h"
#include "results/chart.h"
#include "results/results_table.h"
#include "results/support.h"
#include "sweep/dashboard.h"
#include "sweep/job_list.h"

namespace undo {

namespace {

// Text from results.csv (model, method and signal names, alphas, the sweep's
// directory) as report.md shows it: its control characters escaped, and
// nothing that a Markdown renderer would take for HTML or a table's next cell
// (a name could carry "<script>" or "|" into the report).
std::string md_text(const std::string& s) {
  std::string out;
  for (char c : xml_escape(escape_controls(s))) {  // entities for HTML's < > & "
    if (c == '|' || c == '`') out += '\\';
    out += c;
  }
  return out;
}

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

// What the sweep's metric is called in the report.
struct MetricNames {
  std::string metric, forget, retain, label;
  bool acc = false, answers = false;
  explicit MetricNames(const std::string& m) : metric(m) {
    acc = relearned_when_higher(m), answers = m.find("answer_ce") != std::string::npos;
    forget = acc ? "forget acc" : answers ? "forget answer CE" : "forget CE";
    retain = acc ? "retain acc" : answers ? "retain answer CE" : "retain CE";
    label = acc ? "forget accuracy" : answers ? "forget answer CE (nats)" : "forget CE";
  }
};

// A model's name without its replicate's suffix ("distill-maxent-a1-s1-r3" -> "distill-maxent-a1-s1").
std::string without_replicate(const std::string& model) {
  auto at = model.rfind("-r");
  if (at == std::string::npos || at + 2 == model.size()) return model;
  for (size_t i = at + 2; i < model.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(model[i]))) return model;
  return model.substr(0, at);
}

// The worst case over the relearning attack's LRs, one line per model: the mean over its replicates, in a
// band from their lowest to their highest.
Chart relearn_chart(const std::vector<CurveRow>& curves, const MetricNames& names) {
  Chart chart{"Relearning attack (worst case over LRs)", "attack step", names.label, {}, {}};
  std::vector<std::string> order;
  std::map<std::string, std::map<double, std::vector<double>>> values;  // model -> step -> one per replicate
  std::map<std::string, std::set<std::string>> replicates;
  for (auto& r : curves) {
    const std::string model = without_replicate(r.model);
    if (!values.count(model)) order.push_back(model);
    values[model][r.step].push_back(r.forget);
    replicates[model].insert(r.model);
  }
  for (auto& model : order) {
    const size_t n = replicates[model].size();
    Series s{n > 1 ? model + " (mean of " + std::to_string(n) + ", band: their range)" : model, {}, true, false, {}, {}};
    for (auto& [step, v] : values[model]) {
      s.points.emplace_back(step, std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()));
      if (n > 1) s.spread.emplace_back(*std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()));
    }
    chart.series.push_back(std::move(s));
  }
  return chart;
}

// Total compute against robustness: each configuration of student and control
// twice, with its teacher's forward pass shared by the students of its cache
// and alone, at its mean over replicates, with its 95% interval as a bar.
Chart tradeoff_chart(const std::vector<Row>& results, const Support& support) {
  std::string title = !support.attack_strong ? "Compute vs robustness (WITHHELD: attack too weak to judge)"
                      : !support.supported() ? "Compute vs robustness (MARKED: " + support.marks.front() + "; see report.md)"
                                             : "Compute vs robustness";
  Chart chart{title, "total compute (unlearn + teacher pass + distillation) / oracle pretraining", "robustness", {}, {}};
  // One point per configuration and accounting: the mean compute of its models, its robustness mean and interval.
  struct Point {
    std::string series, label;
    double compute_sum = 0, robustness = NAN, lo = NAN, hi = NAN;
    int n = 0;
  };
  std::map<std::string, Point> points;  // series name + configuration -> point
  std::map<std::string, std::string> series_names;  // sort key -> name (the controls after the methods)
  std::set<std::string> seen_models;
  Series unlearn_pts{"unlearned teacher", {}, false, true, {}, {}};
  for (auto& r : results) {
    if (!seen_models.insert(r.model).second) continue;
    if (r.role == "student" || r.role == "control") {
      const bool oracle_control = r.method == "distilled-oracle";  // else the distilled base ("" before the tag)
      std::string who = r.role != "control" ? "UNDO / U&D (" + r.method + ")"
                        : oracle_control    ? "distilled oracle (control)"
                                            : "distilled base (control)";
      std::string label = r.role == "control"                          ? (oracle_control ? "ctrl-o" : "ctrl")
                          : std::strtod(r.alpha.c_str(), nullptr) >= 1 ? "U&D"
                                                                       : "a=" + r.alpha;
      for (auto [compute, accounting] : {std::pair{r.total_compute_amortised, "teacher shared"},
                                         std::pair{r.total_compute_alone, "teacher alone"}}) {
        const std::string key = (r.role == "control" ? "~" : "") + who + accounting;
        series_names[key] = who + ", " + accounting;
        Point& p = points[key + "|" + configuration_of(r)];
        p.series = key, p.label = label;
        p.compute_sum += compute, ++p.n;
        const bool has_mean = std::isfinite(r.robustness_mean);
        p.robustness = has_mean ? r.robustness_mean : r.robustness;
        p.lo = has_mean ? r.robustness_ci_lo : NAN, p.hi = has_mean ? r.robustness_ci_hi : NAN;
      }
    } else if (r.role == "unlearn") {
      unlearn_pts.points.emplace_back(r.compute_vs_oracle, 0.0);
      unlearn_pts.labels.push_back(r.method);
    }
  }
  for (auto& [key, name] : series_names) {
    Series s{name, {}, false, true, {}, {}};
    for (auto& [k, p] : points) {
      if (p.series != key) continue;
      s.points.emplace_back(p.compute_sum / p.n, p.robustness);
      s.labels.push_back(p.label);
      s.spread.emplace_back(p.lo, p.hi);
    }
    chart.series.push_back(std::move(s));
  }
  if (!unlearn_pts.points.empty()) chart.series.push_back(unlearn_pts);
  chart.hlines = {{"oracle = 1", 1.0}, {"unlearn only = 0", 0.0}};
  return chart;
}

// One model's rows folded into its report line: its first row, and the worst
// case over LRs after 40 steps with the retain metric of the LR that attained
// it (and so after all steps).
struct ModelSummary {
  Row first;
  double worst40 = NAN, retain40 = NAN, retain_final = NAN;
};
std::vector<ModelSummary> model_summaries(const std::vector<Row>& results) {
  std::vector<std::string> order;
  std::map<std::string, ModelSummary> per;
  for (auto& r : results) {
    auto& s = per[r.model];
    if (s.first.model.empty()) {
      s.first = r;
      order.push_back(r.model);
    }
    double v = r.forget_after40;
    if (std::isfinite(v) && (!std::isfinite(s.worst40) || (relearned_when_higher(r.metric) ? v > s.worst40 : v < s.worst40)))
      s.worst40 = v, s.retain40 = r.retain_after40;
    if (r.forget_final == r.worst_forget_final) s.retain_final = r.retain_final;
  }
  std::vector<ModelSummary> out;
  for (auto& m : order) out.push_back(per[m]);
  return out;
}

// The support rules, the attack's share of forget data, the metric and the compute accounting.
void write_method_notes(std::ostream& md, const std::vector<Row>& results, const MetricNames& n) {
  const SupportThresholds t;
  if (n.answers)
    md << "Metric: forget answer CE, the negative log-likelihood (nats) of each test problem's answer given its "
          "prompt, averaged over multiplication and division, equations and word problems (retain: addition and "
          "subtraction). Lower means more of the capability; it is used where accuracy sits at its floor.\n\n";
  md << "Support rules (results/support.h): the oracle relearns (" << (n.acc ? "forget accuracy +" : n.forget + " -")
     << (n.acc ? format_cell(t.min_oracle_gain_acc, 2) : format_cell(100 * t.min_oracle_drop_ce, 0) + "%")
     << "); the attacked base scores |robustness| < " << format_cell(t.max_base_robustness, 1)
     << "; before the attack the base's " << n.forget << " is clearly off the floor ("
     << (n.acc ? format_cell(t.min_base_gap_acc, 2) + " above" : format_cell(100 * t.min_base_gap_ce, 0) + "% below")
     << " the oracle's); the attack's worst LR is chosen on validation, never on the test figures; every model's "
        "worst LR lies inside its grid; at least "
     << t.min_replicates << " independent replicates; at least " << t.min_attack_lrs << " attack LRs and "
     << t.min_attack_steps << " attack steps; "
     << (n.metric != "forget_ce" ? std::to_string(t.min_eval_per_op_format) + " test problems per operation and format"
                                 : std::to_string(t.min_eval_windows) + " test windows")
     << ", with a standard error under " << format_cell(100 * t.max_se_of_gap, 0)
     << "% of the base-oracle gap; a distilled model met its stopping rule. A figure that fails one carries its "
        "mark.\n\n"
     << "The attack replays " << forget_share_text(results)
     << " of the forget tokens the base saw in pretraining (the paper's attack: about 1%).\n\n"
     << "Worst case over attack LRs (" << (n.acc ? "highest " : "lowest ") << n.forget
     << " on validation; the test figure of that LR is shown). Robustness = (P - P_unlearn) / (P_oracle - P_unlearn) "
        "on the worst-case test forget metric after the full attack. Compute is relative to the oracle's "
        "pretraining tokens: distillation compute is the student's training tokens; total compute adds the "
        "unlearning that made the teacher and the teacher's forward pass (a third of a training token per "
        "token): at the positions the student read (consumed), shared by the students of its cache, or the whole "
        "pass alone. Against the oracle (1.00) on total compute is the comparison the paper's claim rests on.\n\n";
}

// What the test set can resolve, and the generalisation figure beside the paper's.
void write_evaluation_notes(std::ostream& md, const std::vector<Row>& results, const MetricNames& n) {
  const Row *base = nullptr, *oracle = nullptr;
  for (auto& r : results) {
    if (r.role == "base" && !base) base = &r;
    if (r.role == "oracle" && !oracle) oracle = &r;
  }
  if (base && oracle && std::isfinite(base->forget_before_se))
    md << "Test set: the base's " << n.forget << " before the attack is " << format_cell(base->forget_before) << " (standard error "
       << format_cell(base->forget_before_se) << "), the oracle's " << format_cell(oracle->forget_before)
       << ": a gap of " << format_cell(std::abs(base->forget_before - oracle->forget_before)) << ".\n\n";
  if (n.acc || n.answers)
    md << "Problems (data/arithmetic.h): the test figures score problems on the training pool's operands rendered "
          "only with held-out templates, so no string a model trained on is ever scored (the paper's protocol); "
          "the generalisation column scores held-out operands, which no model trained on in any rendering, and "
          "is judged on its own base's competence.\n\n";
}

// One line per attacked model.
void write_model_table(std::ostream& md, const std::vector<ModelSummary>& models, const std::vector<Row>& results,
                       const Support& support, const MetricNames& n) {
  md << "Each model's " << n.retain << " is shown before the attack next to its forget metric, and after 40 and "
        "all steps for the LR that attained the worst case there; the base's and the teacher's rows give the "
        "students' retain reference.\n\n"
     << "| model | role | alpha | distillation compute | total compute (teacher consumed / shared / alone) | " << n.forget
     << " / " << n.retain << " before | after 40 | after all | robustness | generalisation |\n"
     << "|---|---|---|---|---|---|---|---|---|---|\n";
  for (auto& s : models) {
    const Row& f = s.first;
    md << "| " << md_text(f.model) << " | " << md_text(f.role) << " | " << (f.alpha.empty() ? "-" : md_text(f.alpha)) << " | "
       << format_cell(f.compute_vs_oracle, 2) << " | "
       << (std::isfinite(f.total_compute_amortised)
               ? format_cell(f.total_compute_consumed, 2) + " / " + format_cell(f.total_compute_amortised, 2) + " / " +
                     format_cell(f.total_compute_alone, 2)
               : "-")
       << " | " << format_cell(f.forget_before) << " / " << format_cell(f.retain_before) << " | " << format_cell(s.worst40)
       << " / " << format_cell(s.retain40) << " | " << format_cell(f.worst_forget_final) << " / "
       << format_cell(s.retain_final) << " | " << robustness_text(support, f, f.robustness) << " | "
       << general_robustness_text(support, results, f) << " |\n";
  }
}

// Robustness per configuration over its replicates: mean, and a 95% interval or the range.
void write_configuration_table(std::ostream& md, const std::vector<ModelSummary>& models, const Support& support) {
  md << "\nRobustness per configuration, over its replicates (which vary the " << md_text(support.varied)
     << "): mean, and the 95% bootstrap interval with at least " << SupportThresholds().min_replicates
     << " independent replicates, else their range.\n\n| role | method | alpha | beta | signal | n | robustness mean | "
        "interval |\n|---|---|---|---|---|---|---|---|\n";
  std::set<std::string> configs_seen;
  for (auto& s : models) {
    const Row& r = s.first;
    if (r.role != "student" && r.role != "control") continue;
    if (!configs_seen.insert(configuration_of(r)).second) continue;
    md << "| " << md_text(r.role) << " | " << (r.method.empty() ? "-" : md_text(r.method)) << " | " << md_text(r.alpha)
       << " | " << (r.beta.empty() ? "-" : md_text(r.beta)) << " | " << (r.signal.empty() ? "-" : md_text(r.signal))
       << " | "
       << (std::isfinite(r.robustness_seeds) ? std::to_string(int64_t(r.robustness_seeds)) : "") << " | "
       << robustness_text(support, r, r.robustness_mean) << " | " << interval_text(support, r) << " |\n";
  }
}

// With teachers of more than one method: every configuration, teachers included, against one reference (the
// first method's teacher), so that a teacher attacked as it is and a student compare with every other.
void write_common_reference_table(std::ostream& md, const std::vector<ModelSummary>& models,
                                  const Support& support) {
  std::vector<std::string> methods;
  for (auto& s : models)
    if (s.first.role == "unlearn" && std::find(methods.begin(), methods.end(), s.first.method) == methods.end())
      methods.push_back(s.first.method);
  if (methods.size() < 2) return;
  md << "\nEvery configuration against one reference, the " << md_text(methods.front())
     << " teacher (0) and the oracle (1) of each replicate, so that the teachers of every method, attacked as "
        "they are, and their students compare on one scale: mean, and the interval as above.\n\n"
        "| role | method | alpha | beta | n | robustness vs the " << md_text(methods.front())
     << " teacher | interval |\n|---|---|---|---|---|---|---|\n";
  std::set<std::string> configs_seen;
  for (auto& s : models) {
    const Row& r = s.first;
    if (r.role != "unlearn" && r.role != "student" && r.role != "control") continue;
    if (!configs_seen.insert(configuration_of(r)).second) continue;
    md << "| " << md_text(r.role) << " | " << (r.method.empty() ? "-" : md_text(r.method)) << " | "
       << (r.alpha.empty() ? "-" : md_text(r.alpha)) << " | " << (r.beta.empty() ? "-" : md_text(r.beta)) << " | "
       << (std::isfinite(r.robustness_seeds) ? std::to_string(int64_t(r.robustness_seeds)) : "") << " | "
       << robustness_text(support, r, r.robustness_common_mean) << " | "
       << interval_text(support, r.robustness_seeds, r.robustness_common_ci_lo, r.robustness_common_ci_hi, NAN, NAN)
       << " |\n";
  }
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
  const MetricNames names(results.front().metric);
  const auto& known = forget_metrics();
  UNDO_INPUT_CHECK(std::find(known.begin(), known.end(), names.metric) != known.end(), dir,
                   "/results.csv: unknown metric '", names.metric, "'");
  std::string out = join_path(dir, "report");
  // Robustness is printed bare only when the results can carry it (results/support.h).
  const Support support = judge_results(results);
  for (auto& [name, chart] : {std::pair{"relearn_curves", relearn_chart(curves, names)},
                              {"compute_robustness", tradeoff_chart(results, support)}})
    write_output_file(join_path(out, std::string(name) + ".svg"), render_svg(chart));  // SVG only: results/chart.h
  const auto models = model_summaries(results);
  std::ostringstream md;
  md << "# Sweep report: " << md_text(dir) << "\n\n" << md_text(support_summary(support)) << "\n\n";  // it names models
  write_method_notes(md, results, names);
  write_evaluation_notes(md, results, names);
  write_model_table(md, models, results, support, names);
  write_configuration_table(md, models, support);
  write_common_reference_table(md, models, support);
  md << "\n![relearning curves](relearn_curves.svg)\n\n![compute vs robustness](compute_robustness.svg)\n";
  write_output_file(join_path(out, "report.md"), md.str());
  std::cout << md.str();
  // The dashboard: the same results, sortable, with every job of the sweep (OUT/jobs.tsv) and the charts.
  write_dashboard(read_job_list(dir));
  std::cerr << "report: " << out << "/{report.md, index.html, relearn_curves.svg, compute_robustness.svg}\n";
  return 0;
}

}  // namespace undo
