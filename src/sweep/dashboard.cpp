#include "sweep/dashboard.h"

#include <sys/stat.h>

#include <ctime>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/config.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/owned_output.h"
#include "results/attack_curve.h"
#include "results/chart.h"
#include "results/results_table.h"
#include "results/support.h"
#include "sweep/state.h"

namespace undo {
namespace {

std::string duration(double s) {
  if (!std::isfinite(s)) return "";
  int64_t t = int64_t(s + 0.5);
  std::ostringstream os;
  if (t >= 3600) os << t / 3600 << " h " << (t % 3600) / 60 << " min";
  else if (t >= 60) os << t / 60 << " min " << t % 60 << " s";
  else os << t << " s";
  return os.str();
}

std::string link(const Job& j, const std::string& file) {
  // From OUT/report/index.html to OUT/jobs/<name>-<id>/FILE.
  if (!file_exists(j.dir + "/" + file)) return "";
  return "<a href=\"../jobs/" + xml_escape(j.name + "-" + j.id + "/" + file) + "\">" + xml_escape(file) + "</a>";
}

const char* kStyle = R"(
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th.sortable { cursor: pointer; background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.state { font-weight: bold; padding: 0 0.4em; border-radius: 0.3em; }
.done { background: #d4edda; } .running { background: #cce5ff; } .queued, .ready, .waiting { background: #eee; }
.failed, .blocked, .cut { background: #f8d7da; }
.bar { width: 8em; height: 0.8em; background: #eee; display: inline-block; }
.bar span { height: 100%; background: #3b7ddd; display: block; }
pre { margin: 0; white-space: pre-wrap; max-width: 60em; font-size: 0.85em; }
.note { background: #fff3cd; padding: 0.5em; max-width: 60em; }
.verdict { background: #d4edda; padding: 0.5em; max-width: 60em; }
)";

// Sorts a table by the clicked header: numbers as numbers, the rest as text.
const char* kScript = R"(
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.classList.add('sortable');
    th.addEventListener('click', function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var up = th.dataset.order !== 'up';
      th.dataset.order = up ? 'up' : 'down';
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v || a.cells[col].textContent, y = b.cells[col].dataset.v || b.cells[col].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return up ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
)";

std::string jobs_section(const Plan& plan, bool* active) {
  std::ostringstream os;
  std::map<std::string, int> counts;
  std::ostringstream rows;
  for (auto& j : plan.jobs) {
    auto s = job_status(plan, j);
    const std::string state = state_name(s.state);
    counts[state]++;
    if (s.state == JobState::Running || s.state == JobState::Queued) *active = true;
    std::string detail;
    if (s.state == JobState::Running) {
      auto p = job_progress(j);
      if (std::isfinite(p.fraction))
        detail = "<span class=\"bar\"><span style=\"width:" + format_cell(100 * p.fraction, 0) + "%\"></span></span> " +
                 format_cell(100 * p.fraction, 0) + "%" + (std::isfinite(p.eta_s) ? ", about " + duration(p.eta_s) + " left" : "");
      else
        detail = "started";
    } else if (s.state == JobState::Failed) {
      detail = "<pre>" + xml_escape(log_tail(j, 12)) + "</pre>";
    } else {
      detail = xml_escape(s.reason);
    }
    rows << "<tr id=\"job-" << xml_escape(j.id) << "\"><td><span class=\"state " << state << "\">" << state
         << "</span></td><td>" << xml_escape(j.name) << "</td><td>" << xml_escape(j.kind) << "</td><td>" << detail
         << "</td><td>" << link(j, "config.ini") << " " << link(j, "metrics.jsonl") << " " << link(j, "attack.jsonl")
         << " " << link(j, "log") << "</td></tr>\n";
  }
  os << "<h2>Jobs</h2>\n<p>" << plan.jobs.size() << " jobs:";
  for (auto& [state, n] : counts) os << " " << n << " " << state << ";";
  os << "</p>\n<table class=\"sortable\" id=\"jobs\"><thead><tr><th>state</th><th>job</th><th>kind</th>"
        "<th>progress / reason</th><th>files</th></tr></thead><tbody>\n"
     << rows.str() << "</tbody></table>\n";
  return os.str();
}

std::string results_section(const std::string& out) {
  const std::string path = join_path(out, "results.csv");
  if (!file_exists(path)) return "<h2>Results</h2>\n<p>No results yet (`undo sweep collect` writes them when attacks are done).</p>\n";
  std::vector<ResultRow> rows;
  try {
    rows = read_results_csv(path);
  } catch (const std::exception& e) {
    return "<h2>Results</h2>\n<p class=\"note\">" + xml_escape(e.what()) + "</p>\n";
  }
  if (rows.empty()) return "<h2>Results</h2>\n<p>results.csv has no rows yet.</p>\n";
  // Robustness is shown exactly as the report shows it (results/support.h).
  const Support support = judge_results(rows);
  std::ostringstream os;
  os << "<h2>Results</h2>\n";
  os << "<p class=\"" << (support.supported() ? "verdict" : "note") << "\">" << xml_escape(support_summary(support))
     << "</p>\n";
  os << "<p>Metric: " << xml_escape(rows.front().metric) << ", worst case over attack LRs; compute relative to "
        "the oracle's pretraining; robustness mean and 95% bootstrap interval over the seeds of a "
        "configuration (a 95% interval with enough independent replicates, else their range). Click a column to sort.</p>\n"
     << "<table class=\"sortable\" id=\"results\"><thead><tr><th>model</th><th>role</th><th>method</th><th>alpha</th>"
        "<th>seed</th><th>total compute (teacher shared)</th><th>total compute (alone)</th><th>forget before</th>"
        "<th>worst forget after attack</th><th>robustness</th><th>mean over replicates</th><th>interval</th>"
        "</tr></thead><tbody>\n";
  std::set<std::string> seen;
  auto num = [](double v, int digits) {
    return "<td class=\"num\" data-v=\"" + (std::isfinite(v) ? format_double(v) : std::string()) + "\">" +
           (std::isfinite(v) ? format_cell(v, digits) : "-") + "</td>";
  };
  // A robustness cell: its value sorts, its text carries the rules' marks.
  auto robust = [&](const ResultRow& r, double v) {
    return "<td class=\"num\" data-v=\"" + (support.attack_strong && std::isfinite(v) ? format_double(v) : std::string()) +
           "\">" + xml_escape(robustness_text(support, r, v)) + "</td>";
  };
  for (auto& r : rows) {
    if (!seen.insert(r.model).second) continue;
    os << "<tr><td>" << xml_escape(r.model) << "</td><td>" << xml_escape(r.role) << "</td><td>"
       << xml_escape(r.method) << "</td><td>" << xml_escape(r.alpha) << "</td><td>" << xml_escape(r.seed) << "</td>"
       << num(r.total_compute_amortised, 2) << num(r.total_compute_alone, 2) << num(r.forget_before, 3)
       << num(r.worst_forget_final, 3) << robust(r, r.robustness) << robust(r, r.robustness_mean) << "<td>"
       << xml_escape(interval_text(support, r)) << "</td></tr>\n";
  }
  os << "</tbody></table>\n";
  return os.str();
}

// Each training stage's loss against its step, one chart per kind of stage
// with a line per job, from the jobs' metrics.jsonl as they are now (a
// running job's curve so far).
std::string training_section(const Plan& plan) {
  std::map<std::string, Chart> by_kind;
  for (auto& j : plan.jobs) {
    if (j.kind != "pretrain" && j.kind != "unlearn" && j.kind != "distill") continue;
    Series s;
    s.name = j.name;
    for (auto& line : read_json_lines(j.dir + "/metrics.jsonl", /*skip_unreadable=*/true))
      if (line.count("loss") && line.count("step"))
        s.points.emplace_back(std::strtod(line.at("step").c_str(), nullptr), std::strtod(line.at("loss").c_str(), nullptr));
    if (s.points.empty()) continue;
    Chart& c = by_kind[j.kind];
    c.title = j.kind + ": training loss", c.xlabel = "step", c.ylabel = "loss";
    c.series.push_back(std::move(s));
  }
  if (by_kind.empty()) return "";
  std::ostringstream os;
  os << "<h2 id=\"training\">Training curves</h2>\n";
  for (auto& [kind, chart] : by_kind) os << "<div class=\"chart\">" << render_svg(chart, 760, 360) << "</div>\n";
  return os.str();
}

// Each attacked model's forget metric at every LR against the attack's step,
// with the attacker's worst case over them drawn thick and named by the LR
// that attains it after the whole attack (a star where that is the grid's
// largest LR: the worst case may lie beyond it).
std::string attacks_section(const Plan& plan) {
  constexpr size_t kMaxCharts = 40;  // a page, not an archive: the rest are in their jobs' attack.jsonl
  std::ostringstream charts;
  size_t shown = 0, attacked = 0;
  for (auto& j : plan.jobs) {
    if (j.kind != "relearn" || !file_exists(j.dir + "/attack.jsonl")) continue;
    std::vector<AttackPoint> points;
    try {
      points = read_attack_points(j.dir + "/attack.jsonl");
    } catch (const std::exception&) {
      continue;  // being written: the next refresh shows it
    }
    if (points.empty() || ++attacked > kMaxCharts) continue;
    const std::string metric = attack_metric(points);
    std::map<double, Series> per_lr;
    for (auto& p : points) {
      auto it = p.metrics.find(metric);
      if (it == p.metrics.end()) continue;
      Series& s = per_lr[p.lr];
      s.name = "LR " + format_double(p.lr);
      s.points.emplace_back(double(p.step), it->second);
    }
    Chart c;
    c.title = j.name, c.xlabel = "attack step", c.ylabel = metric;
    for (auto& [lr, s] : per_lr) c.series.push_back(std::move(s));
    Series worst;
    const GridEdge edge = grid_edge(points, metric);
    worst.name = "worst (LR " + format_double(edge.worst_lr) + (edge.censored() ? "*)" : ")");
    for (auto& p : worst_case(points, metric))
      if (p.metrics.count(metric)) worst.points.emplace_back(double(p.step), p.metrics.at(metric));
    worst.markers = true;
    c.series.push_back(std::move(worst));
    charts << "<div class=\"chart\">" << render_svg(c, 760, 360) << "</div>\n";
    ++shown;
  }
  if (attacked == 0) return "";
  std::ostringstream os;
  os << "<h2 id=\"attacks\">Attacks</h2>\n<p>Each model's forget metric at every attack LR by step; the worst case "
        "over LRs (the attacker's result) with markers, named by the LR that attains it after the whole attack; a * "
        "marks the grid's largest LR, beyond which the true worst case may lie.";
  if (attacked > shown) os << " The first " << shown << " of " << attacked << " attacked models are drawn.";
  os << "</p>\n" << charts.str();
  return os.str();
}

std::string charts_section(const std::string& out) {
  std::ostringstream os;
  for (auto [file, title] : {std::pair{"relearn_curves.svg", "Relearning curves"},
                             std::pair{"compute_robustness.svg", "Compute against robustness"}}) {
    const std::string path = join_path(join_path(out, "report"), file);
    if (!file_exists(path)) continue;
    std::string svg = read_file(path);
    auto at = svg.find("<svg");  // inline: the page stays one file
    if (at == std::string::npos) continue;
    os << "<h2>" << title << "</h2>\n<div class=\"chart\">" << svg.substr(at) << "</div>\n";
  }
  return os.str();
}

}  // namespace

JobProgress job_progress(const Job& job) {
  JobProgress p;
  // The job's settings as its stage resolved them (config.ini), read by the
  // config parser itself; a file it cannot read gives no progress.
  Config cfg;
  try {
    const std::string ini = job.dir + "/config.ini";
    if (!file_exists(ini)) return p;
    const char* argv[] = {"status", "--config", ini.c_str()};
    parse_config(3, argv, "status", cfg);
  } catch (const std::exception&) {
    return p;
  }
  if (job.kind == "relearn") {
    const auto lrs = split_list(cfg.relearn.lrs), seeds = split_list(cfg.relearn.seeds);
    std::set<std::pair<double, int64_t>> finished;  // (lr, seed) runs at their last step
    for (auto& line : read_json_lines(job.dir + "/attack.jsonl", /*skip_unreadable=*/true)) {
      try {
        auto point = AttackPoint::from_json(line);
        if (point.step >= cfg.relearn.steps) finished.insert({point.lr, point.seed});
      } catch (const std::exception&) {
      }
    }
    if (!lrs.empty() && !seeds.empty()) p.fraction = double(finished.size()) / double(lrs.size() * seeds.size());
  } else {
    double step = NAN;
    for (auto& line : read_json_lines(job.dir + "/metrics.jsonl", /*skip_unreadable=*/true))
      if (line.count("step")) step = std::strtod(line.at("step").c_str(), nullptr);
    if (cfg.train.steps > 0 && std::isfinite(step)) p.fraction = std::min(1.0, step / double(cfg.train.steps));
  }
  struct stat st;
  if (std::isfinite(p.fraction) && p.fraction > 0 && ::stat((job.dir + "/job.running").c_str(), &st) == 0) {
    double elapsed = std::difftime(std::time(nullptr), st.st_mtime);
    p.eta_s = elapsed * (1 - p.fraction) / p.fraction;
  }
  return p;
}

std::string dashboard_html(const Plan& plan) {
  bool active = false;
  const std::string jobs = plan.jobs.empty()
                               ? "<h2>Jobs</h2>\n<p>No job list here (OUT/jobs.tsv, written by `undo sweep`).</p>\n"
                               : jobs_section(plan, &active);
  std::time_t now = std::time(nullptr);
  char stamp[64];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
  std::ostringstream os;
  os << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n";
  if (active) os << "<meta http-equiv=\"refresh\" content=\"15\">\n";  // follows a running sweep
  os << "<title>undo sweep: " << xml_escape(plan.out) << "</title>\n<style>" << kStyle << "</style></head><body>\n"
     << "<h1>undo sweep: " << xml_escape(plan.out) << "</h1>\n<p>Written " << stamp
     << (active ? "; jobs are running: the page reloads every 15 s (`undo sweep run` rewrites it, as does `undo sweep status --watch`)" : "")
     << ".</p>\n<p><a href=\"#jobs\">jobs</a> &middot; <a href=\"#results\">results</a> &middot; "
        "<a href=\"#training\">training</a> &middot; <a href=\"#attacks\">attacks</a> &middot; "
        "<a href=\"#charts\">charts</a></p>\n"
     << jobs << results_section(plan.out) << training_section(plan) << attacks_section(plan) << "<div id=\"charts\">"
     << charts_section(plan.out) << "</div>\n"
     << "<script>" << kScript
     << "</script>\n</body></html>\n";
  return os.str();
}

std::string write_dashboard(const Plan& plan) {
  const std::string dir = join_path(plan.out, "report");
  const std::string path = join_path(dir, "index.html");
  write_output_file(path, dashboard_html(plan));
  return path;
}

}  // namespace undo
