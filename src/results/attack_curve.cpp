#include "results/attack_curve.h"

#include <algorithm>
#include <cmath>

#include "core/config.h"
#include "core/error.h"

namespace undo {

JsonObject AttackPoint::to_json() const {
  JsonObject o;
  if (lr > 0) o.add("lr", lr).add("seed", seed);
  else o.add("worst_lr", worst_lr);
  o.add("step", step);
  for (auto& [k, v] : metrics) o.add(k, v);
  return o;
}

AttackPoint AttackPoint::from_json(const std::map<std::string, std::string>& line) {
  AttackPoint p;
  for (auto& [k, v] : line) {
    // The coordinates are whole and finite; a metric may be NaN (a diverged run).
    if (k == "lr") p.lr = parse_real(k, v, 0);
    else if (k == "seed") p.seed = parse_integer(k, v, 0);
    else if (k == "step") p.step = parse_integer(k, v, 0);
    else if (k == "worst_lr") p.worst_lr = parse_real(k, v, 0);
    else if (k != "tokens" && k != "time") p.metrics[k] = json_number(k, v);  // when, not what was measured
  }
  return p;
}

std::vector<AttackPoint> read_attack_points(const std::string& path) {
  std::vector<AttackPoint> points;
  int n = 0;
  for (auto& line : read_json_lines(path)) {
    ++n;
    try {
      points.push_back(AttackPoint::from_json(line));
    } catch (const InputError& e) {
      UNDO_INPUT_FAIL("'", path, "', evaluation ", n, ": ", e.what());
    }
  }
  return points;
}

std::string attack_metric(const std::vector<AttackPoint>& points) {
  for (auto& p : points)
    if (p.metrics.count("forget_acc")) return "forget_acc";
  return "forget_ce";
}

const std::vector<std::string>& forget_metrics() {
  static const std::vector<std::string> m = {"forget_acc", "forget_answer_ce", "forget_ce", "forget_mcq_acc"};
  return m;
}

bool relearned_when_higher(const std::string& metric) {
  return metric.size() >= 4 && metric.compare(metric.size() - 4, 4, "_acc") == 0;
}

std::string retain_metric_of(const std::string& forget_metric) {
  UNDO_CHECK(forget_metric.rfind("forget_", 0) == 0, "'", forget_metric, "' is not a forget metric");
  return "retain_" + forget_metric.substr(7);
}

std::string validation_metric_of(const std::string& metric) {
  std::string m = metric;
  if (auto at = m.find("_gen_"); at != std::string::npos) m.erase(at, 4);
  return "val_" + m;
}

std::string selected_on(const std::vector<AttackPoint>& points, const std::string& metric) {
  const std::string val = validation_metric_of(metric);
  for (auto& p : points)
    if (!p.metrics.count(val)) return "test";
  return points.empty() ? "test" : "validation";
}

std::string generalisation_metric_of(const std::string& metric) {
  if (metric.rfind("forget_", 0) != 0 && metric.rfind("retain_", 0) != 0) return "";
  const std::string what = metric.substr(7);
  if (what != "acc" && what != "answer_ce") return "";  // text CE has no generalisation set
  return metric.substr(0, 7) + "gen_" + what;
}

std::vector<AttackPoint> worst_case(const std::vector<AttackPoint>& points, std::string metric) {
  if (metric.empty()) metric = attack_metric(points);
  const bool higher_is_worse = relearned_when_higher(metric);  // worse for the defender
  const std::string chosen_on = selected_on(points, metric) == "validation" ? validation_metric_of(metric) : metric;
  std::map<int64_t, AttackPoint> by_step;
  for (auto& p : points) {
    auto it = p.metrics.find(chosen_on);
    if (it == p.metrics.end() || !p.metrics.count(metric)) continue;
    auto found = by_step.find(p.step);
    // A NaN (diverged) run is the attack only where every run diverged.
    const double v = it->second;
    const double held = found == by_step.end() ? NAN : found->second.metrics.at(chosen_on);
    bool better_attack = found == by_step.end() || (std::isnan(held) && !std::isnan(v)) ||
                         (higher_is_worse ? v > held : v < held);
    if (!better_attack) continue;
    AttackPoint w = p;
    w.worst_lr = p.lr;
    w.lr = 0;
    w.seed = 0;
    by_step[p.step] = w;
  }
  std::vector<AttackPoint> out;
  for (auto& [step, p] : by_step) out.push_back(p);
  return out;
}

JsonObject attack_point_metrics(const AttackPoint& p) {
  JsonObject m;
  m.add("step", p.step).add("worst_lr", p.worst_lr);
  for (auto& [k, v] : p.metrics)
    if (k.rfind("forget_", 0) == 0 || k.rfind("retain_", 0) == 0) m.add(k, v);
  return m;
}

const AttackPoint& worst_at_or_before(const std::vector<AttackPoint>& worst, int64_t step) {
  UNDO_CHECK(!worst.empty(), "no attack evaluations");
  const AttackPoint* best = &worst.front();
  for (auto& p : worst)
    if (p.step <= step) best = &p;
  return *best;
}

GridEdge grid_edge(const std::vector<AttackPoint>& points, const std::string& metric) {
  GridEdge e;
  for (auto& p : points) e.largest_lr = std::max(e.largest_lr, p.lr);
  auto worst = worst_case(points, metric);
  if (!worst.empty()) e.worst_lr = worst.back().worst_lr;
  return e;
}

std::string attack_divergence(const std::vector<AttackPoint>& lr_points) {
  if (lr_points.empty()) return "";
  const AttackPoint& last = lr_points.back();
  for (auto& [name, v] : last.metrics)
    if (!std::isfinite(v)) return name + " is " + std::to_string(v) + " at step " + std::to_string(last.step);
  return "";
}

}  // namespace undo
