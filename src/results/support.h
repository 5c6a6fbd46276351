// The support rules: whether a sweep's measurements can carry the robustness
// figures it reports. This is the one implementation; `undo sweep collect`
// (results.csv's `support` column), `undo report` (report.md and the charts),
// the dashboard and `undo sweep plan`/`run` (before the first job) all ask it.
//
// A robustness figure is printed bare only when every rule holds:
//  - attack strength: the attack makes the oracle relearn, so that "did not
//    relearn" means something (else every figure is withheld);
//  - base sanity: the attacked base scores near 0, as a model that never
//    unlearned must (a "robust" base means the metric cannot separate models);
//  - base competence: before the attack the base is clearly off the floor on
//    the forget metric (its gap to the oracle, against a stated threshold):
//    robustness is measured in that gap, and a gap of noise measures nothing;
//  - validation apart: the attack's worst LR was chosen on validation figures,
//    never on the test figures reported;
//  - grid edge: every attacked model's worst LR lies inside its grid, not at
//    its top, where the true worst case may lie above it;
//  - replication: at least 5 independent replicates per configuration (and
//    intervals are "n = 3, range" below that, never "95% interval");
//  - the attack and the evaluation are large enough (LRs, steps, problems or
//    windows; the test figure's standard error small against the base-oracle
//    gap);
//  - stopping rule: a student that never met its stopping rule is marked, on
//    its own row.
// A figure that fails a rule is shown with the rule's mark, never bare.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace undo {

struct SupportThresholds {
  int min_attack_lrs = 5;             // the paper sweeps 10
  int min_attack_steps = 100;         // the paper attacks for 500
  int min_replicates = 5;             // independent replicates per configuration (the paper: seeds 111-555)
  int min_eval_per_op_format = 100;   // arithmetic problems: the spec's 100 equations + 100 word problems
  int64_t min_eval_windows = 64;      // text CE: evaluation windows per stream
  double min_oracle_gain_acc = 0.10;  // the oracle's forget accuracy must rise by this much (absolute)
  double min_oracle_drop_ce = 0.10;   // or its forget CE (text or answer) fall by this fraction
  double max_base_robustness = 0.2;   // |robustness| of the attacked base: a model that never unlearned
  double min_base_gap_acc = 0.2;      // base's forget accuracy above the oracle's before the attack (absolute)
  double min_base_gap_ce = 0.1;       // or its forget CE below the oracle's by this fraction
  double max_se_of_gap = 0.1;         // the test forget metric's standard error, against the base-oracle gap
};

// What results.csv's replicates_vary says of replicates that reseed every
// stage (data order, base, oracle, unlearning, cache, students, attacks):
// these, and those below that share base and oracle, count as independent.
inline constexpr const char* kEveryStageVaries = "whole pipeline";
// Those that share replicate 1's base and oracle (sweep.replicate_shared =
// base_oracle): independent replicates of the method, from unlearning on.
inline constexpr const char* kAllButBaseOracleVaries = "unlearning onward (base and oracle shared)";
// Student seeds within one pipeline: the student's initialisation and data order alone.
inline constexpr const char* kStudentSeedVaries = "student seed";

struct SweepEvidence {
  // The forget metric: forget_acc (higher = relearned), forget_answer_ce or
  // forget_ce (lower = relearned). The first two score arithmetic problems.
  std::string metric = "forget_acc";
  double oracle_before = 0, oracle_after = 0;  // the oracle's forget metric before and after the worst attack
  bool has_oracle = false;
  double base_robustness = 0;  // the attacked base's, measured like a student's
  bool has_base = false;
  // The base's forget metric before the attack and its standard error on the test set (NaN: not measured).
  double base_before = NAN, base_before_se = NAN;
  std::string selected_on = "validation";  // what the attack's worst LR was chosen on ("test": old curves)
  int attack_lrs = 0, attack_steps = 0;
  int replicates = 0;               // per configuration, the fewest
  std::string varied = kStudentSeedVaries;  // what differs between replicates
  bool independent = false;         // whether replicates reseed the whole pipeline
  std::vector<std::string> censored;  // models whose worst LR is the largest of their grid
  int eval_per_op_format = 0;       // arithmetic problems only
  int64_t eval_windows = 0;
};

struct Support {
  bool attack_strong = false;       // false: robustness is withheld ("attack too weak to judge")
  std::string attack_note;          // how far the oracle relearned, against the threshold
  std::vector<std::string> failed;  // every other rule that fails, each with its measurement
  std::vector<std::string> marks;   // their short marks, shown beside each figure
  bool replicated = false;          // intervals may be called 95% intervals
  std::string varied;               // what the intervals span
  bool supported() const { return attack_strong && failed.empty(); }
};

// Robustness: where a model's worst-case forget metric `p` after the attack sits
// between the unlearned teacher's (0) and the oracle's (1); NaN where those two agree.
double robustness_between(double p, double p_unlearn, double p_oracle);

Support judge_support(const SweepEvidence& e, const SupportThresholds& t = {});
// The rules a spec can be judged on before anything runs (its grid, its
// replicates, its evaluation's size): one line each, empty when they hold.
std::vector<std::string> plan_support_gaps(const SweepEvidence& planned, const SupportThresholds& t = {});

struct ResultRow;
// The evidence a sweep's results table holds about itself.
SweepEvidence evidence_of(const std::vector<ResultRow>& results, const std::string& metric);
Support judge_results(const std::vector<ResultRow>& results);
// A student's or control's configuration, whose replicates are pooled.
std::string configuration_of(const ResultRow& r);

// What one row's robustness carries: "withheld", the failed rules' marks and
// the row's own (its stopping rule), or "" when it is printed bare.
std::string figure_mark(const Support& s, const ResultRow& r);
// A robustness value as shown: "0.48", "0.48 (censored at grid edge)", "withheld", "-".
std::string robustness_text(const Support& s, const ResultRow& r, double value, int digits = 2);
// The generalisation figure (held-out operands) beside a row's robustness: the
// headline's marks, and "base not competent" judged on the generalisation
// metric itself; "-" where the sweep did not measure it.
std::string general_robustness_text(const Support& s, const std::vector<ResultRow>& results, const ResultRow& r,
                                    const SupportThresholds& t = {});
// A row's interval over its configuration's replicates: "[0.46, 0.50] (95%, n = 5)",
// "range [0.46, 0.50] (n = 3)", or "-".
std::string interval_text(const Support& s, const ResultRow& r);
// The same for any figure's replicate count, 95% bounds and range (NaN: not known).
std::string interval_text(const Support& s, double replicates, double lo, double hi, double min, double max);
// The verdict as sentences, for the top of report.md and of the dashboard.
std::string support_summary(const Support& s);

}  // namespace undo
