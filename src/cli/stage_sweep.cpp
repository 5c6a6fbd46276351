#include <unistd.h>

#include <iostream>

#include "cli/stages.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/owned_output.h"
#include "sweep/collect.h"
#include "sweep/dashboard.h"
#include "sweep/executor.h"
#include "sweep/job_list.h"
#include "sweep/state.h"

#ifndef UNDO_SOURCE_DIR
#define UNDO_SOURCE_DIR "."
#endif

namespace undo {

namespace {

const char* kUsage =
    "usage: undo sweep plan|run|status|collect --spec FILE --out DIR [options]\n"
    "  plan      print the job graph and each job's estimated compute\n"
    "  run       run what is not done: --executor local (default; --jobs N at once, 0 = cores / (ranks x threads))\n"
    "            or --executor slurm (job arrays with afterok dependencies; --wait polls until they finish;\n"
    "            --template FILE, default slurm/job-array.sbatch.in); then collects. It keeps\n"
    "            DIR/report/index.html (the dashboard) current while jobs run\n"
    "  status    done / running / queued / cut / failed (with its log's tail) / waiting / blocked, per job;\n"
    "            also writes DIR/report/index.html (the dashboard); --watch repeats every --every S seconds\n"
    "            (default 10) while jobs run or are queued\n"
    "  collect   DIR/results.csv and DIR/curves.csv from the finished jobs\n";

std::string self_binary() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  UNDO_CHECK(n > 0, "cannot find the undo binary (/proc/self/exe)");
  return std::string(buf, size_t(n));
}

// `undo sweep status`: the table, and the dashboard where the sweep's output
// exists; with `watch`, again every `every` seconds until no job runs or waits
// in a queue (two looks in a row, so that the gap between two jobs does not end it).
int show_status(const Plan& plan, bool watch, double every) {
  for (int idle = 0;;) {
    std::cout << status_text(plan);
    if (is_directory(plan.out)) {
      write_job_list(plan);
      std::cout << "dashboard: " << write_dashboard(plan) << "\n";
    }
    if (!watch) return 0;
    bool active = false;
    for (auto& j : plan.jobs) {
      auto s = job_status(plan, j).state;
      active = active || s == JobState::Running || s == JobState::Queued;
    }
    idle = active ? 0 : idle + 1;
    if (idle >= 2) return 0;
    std::cout.flush();
    ::usleep(useconds_t(every * 1e6));
  }
}

}  // namespace

int stage_sweep(int argc, const char* const* argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    (argc < 2 ? std::cerr : std::cout) << kUsage;
    return argc < 2 ? 2 : 0;
  }
  std::string action = argv[1], spec_path, out, executor = "local", tmpl = std::string(UNDO_SOURCE_DIR) + "/slurm/job-array.sbatch.in";
  int jobs = 0;
  bool wait = false, watch = false;
  double wait_timeout = 24 * 3600, every = 10;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      UNDO_INPUT_CHECK(i + 1 < argc, "undo sweep: ", a, " needs a value");
      return argv[++i];
    };
    if (a == "--spec") spec_path = value();
    else if (a == "--out") out = value();
    else if (a == "--executor") executor = value();
    else if (a == "--template") tmpl = value();
    else if (a == "--jobs") jobs = int(parse_integer("--jobs", value(), 0, std::numeric_limits<int>::max()));
    else if (a == "--wait") wait = true;
    else if (a == "--watch") watch = true;
    else if (a == "--every") every = parse_real("--every", value(), 0.1);
    else if (a == "--wait-timeout") wait_timeout = parse_real("--wait-timeout", value(), 0);
    else throw InputError("undo sweep: unknown option '" + a + "'\n" + kUsage);
  }
  UNDO_INPUT_CHECK(action == "plan" || action == "run" || action == "status" || action == "collect",
                   "undo sweep: unknown action '", action, "'\n", kUsage);
  UNDO_INPUT_CHECK(!spec_path.empty() && !out.empty(), "undo sweep ", action, ": --spec FILE and --out DIR are required");
  UNDO_INPUT_CHECK(executor == "local" || executor == "slurm", "--executor '", executor, "': local | slurm");
  Plan plan = make_plan(read_sweep_spec(spec_path), out, self_binary());
  if (action == "plan") {
    std::cout << plan_text(plan);
    return 0;
  }
  if (action == "status") return show_status(plan, watch, every);
  if (action == "collect") {
    int left_out = collect_results(plan);
    write_job_list(plan);  // for `undo report`'s dashboard
    return left_out == 0 ? 0 : 1;
  }
  make_dirs(plan.out);
  write_output_file(plan.out + "/plan.txt", plan_text(plan));
  std::cerr << planned_support(plan.spec);  // before the first job: what the figures will carry
  write_job_list(plan);
  // The dashboard is kept current while jobs run, without a second command;
  // one that cannot be written is said once, and the sweep goes on (its
  // job directories and results.csv are the record).
  bool dashboard_failed = false;
  auto live_dashboard = [&] {
    try {
      write_dashboard(plan);
    } catch (const std::exception& e) {
      if (!dashboard_failed) std::cerr << "sweep: the dashboard is not kept current: " << e.what() << "\n";
      dashboard_failed = true;
    }
  };
  if (executor == "local") {
    int failed = run_local(plan, jobs, live_dashboard);
    collect_results(plan);
    std::cout << status_text(plan);
    write_dashboard(plan);
    return failed ? 1 : 0;
  }
  auto ids = submit_slurm(plan, tmpl);
  if (!wait) {
    std::cout << "submitted " << ids.size() << " array(s); `undo sweep status` follows them\n";
    return 0;
  }
  bool finished = wait_slurm(ids, wait_timeout, live_dashboard);
  collect_results(plan);
  std::cout << status_text(plan);
  write_dashboard(plan);
  for (auto& j : plan.jobs)
    if (!job_done(j)) return 1;
  return finished ? 0 : 1;
}

}  // namespace undo
