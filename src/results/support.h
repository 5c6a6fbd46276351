// Whether a sweep's results can support the robustness figures it reports.
// A figure is printed bare only when (1) the attack was strong enough to make
// the oracle relearn, so that "did not relearn" means something, and (2) the
// attack grid, the seeds and the evaluation are large enough for the number to
// be more than noise. Otherwise the report still shows the number, marked
// "unsupported" with the reasons, or withholds it when the attack is too weak.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace undo {

struct SupportThresholds {
  int min_attack_lrs = 5;             // the paper sweeps 10
  int min_attack_steps = 100;         // the paper attacks for 500
  int min_seeds = 3;                  // student seeds per configuration
  int min_eval_per_op_format = 100;   // arithmetic problems: the spec's 100 equations + 100 word problems
  int64_t min_eval_windows = 64;      // text CE: validation windows per stream
  double min_oracle_gain_acc = 0.10;  // the oracle's forget accuracy must rise by this much (absolute)
  double min_oracle_drop_ce = 0.10;   // or its forget CE (text or answer) fall by this fraction
};

struct SweepEvidence {
  // The forget metric: forget_acc (higher = relearned), forget_answer_ce or
  // forget_ce (lower = relearned). The first two score arithmetic problems.
  std::string metric = "forget_acc";
  double oracle_before = 0, oracle_after = 0;  // the oracle's forget metric before and after the worst attack
  bool has_oracle = false;
  int attack_lrs = 0, attack_steps = 0, seeds = 0;
  int eval_per_op_format = 0;       // arithmetic problems only
  int64_t eval_windows = 0;
};

struct Support {
  bool attack_strong = false;       // false: robustness is withheld ("attack too weak to judge")
  std::string attack_note;          // how far the oracle relearned, against the threshold
  std::vector<std::string> gaps;    // what else is too small (empty: supported)
  bool supported() const { return attack_strong && gaps.empty(); }
};

Support judge_support(const SweepEvidence& e, const SupportThresholds& t = {});

struct ResultRow;
// The evidence a sweep's results table holds about itself: the oracle's
// relearning, the attack grid, the seeds per student configuration and the
// evaluation's size.
SweepEvidence evidence_of(const std::vector<ResultRow>& results, const std::string& metric);
// A student's or control's configuration, whose seeds are pooled.
std::string configuration_of(const ResultRow& r);

}  // namespace undo
