// OUT/report/index.html: one self-contained page that follows a sweep. Every
// job with its state (done; running with its progress and an estimated time
// left; queued; failed with its log's tail; waiting; blocked), links to each
// job's config.ini, metrics and log, the results table (sortable by any
// column, robustness with its interval, withheld or marked exactly as the
// report does), and the report's relearning and compute-vs-robustness charts
// inline. While jobs run the page reloads itself; `undo sweep status --watch`
// rewrites it as they go, and `undo report` and `undo sweep run` at the end.
#pragma once
#include <cmath>
#include <string>

#include "sweep/plan.h"

namespace undo {

// How far a running job is, from its run directory: the training stages'
// last logged step against train.steps of their config.ini, an attack's
// finished runs against its LRs x seeds. NaN where unknown; `eta_s` from the
// time since its job.running marker.
struct JobProgress {
  double fraction = NAN, eta_s = NAN;
};
JobProgress job_progress(const Job& job);

// The page for `plan`'s jobs, with OUT/results.csv and OUT/report/*.svg where
// they exist.
std::string dashboard_html(const Plan& plan);
// Writes it to OUT/report/index.html (atomically); returns the path.
std::string write_dashboard(const Plan& plan);

}  // namespace undo
