#include "results/results_table.h"

#include <cstdint>
#include <cstdlib>
#include <set>
#include <sstream>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "results/csv_table.h"

namespace undo {
namespace {

// A column: its name, the row field it holds (text or number), whether its
// numbers are whole (written without an exponent), and whether every
// results.csv ever written has it.
template <typename Row>
struct Column {
  const char* name;
  std::string Row::*text = nullptr;
  double Row::*number = nullptr;
  bool whole = false;
  bool required = true;
};
template <typename Row>
Column<Row> text(const char* name, std::string Row::*f, bool required = true) {
  return {name, f, nullptr, false, required};
}
template <typename Row>
Column<Row> real(const char* name, double Row::*f, bool required = true) {
  return {name, nullptr, f, false, required};
}
template <typename Row>
Column<Row> whole(const char* name, double Row::*f, bool required = true) {
  return {name, nullptr, f, true, required};
}

using R = ResultRow;
const std::vector<Column<R>>& result_columns() {
  static const std::vector<Column<R>> c = {
      text("model", &R::model), text("role", &R::role), text("method", &R::method), text("alpha", &R::alpha),
      text("beta", &R::beta), text("signal", &R::signal, false), text("seed", &R::seed),
      real("attack_lr", &R::attack_lr), text("metric", &R::metric), real("forget_before", &R::forget_before),
      real("retain_before", &R::retain_before), real("forget_after40", &R::forget_after40),
      real("retain_after40", &R::retain_after40), real("forget_final", &R::forget_final),
      real("retain_final", &R::retain_final), whole("attack_steps", &R::attack_steps),
      whole("train_tokens", &R::train_tokens, false), real("compute_vs_oracle", &R::compute_vs_oracle),
      real("teacher_forward_tokens", &R::teacher_forward_tokens, false),
      real("teacher_compute_alone", &R::teacher_compute_alone, false),
      real("teacher_compute_amortised", &R::teacher_compute_amortised, false),
      real("unlearn_compute", &R::unlearn_compute, false), real("total_compute_alone", &R::total_compute_alone),
      real("total_compute_amortised", &R::total_compute_amortised),
      real("worst_forget_final", &R::worst_forget_final), real("robustness", &R::robustness),
      real("robustness_mean", &R::robustness_mean), real("robustness_ci_lo", &R::robustness_ci_lo),
      real("robustness_ci_hi", &R::robustness_ci_hi), whole("robustness_seeds", &R::robustness_seeds),
      whole("eval_per_op_format", &R::eval_per_op_format, false), whole("eval_windows", &R::eval_windows, false),
      real("robustness_min", &R::robustness_min, false), real("robustness_max", &R::robustness_max, false),
      text("replicates_vary", &R::replicates_vary, false), text("stop_metric", &R::stop_metric, false),
      whole("stopped_at", &R::stopped_at, false), text("support", &R::support, false),
      real("attack_forget_share", &R::attack_forget_share, false),
      real("total_compute_consumed", &R::total_compute_consumed, false),
      real("forget_before_se", &R::forget_before_se, false), real("forget_final_val", &R::forget_final_val, false),
      text("selected_on", &R::selected_on, false), real("robustness_general", &R::robustness_general, false),
      real("forget_before_general", &R::forget_before_general, false), text("replicate", &R::replicate, false),
      real("robustness_common", &R::robustness_common, false),
      real("robustness_common_mean", &R::robustness_common_mean, false),
      real("robustness_common_ci_lo", &R::robustness_common_ci_lo, false),
      real("robustness_common_ci_hi", &R::robustness_common_ci_hi, false)};
  return c;
}

using C = CurveRow;
const std::vector<Column<C>>& curve_columns() {
  static const std::vector<Column<C>> c = {
      text("model", &C::model),       text("role", &C::role, false), text("method", &C::method, false),
      text("alpha", &C::alpha, false), whole("step", &C::step),      real("worst_lr", &C::worst_lr, false),
      real("forget", &C::forget),     real("retain", &C::retain, false)};
  return c;
}

template <typename Row>
std::string write_table(const std::vector<Column<Row>>& columns, const std::vector<Row>& rows) {
  std::string out;
  for (size_t i = 0; i < columns.size(); ++i) out += (i ? "," : "") + std::string(columns[i].name);
  out += "\n";
  for (auto& r : rows) {
    for (size_t i = 0; i < columns.size(); ++i) {
      const auto& c = columns[i];
      if (i) out += ",";
      if (c.text) {
        // Plain cells (results/csv_table.h): a writer that breaks that is a bug, not bad input.
        const std::string& cell = r.*c.text;
        UNDO_CHECK(cell.find_first_of(",\"\n\r") == std::string::npos, "column ", c.name, ": cell '", cell,
                   "' holds a comma, a quote or a newline");
        out += cell;
      } else if (double v = r.*c.number; std::isfinite(v)) {
        out += c.whole ? std::to_string(int64_t(v)) : format_double(v);
      }
    }
    out += "\n";
  }
  return out;
}

template <typename Row>
std::vector<Row> read_table(const std::vector<Column<Row>>& columns, const std::string& text_in,
                            const std::string& source) {
  std::vector<std::string> required;
  std::set<std::string> text_columns;
  for (auto& c : columns) {
    if (c.required) required.push_back(c.name);
    if (c.text) text_columns.insert(c.name);
  }
  std::vector<Row> rows;
  for (auto& cells : parse_csv(text_in, source, required, text_columns)) {
    Row r;
    for (auto& c : columns) {
      auto it = cells.find(c.name);
      if (it == cells.end()) continue;  // an older file without this optional column
      if (c.text) r.*c.text = it->second;
      else r.*c.number = it->second.empty() ? NAN : std::strtod(it->second.c_str(), nullptr);  // checked numeric
    }
    rows.push_back(std::move(r));
  }
  return rows;
}

}  // namespace

std::string results_csv(const std::vector<ResultRow>& rows) { return write_table(result_columns(), rows); }
std::string curves_csv(const std::vector<CurveRow>& rows) { return write_table(curve_columns(), rows); }

std::vector<ResultRow> parse_results_csv(const std::string& text, const std::string& source) {
  return read_table(result_columns(), text, source);
}

std::vector<ResultRow> read_results_csv(const std::string& path) {
  UNDO_INPUT_CHECK(file_exists(path), "'", path, "' is missing: run `undo sweep collect` first");
  return parse_results_csv(read_file(path), path);
}

std::string format_cell(double v, int digits) {
  if (!std::isfinite(v)) return "-";
  v += 0.0;  // no "-0.000"
  if (std::abs(v) < 0.5 * std::pow(10.0, -digits)) v = 0;
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(digits);
  os << v;
  return os.str();
}

std::vector<CurveRow> read_curves_csv(const std::string& path) {
  UNDO_INPUT_CHECK(file_exists(path), "'", path, "' is missing: run `undo sweep collect` first");
  return read_table(curve_columns(), read_file(path), path);
}

}  // namespace undo
