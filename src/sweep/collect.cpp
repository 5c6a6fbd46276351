#include "sweep/collect.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <numeric>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/owned_output.h"
#include "results/attack_curve.h"
#include "results/bootstrap.h"
#include "results/results_table.h"
#include "results/support.h"
#include "sweep/state.h"

namespace undo {

namespace {

// A job's summary.json value of `key` ("" where the file or the key is missing).
std::string summary_text(const Job& j, const std::string& key) {
  auto path = j.dir + "/summary.json";
  if (!file_exists(path)) return "";
  std::map<std::string, std::string> s;
  try {
    s = parse_flat_json(read_file(path));
  } catch (const std::exception& e) {
    UNDO_INPUT_FAIL("'", path, "' is not a summary this program wrote: ", e.what());
  }
  auto it = s.find(key);
  return it == s.end() ? "" : it->second;
}

double summary_number(const Job& j, const std::string& key) {
  const std::string v = summary_text(j, key);
  if (v.empty()) return NAN;
  try {
    return json_number(key, v);
  } catch (const InputError& e) {
    UNDO_INPUT_FAIL("'", j.dir, "/summary.json': ", e.what());
  }
}

// Mean, 95% bootstrap interval and range of a configuration's robustness over its replicates.
struct ReplicateFigures {
  Interval ci{NAN, NAN, NAN, 0};
  double min = NAN, max = NAN;
};
ReplicateFigures replicate_figures(const std::vector<double>& values) {
  ReplicateFigures f;
  f.ci = bootstrap_mean(values);
  f.min = *std::min_element(values.begin(), values.end());
  f.max = *std::max_element(values.begin(), values.end());
  return f;
}


// The pipeline replicate a job belongs to ("1" for plans from before replicates).
std::string replicate_of(const Job& j) {
  auto it = j.tags.find("replicate");
  return it == j.tags.end() ? "1" : it->second;
}

double metric_at(const AttackPoint& p, const std::string& m) {
  auto it = p.metrics.find(m);
  return it == p.metrics.end() ? NAN : it->second;
}

// Per attacked model whose attacks all finished: its worst-case `metric` after
// the whole attack (NaN where `metric` is "" or was not measured).
std::map<std::string, double> worst_finals(const std::map<std::string, std::vector<AttackPoint>>& by_model,
                                           const std::map<std::string, int>& missing, const std::string& metric) {
  std::map<std::string, double> out;
  for (auto& [model, pts] : by_model) {
    if (missing.count(model)) continue;
    auto worst = metric.empty() ? std::vector<AttackPoint>() : worst_case(pts, metric);
    out[model] = worst.empty() ? NAN : metric_at(worst.back(), metric);
  }
  return out;
}

}  // namespace

int collect_results(const Plan& plan) {
  // Attack points per attacked model, and per (model, lr).
  std::map<std::string, std::vector<AttackPoint>> by_model;
  std::map<std::string, std::map<double, std::vector<AttackPoint>>> by_model_lr;
  std::map<std::string, int> missing_attacks;
  for (auto& j : plan.jobs) {
    if (j.kind != "relearn" && j.kind != "extend") continue;  // a grid's attacks and its extension
    const std::string& model = j.tags.at("model");
    if (!job_done(j)) {
      missing_attacks[model]++;
      continue;
    }
    for (auto& p : read_attack_points(j.dir + "/attack.jsonl")) {
      by_model[model].push_back(p);
      by_model_lr[model][p.lr].push_back(p);
    }
  }
  int skipped = 0;
  // Every model is evaluated alike: any one's points say which forget metric "auto" is.
  std::string metric = plan.spec.metric;
  if (metric == "auto") metric = by_model.empty() ? "" : attack_metric(by_model.begin()->second);
  // Per model id: the worst case on the metric, and on its generalisation twin (reported beside it).
  std::map<std::string, double> worst_final = worst_finals(by_model, missing_attacks, metric);
  std::map<std::string, double> worst_general = worst_finals(by_model, missing_attacks, generalisation_metric_of(metric));
  // A role's job in a replicate, or replicate 1's where the replicates share it (sweep.replicate_shared).
  auto find_role = [&](const std::string& role, const std::string& method, const std::string& replicate) -> const Job* {
    for (const std::string& rep : {replicate, std::string("1")})
      for (auto& j : plan.jobs)
        if (j.tags.count("role") && j.tags.at("role") == role && (method.empty() || j.tags.at("method") == method) &&
            replicate_of(j) == rep)
          return &j;
    return nullptr;
  };
  const Job* oracle = find_role("oracle", "", "1");
  double oracle_tokens = oracle ? summary_number(*oracle, "tokens") : NAN;

  // How much each evaluation scores: the report judges from it whether a figure is supported.
  const Config& cfg = plan.spec.cfg;
  const int eval_per_op = metric == "forget_ce" ? 0 : cfg.eval.arith_per_op;  // accuracy and answer CE score problems
  const int64_t eval_windows = int64_t(cfg.eval.batches) * cfg.train.batch_size;
  // What each attack replays, against the spec's pretraining budget (the attack's own job reads its
  // config's train.steps, which a spec's [train] override gives pretraining alone).
  const double attack_forget_share = planned_attack_batch(plan.spec).forget_share;
  // Per attacked model: its robustness, and the compute that made it.
  struct ModelFigures {
    double tokens = NAN, compute = NAN, teacher_tokens = NAN, robustness = NAN, robustness_general = NAN;
    double robustness_common = NAN;  // against the first method's teacher, whatever the model's own
    double teacher_alone = NAN, teacher_amortised = NAN, teacher_consumed = NAN, unlearn = NAN;
  };
  std::map<std::string, ModelFigures> figures;
  // The students that share one teacher pass: those of one cache (teacher and
  // signal). An online student runs the teacher itself.
  auto pass_of = [](const Job& j) {
    auto signal = j.tags.count("signal") ? j.tags.at("signal") : std::string();
    return signal == "online" ? j.id : j.tags.at("teacher") + "|" + signal;
  };
  std::map<std::string, int> students_per_pass;
  for (auto& j : plan.jobs)
    if (j.tags.count("role") && (j.tags.at("role") == "student" || j.tags.at("role") == "control"))
      students_per_pass[pass_of(j)]++;
  auto role_of = [](const Job& j) { return j.tags.count("role") ? j.tags.at("role") : std::string(); };
  auto attacked = [](const std::string& role) {
    return role == "base" || role == "oracle" || role == "unlearn" || role == "student" || role == "control";
  };
  for (auto& j : plan.jobs) {
    const std::string role = role_of(j);
    if (!attacked(role)) continue;
    if (!by_model.count(j.id) || missing_attacks.count(j.id)) continue;
    const std::string method = j.tags.count("method") ? j.tags.at("method") : "";
    ModelFigures f;
    f.tokens = summary_number(j, "tokens");
    f.compute = role == "base" ? NAN : f.tokens / oracle_tokens;
    if (role == "student" || role == "control") {
      // Compute, honestly: the teacher's forward pass (1/3 of a training token's
      // FLOPs per token), alone and shared by the students of one cache, and the
      // unlearning that made the teacher.
      f.teacher_tokens = summary_number(j, "teacher_forward_tokens");
      f.teacher_alone = f.teacher_tokens / 3 / oracle_tokens;
      f.teacher_amortised = f.teacher_alone / std::max(1, students_per_pass[pass_of(j)]);
      // What it consumed: the teacher at each of its own training positions (a cached row read, or an
      // online forward), whatever share of the cache it read.
      f.teacher_consumed = std::min(f.tokens, f.teacher_tokens) / 3 / oracle_tokens;
      const Job* teacher = role == "student" ? find_role("unlearn", method, replicate_of(j)) : nullptr;
      f.unlearn = teacher ? summary_number(*teacher, "tokens") / oracle_tokens : 0.0;
    }
    // Robustness: where the worst-case forget metric sits between the unlearned
    // teacher (0) and the oracle (1) after the full attack. The control and the
    // base belong to no method: they are measured against the first method's
    // teacher (the base so, as the support rules' sanity check: it must score near 0).
    // Each replicate against its own teacher and oracle.
    const bool methodless = role == "control" || role == "base";
    const std::string rep = replicate_of(j);
    const Job* unlearn = methodless          ? find_role("unlearn", "", rep)
                         : method.empty()    ? nullptr
                                             : find_role("unlearn", method, rep);
    const Job* own_oracle = find_role("oracle", "", rep);
    if (unlearn && own_oracle && worst_final.count(unlearn->id) && worst_final.count(own_oracle->id)) {
      f.robustness = robustness_between(worst_final[j.id], worst_final[unlearn->id], worst_final[own_oracle->id]);
      f.robustness_general =
          robustness_between(worst_general[j.id], worst_general[unlearn->id], worst_general[own_oracle->id]);
    }
    const Job* reference = find_role("unlearn", "", rep);
    if (reference && own_oracle && worst_final.count(reference->id) && worst_final.count(own_oracle->id))
      f.robustness_common =
          robustness_between(worst_final[j.id], worst_final[reference->id], worst_final[own_oracle->id]);
    if (role == "oracle") f.robustness = 1, f.robustness_general = 1, f.robustness_common = 1;
    figures[j.id] = f;
  }
  // Mean and 95% bootstrap interval of robustness over the replicates of each
  // configuration: one value per pipeline replicate (the mean over its student
  // seeds) where the sweep has replicates, else one per student seed.
  auto config_of = [&](const Job& j) {
    auto tag = [&](const char* k) { return j.tags.count(k) ? j.tags.at(k) : std::string(); };
    return role_of(j) + "|" + tag("method") + "|" + tag("alpha") + "|" + tag("beta") + "|" + tag("signal");
  };
  const bool by_replicate = plan.spec.replicates > 1;
  auto intervals_of = [&](double ModelFigures::*figure) {
    std::map<std::string, std::map<std::string, std::vector<double>>> values_of;  // config -> replicate or seed -> values
    for (auto& j : plan.jobs)
      if (figures.count(j.id) && std::isfinite(figures[j.id].*figure))
        values_of[config_of(j)][by_replicate ? replicate_of(j) : j.id].push_back(figures[j.id].*figure);
    std::map<std::string, ReplicateFigures> interval_of;
    for (auto& [c, groups] : values_of) {
      std::vector<double> values;
      for (auto& [g, v] : groups) values.push_back(std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()));
      interval_of[c] = replicate_figures(values);
    }
    return interval_of;
  };
  const auto interval_of = intervals_of(&ModelFigures::robustness);
  const auto common_interval_of = intervals_of(&ModelFigures::robustness_common);

