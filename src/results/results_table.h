// The results of a sweep as typed rows, and their one CSV spelling: what
// `undo sweep collect` writes (OUT/results.csv, OUT/curves.csv) and what
// `undo report` and the dashboard read back. Each column is declared once,
// with its row field, so that the writer and the readers cannot drift apart
// (the report used to read the CSV back by column-name strings). Torch-free.
#pragma once
#include <cmath>
#include <string>
#include <vector>

namespace undo {

// One attacked model at one attack LR.
struct ResultRow {
  // What the model is (sweep job tags; "" where they do not apply).
  std::string model, role, method, alpha, beta, signal, seed;
  std::string replicate;  // the pipeline replicate it belongs to (sweep.replicates; "" before the column)
  double attack_lr = NAN;
  std::string metric;  // the forget metric robustness is judged on
  // The forget and retain metrics before the attack, after 40 steps and at its end.
  double forget_before = NAN, retain_before = NAN, forget_after40 = NAN, retain_after40 = NAN;
  double forget_final = NAN, retain_final = NAN;
  double forget_before_se = NAN;  // the test forget metric's standard error before the attack
  double forget_final_val = NAN;  // the validation forget metric at the attack's end (what selection used)
  std::string selected_on;        // "validation", or "test" for curves from before validation sets
  double attack_steps = NAN;
  double attack_forget_share = NAN;  // of the forget tokens pretraining saw, that the whole attack replays
  // Compute relative to the oracle's pretraining tokens.
  double train_tokens = NAN, compute_vs_oracle = NAN, teacher_forward_tokens = NAN;
  double teacher_compute_alone = NAN, teacher_compute_amortised = NAN, unlearn_compute = NAN;
  double total_compute_alone = NAN, total_compute_amortised = NAN;
  double total_compute_consumed = NAN;  // the teacher charged only for the positions this student read
  // The worst case over the model's attack LRs, its robustness, and the mean,
  // 95% bootstrap interval and range over the replicates of its configuration.
  double worst_forget_final = NAN, robustness = NAN, robustness_mean = NAN, robustness_ci_lo = NAN,
         robustness_ci_hi = NAN, robustness_seeds = NAN, robustness_min = NAN, robustness_max = NAN;
  // The same on the generalisation set (held-out operands), reported beside,
  // and the model's generalisation forget metric before the attack.
  double robustness_general = NAN, forget_before_general = NAN;
  // Robustness against one reference for every model: the first method's teacher (and the oracle), so
  // that teachers of different methods, attacked as they are, and their students compare on one scale.
  // For the first method's models it equals `robustness`. Mean and 95% interval over replicates beside.
  double robustness_common = NAN, robustness_common_mean = NAN, robustness_common_ci_lo = NAN,
         robustness_common_ci_hi = NAN;
  std::string replicates_vary;  // what differs between the replicates ("student seed")
  // How much the evaluation scored.
  double eval_per_op_format = NAN, eval_windows = NAN;
  // A distilled model's stopping rule: its metric ("none": a fixed budget) and
  // the step it was met at (0: never, the whole budget ran).
  std::string stop_metric;
  double stopped_at = NAN;
  // The support rules' marks on this row's robustness ("" = bare; results/support.h).
  std::string support;
};

// One point of a model's worst-case relearning curve.
struct CurveRow {
  std::string model, role, method, alpha;
  double step = NAN, worst_lr = NAN, forget = NAN, retain = NAN;
};

std::string results_csv(const std::vector<ResultRow>& rows);
std::string curves_csv(const std::vector<CurveRow>& rows);

// The tables read back. A file written before a column existed reads it as
// NaN or ""; the columns every version wrote are required. Errors name the
// file, line and column (results/csv_table.h).
std::vector<ResultRow> read_results_csv(const std::string& path);
std::vector<CurveRow> read_curves_csv(const std::string& path);
std::vector<ResultRow> parse_results_csv(const std::string& text, const std::string& source);

// A number as the report and the dashboard show it: fixed `digits`, never
// "-0.000", "-" for NaN.
std::string format_cell(double v, int digits = 3);

}  // namespace undo
