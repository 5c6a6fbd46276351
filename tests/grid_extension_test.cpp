// The attack grid's extension rule (results/grid_extension.h), on attacks
// made up by hand: which LRs it attacks, what ends it, and that the support
// rules' grid-edge check reads a diverged LR as the extension does.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "results/grid_extension.h"
#include "results/results_table.h"
#include "results/support.h"

namespace undo {
namespace {

// An attack whose final forget CE at each LR is given (NaN: the run diverged),
// with a validation figure equal to it and a retain CE of `retain(lr)`.
struct MadeUpAttack {
  std::map<double, double> forget;  // by LR; an LR not listed is not expected to be attacked
  std::function<double(double)> retain = [](double) { return 4.0; };
  std::vector<double> attacked;
  std::vector<AttackPoint> operator()(double lr) {
    attacked.push_back(lr);
    EXPECT_TRUE(forget.count(lr)) << "attacked at an unexpected LR " << lr;
    AttackPoint p;
    p.lr = lr, p.seed = 1, p.step = 500;
    const double f = forget.count(lr) ? forget.at(lr) : NAN;
    p.metrics = {{"forget_ce", f}, {"val_forget_ce", f}, {"retain_ce", std::isnan(f) ? NAN : retain(lr)}};
    return {p};
  }
};

std::vector<AttackPoint> attack_all(MadeUpAttack& a, const std::vector<double>& lrs) {
  std::vector<AttackPoint> out;
  for (double lr : lrs) {
    auto p = a(lr);
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

const GridExtensionRule kRule{"forget_ce", 4, 2048};  // ln 2048 = 7.62

}  // namespace

// A retain CE worse than uniform does not end the extension: the oracle of
// session 16's 500-step attack broke its English at 6e-3 and still relearned
// most Korean there; at 1.2e-2 it relearns less, and that puts its worst LR
// inside the grid.
TEST(GridExtension, ARetainBrokenLrIsStillAnAttackAndTheExtensionGoesOn) {
  MadeUpAttack a;
  a.forget = {{1e-3, 5.20}, {3e-3, 4.97}, {6e-3, 4.96}, {1.2e-2, 5.40}};
  a.retain = [](double lr) { return lr >= 6e-3 ? 8.5 : 6.0; };
  auto points = attack_all(a, {1e-3, 3e-3});
  const GridExtension ext = extend_grid(kRule, {}, points, std::ref(a));
  EXPECT_EQ(a.attacked, (std::vector<double>{1e-3, 3e-3, 6e-3, 1.2e-2}));
  EXPECT_EQ(ext.outcome, "interior");
  EXPECT_EQ(ext.doublings, 2);
  EXPECT_EQ(ext.retain_broken_lrs, (std::vector<double>{6e-3, 1.2e-2}));
  EXPECT_FALSE(grid_edge(points, "forget_ce").censored());
  EXPECT_DOUBLE_EQ(grid_edge(points, "forget_ce").worst_lr, 6e-3);
  JsonObject summary;
  ext.add_to(summary);
  EXPECT_EQ(summary.str(), R"({"grid_extension": "interior", "grid_doublings": 2, "retain_broken_lrs": "0.006,0.012"})");
}

// A run that diverges (a metric that is not a number) ends the extension; it is
// never the worst case, so the LR below it is inside the grid.
TEST(GridExtension, ADivergedRunEndsItWithTheWorstLrInside) {
  MadeUpAttack a;
  a.forget = {{1e-3, 5.2}, {2e-3, 5.0}, {4e-3, NAN}};
  auto points = attack_all(a, {1e-3, 2e-3});
  const GridExtension ext = extend_grid(kRule, {}, points, std::ref(a));
  EXPECT_TRUE(ext.diverged());
  EXPECT_EQ(ext.outcome.rfind("diverged at LR 0.004: ", 0), 0u) << ext.outcome;
  EXPECT_EQ(ext.doublings, 1);
  const GridEdge edge = grid_edge(points, "forget_ce");
  EXPECT_DOUBLE_EQ(edge.worst_lr, 2e-3);
  EXPECT_FALSE(edge.censored());
}

// At relearn.extend doublings it stops with the worst case still at the top:
// "limit", which the report marks. The grid attacked by other runs (a sweep's
// per-LR jobs) counts as this run's own.
TEST(GridExtension, ItStopsAtItsLimitAndReadsTheGridOfOtherRuns) {
  MadeUpAttack a;
  a.forget = {{1e-4, 6.0}, {2e-4, 5.0}, {4e-4, 4.5}, {8e-4, 4.0}};
  const std::vector<AttackPoint> grid = attack_all(a, {1e-4, 2e-4});
  a.attacked.clear();
  std::vector<AttackPoint> points;
  const GridExtension ext = extend_grid({"", 2, 2048}, grid, points, std::ref(a));
  EXPECT_EQ(a.attacked, (std::vector<double>{4e-4, 8e-4}));
  EXPECT_EQ(ext.outcome, "limit");
  EXPECT_EQ(ext.doublings, 2);
  EXPECT_EQ(points.size(), 2u);
  EXPECT_TRUE(ext.retain_broken_lrs.empty());
  // An interior grid attacks nothing.
  MadeUpAttack none;
  points = grid;
  points[1].metrics["val_forget_ce"] = 7.0;  // chosen on validation: the smaller LR is the worst
  EXPECT_EQ(extend_grid(kRule, {}, points, std::ref(none)).outcome, "interior");
  EXPECT_TRUE(none.attacked.empty());
}

// The support rules' grid-edge check on a results table agrees with the
// extension: a diverged LR's row (NaN on test and validation) at the top of a
// model's grid leaves the model uncensored, judged on validation still.
TEST(GridExtension, TheResultsTablesGridEdgeReadsADivergedRowAsTheExtensionDoes) {
  std::vector<ResultRow> rows;
  for (auto [lr, f] : std::vector<std::pair<double, double>>{{1e-3, 5.2}, {2e-3, 5.0}, {4e-3, NAN}}) {
    ResultRow r;
    r.model = "oracle", r.role = "oracle", r.attack_lr = lr, r.attack_steps = 500, r.metric = "forget_ce";
    r.forget_final = f, r.forget_final_val = f, r.selected_on = "validation";
    rows.push_back(r);
  }
  SweepEvidence e = evidence_of(rows, "forget_ce");
  EXPECT_TRUE(e.censored.empty()) << e.censored.front();
  rows.pop_back();  // without the diverged LR, 2e-3 is the top of the grid
  e = evidence_of(rows, "forget_ce");
  EXPECT_EQ(e.censored, std::vector<std::string>{"oracle"});
}

}  // namespace undo
