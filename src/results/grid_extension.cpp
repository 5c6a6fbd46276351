#include "results/grid_extension.h"

#include <cmath>
#include <map>

#include "core/config.h"

namespace undo {
namespace {

// Whether the attack at one LR ended with its retain CE worse than a uniform
// guess over `vocab` tokens (the model broke on what it was meant to keep).
bool retain_broken(const std::vector<AttackPoint>& lr_points, int64_t vocab) {
  if (lr_points.empty() || vocab <= 0) return false;
  auto retain = lr_points.back().metrics.find("retain_ce");
  return retain != lr_points.back().metrics.end() && retain->second > std::log(double(vocab));
}

}  // namespace

void GridExtension::add_to(JsonObject& summary) const {
  summary.add("grid_extension", outcome).add("grid_doublings", doublings);
  if (retain_broken_lrs.empty()) return;
  std::string lrs;
  for (double lr : retain_broken_lrs) lrs += (lrs.empty() ? "" : ",") + format_double(lr);
  summary.add("retain_broken_lrs", lrs);
}

GridExtension extend_grid(const GridExtensionRule& rule, const std::vector<AttackPoint>& grid,
                          std::vector<AttackPoint>& points,
                          const std::function<std::vector<AttackPoint>(double)>& attack) {
  std::vector<AttackPoint> all = grid;
  all.insert(all.end(), points.begin(), points.end());
  const std::string metric = rule.metric.empty() ? attack_metric(all) : rule.metric;
  GridExtension ext;
  // The grid's own LRs may have broken the model too: say so with the extension's.
  std::map<double, std::vector<AttackPoint>> by_lr;
  for (auto& p : all) by_lr[p.lr].push_back(p);
  for (auto& [lr, lr_points] : by_lr)
    if (retain_broken(lr_points, rule.vocab)) ext.retain_broken_lrs.push_back(lr);
  for (;; ++ext.doublings) {
    const GridEdge edge = grid_edge(all, metric);
    if (!edge.censored()) break;
    if (ext.doublings == rule.max_doublings) {
      ext.outcome = "limit";  // the report marks the figure "censored at grid edge"
      break;
    }
    const double lr = 2 * edge.largest_lr;
    auto more = attack(lr);
    all.insert(all.end(), more.begin(), more.end());
    points.insert(points.end(), more.begin(), more.end());
    if (retain_broken(more, rule.vocab)) ext.retain_broken_lrs.push_back(lr);
    const std::string why = attack_divergence(more);
    if (!why.empty()) {
      ext.outcome = "diverged at LR " + format_double(lr) + ": " + why;
      ++ext.doublings;
      break;
    }
  }
  return ext;
}

}  // namespace undo