  std::vector<ResultRow> rows;
  std::vector<CurveRow> curves;
  for (auto& j : plan.jobs) {
    const std::string role = role_of(j);
    if (!attacked(role)) continue;
    if (!figures.count(j.id)) {
      ++skipped;
      continue;
    }
    const ModelFigures& f = figures[j.id];
    auto tag = [&](const char* k) { return j.tags.count(k) ? j.tags.at(k) : std::string(); };
    auto found = interval_of.find(config_of(j));
    const ReplicateFigures reps = found != interval_of.end() ? found->second : ReplicateFigures{};
    const Interval& ci = reps.ci;
    ResultRow base;
    base.model = j.name, base.role = role, base.method = tag("method"), base.alpha = tag("alpha");
    base.beta = tag("beta"), base.signal = tag("signal"), base.seed = tag("seed"), base.metric = metric;
    base.train_tokens = f.tokens, base.compute_vs_oracle = f.compute, base.teacher_forward_tokens = f.teacher_tokens;
    base.teacher_compute_alone = f.teacher_alone, base.teacher_compute_amortised = f.teacher_amortised;
    base.unlearn_compute = f.unlearn;
    base.total_compute_alone = f.compute + f.teacher_alone + f.unlearn;
    base.total_compute_amortised = f.compute + f.teacher_amortised + f.unlearn;
    base.total_compute_consumed = f.compute + f.teacher_consumed + f.unlearn;
    base.worst_forget_final = worst_final[j.id], base.robustness = f.robustness;
    base.robustness_general = f.robustness_general;
    base.robustness_common = f.robustness_common;
    if (auto c = common_interval_of.find(config_of(j)); c != common_interval_of.end())
      base.robustness_common_mean = c->second.ci.mean, base.robustness_common_ci_lo = c->second.ci.lo,
      base.robustness_common_ci_hi = c->second.ci.hi;
    base.selected_on = selected_on(by_model[j.id], metric);
    base.robustness_mean = ci.mean, base.robustness_ci_lo = ci.lo, base.robustness_ci_hi = ci.hi;
    base.robustness_seeds = ci.n, base.eval_per_op_format = eval_per_op, base.eval_windows = double(eval_windows);
    base.robustness_min = reps.min, base.robustness_max = reps.max, base.replicates_vary = replicates_vary(plan.spec);
    base.replicate = replicate_of(j);
    base.attack_forget_share = attack_forget_share;
    if (role == "student" || role == "control") {
      base.stop_metric = summary_text(j, "stop_metric");
      base.stopped_at = summary_number(j, "stopped_at");
    }
    const std::string r = retain_metric_of(metric);
    for (auto& [lr, pts] : by_model_lr[j.id]) {
      auto curve = worst_case(pts, metric);  // one LR: its own curve, by step
      const auto &b = worst_at_or_before(curve, 0), &m = worst_at_or_before(curve, 40), &e = curve.back();
      ResultRow row = base;
      row.attack_lr = lr;
      row.forget_before = metric_at(b, metric), row.retain_before = metric_at(b, r);
      row.forget_after40 = metric_at(m, metric), row.retain_after40 = metric_at(m, r);
      row.forget_final = metric_at(e, metric), row.retain_final = metric_at(e, r);
      row.forget_before_se = metric_at(b, "se_" + metric);
      row.forget_final_val = metric_at(e, validation_metric_of(metric));
      row.forget_before_general = metric_at(b, generalisation_metric_of(metric));
      row.attack_steps = double(e.step);
      rows.push_back(std::move(row));
    }
    for (auto& p : worst_case(by_model[j.id], metric))
      curves.push_back({j.name, role, base.method, base.alpha, double(p.step), p.worst_lr, metric_at(p, metric),
                        metric_at(p, r)});
  }
  // Each row carries the support rules' marks on its figure (results/support.h).
  const Support support = judge_results(rows);
  for (auto& row : rows) row.support = figure_mark(support, row);
  write_output_file(plan.out + "/results.csv", results_csv(rows));
  write_output_file(plan.out + "/curves.csv", curves_csv(curves));
  std::cerr << "sweep: wrote " << plan.out << "/results.csv and curves.csv"
            << (skipped ? " (" + std::to_string(skipped) + " model(s) left out: attacks not all done)" : "") << "\n";
  return skipped;
}

}  // namespace undo
