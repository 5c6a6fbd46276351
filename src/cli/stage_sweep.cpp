#include <unistd.h>

#include <iostream>

#include "cli/stages.h"
#include "core/error.h"
#include "core/fs.h"
#include "sweep/collect.h"
#include "sweep/executor.h"
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
    "            --template FILE, default slurm/job-array.sbatch.in); then collects\n"
    "  status    done / running / queued / cut / failed (with its log's tail) / waiting / blocked, per job\n"
    "  collect   DIR/results.csv and DIR/curves.csv from the finished jobs\n";

std::string self_binary() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  UNDO_CHECK(n > 0, "cannot find the undo binary (/proc/self/exe)");
  return std::string(buf, size_t(n));
}

}  // namespace

int stage_sweep(int argc, const char* const* argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    (argc < 2 ? std::cerr : std::cout) << kUsage;
    return argc < 2 ? 2 : 0;
  }
  std::string action = argv[1], spec_path, out, executor = "local", tmpl = std::string(UNDO_SOURCE_DIR) + "/slurm/job-array.sbatch.in";
  int jobs = 0;
  bool wait = false;
  double wait_timeout = 24 * 3600;
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
  if (action == "status") {
    std::cout << status_text(plan);
    return 0;
  }
  if (action == "collect") return collect_results(plan) == 0 ? 0 : 1;
  make_dirs(plan.out);
  write_file_atomic(plan.out + "/plan.txt", plan_text(plan));
  if (executor == "local") {
    int failed = run_local(plan, jobs);
    collect_results(plan);
    std::cout << status_text(plan);
    return failed ? 1 : 0;
  }
  auto ids = submit_slurm(plan, tmpl);
  if (!wait) {
    std::cout << "submitted " << ids.size() << " array(s); `undo sweep status` follows them\n";
    return 0;
  }
  bool finished = wait_slurm(ids, wait_timeout);
  collect_results(plan);
  std::cout << status_text(plan);
  for (auto& j : plan.jobs)
    if (!job_done(j)) return 1;
  return finished ? 0 : 1;
}

}  // namespace undo
