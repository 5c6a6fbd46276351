#include "sweep/executor.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "core/stop_signal.h"
#include "core/fs.h"
#include "sweep/state.h"

extern char** environ;

namespace undo {

namespace {

pid_t spawn_script(const std::string& script) {
  pid_t pid = 0;
  std::vector<std::string> args = {"/bin/bash", script};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int rc = posix_spawn(&pid, "/bin/bash", nullptr, nullptr, argv.data(), environ);
  UNDO_CHECK(rc == 0, "cannot start ", script, ": ", std::strerror(rc));
  return pid;
}

// Runs a shell command, returning its standard output; throws on failure.
std::string run_capture(const std::string& cmd) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  UNDO_CHECK(p, "cannot run ", cmd);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int rc = pclose(p);
  UNDO_CHECK(rc == 0, "`", cmd, "` failed: ", out);
  return out;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

// The sweep as a whole: jobs done of all, what runs, and the time left, from
// the wall time per estimated token of the jobs this runner has finished (the
// slots' parallelism included).
std::string sweep_progress(const Plan& plan, const std::map<pid_t, const Job*>& running, double tokens_done,
                           double elapsed_s) {
  int done = 0;
  double left = 0;
  for (auto& j : plan.jobs) {
    if (job_done(j)) ++done;
    else left += j.est_tokens;
  }
  std::string kinds;
  for (auto& [pid, j] : running) kinds += (kinds.empty() ? "" : ", ") + j->kind;
  char eta[64] = "ETA after more work is done";
  if (tokens_done > 0 && elapsed_s > 0) {
    const double s = left / (tokens_done / elapsed_s);
    std::snprintf(eta, sizeof eta, "ETA %dh%02dm", int(s / 3600), int(s / 60) % 60);
  }
  return std::to_string(done) + "/" + std::to_string(plan.jobs.size()) + " jobs done, " +
         std::to_string(running.size()) + " running" + (kinds.empty() ? "" : " (" + kinds + ")") + ", " + eta;
}

}  // namespace

int run_local(const Plan& plan, int slots, const std::function<void()>& on_change, double refresh_s) {
  if (slots <= 0) {
    int cores = int(std::thread::hardware_concurrency());
    slots = std::max(1, cores / (plan.spec.ranks * plan.spec.threads));
  }
  // One runner per --out: two would start the same ready job twice before
  // either marked it running.
  make_dirs(plan.out);
  FileLock runner(plan.out + "/.runner.lock", /*wait=*/false, "another `undo sweep run` on this --out");
  write_job_scripts(plan, false);
  // A TERM or Ctrl-C stops the sweep, not only the runner: it is passed on to
  // every running job (each checkpoints and exits 75), they are waited for, and
  // the runner exits 75; a rerun resumes them. Nothing is left orphaned.
  install_stop_handlers(/*interrupt_too=*/true);
  bool stopping = false;
  std::map<pid_t, const Job*> running;
  std::set<std::string> failed_now, started, elsewhere;
  int failures = 0;
  double tokens_done = 0;  // estimated tokens of the jobs this runner finished
  auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  double refreshed_at = -refresh_s;
  auto refresh = [&] {
    if (!on_change) return;
    on_change();
    refreshed_at = elapsed();
  };
  for (;;) {
    // Launch what is ready: not done, every dependency done, not failed in this run.
    if (stop_signalled() && !stopping) {
      stopping = true;
      std::fprintf(stderr, "sweep: stop signal received; passing it to %zu running job(s) and waiting for them\n",
                   running.size());
      for (auto& [pid, j] : running) ::kill(pid, SIGTERM);
    }
    for (auto& j : plan.jobs) {
      if (stopping || int(running.size()) >= slots) break;
      if (started.count(j.id) || job_done(j)) continue;
      // A job whose process outlived an earlier runner (killed alone) is
      // waited for, not started again; once its process is gone undone, it is
      // cut and starts here (resuming from its checkpoint).
      if (job_status(plan, j).state == JobState::Running) {
        if (elsewhere.insert(j.id).second)
          std::fprintf(stderr, "sweep: %s is still running (an earlier runner's process); waiting for it\n",
                       (j.name + "-" + j.id).c_str());
        continue;
      }
      elsewhere.erase(j.id);
      bool ready = true;
      for (auto& d : j.deps) ready = ready && job_done(plan.job(d));
      if (!ready) continue;
      std::remove((j.dir + "/job.failed").c_str());
      pid_t pid = spawn_script(j.dir + "/cmd.sh");
      running[pid] = &j;
      started.insert(j.id);
      std::fprintf(stderr, "sweep [%6.0fs] start  %s\n", elapsed(), (j.name + "-" + j.id).c_str());
      refresh();
    }
    if (elapsed() - refreshed_at >= refresh_s) refresh();
    for (auto it = elsewhere.begin(); it != elsewhere.end();)
      it = job_done(plan.job(*it)) ? elsewhere.erase(it) : std::next(it);
    if (running.empty() && (elsewhere.empty() || stopping)) break;
    int status = 0;
    // Polled, not blocking: a stop signal must be seen while jobs run (waitpid
    // restarts after the handler), and others' jobs end only by their markers.
    pid_t pid = running.empty() ? 0 : ::waitpid(-1, &status, WNOHANG);
    if (pid == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(elsewhere.empty() ? 100 : 500));
      continue;
    }
    if (pid < 0) {
      UNDO_CHECK(errno == EINTR, "waitpid: ", std::strerror(errno));
      continue;
    }
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const Job& j = *it->second;
    running.erase(it);
    int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (rc == 0 && job_done(j)) {
      tokens_done += j.est_tokens;
      std::fprintf(stderr, "sweep [%6.0fs] done   %s; %s\n", elapsed(), (j.name + "-" + j.id).c_str(),
                   sweep_progress(plan, running, tokens_done, elapsed()).c_str());
    } else {
      ++failures;
      failed_now.insert(j.id);
      std::fprintf(stderr, "sweep [%6.0fs] FAILED %s (exit %d): %s\n", elapsed(), (j.name + "-" + j.id).c_str(), rc,
                   log_tail(j, 3).c_str());
    }
    refresh();
  }
  if (stopping)
    throw Preempted("sweep: stopped by a signal; the running jobs kept their checkpoints (exit 75); "
                    "`undo sweep run` again resumes them");
  // Whatever is not done now counts against the run: a sweep that stops with
  // work left never reports success.
  int undone = 0;
  for (auto& j : plan.jobs)
    if (!job_done(j) && !failed_now.count(j.id)) ++undone;
  if (undone) std::fprintf(stderr, "sweep: %d job(s) not run because a dependency failed\n", undone);
  return failures + undone;
}

std::vector<std::string> submit_slurm(const Plan& plan, const std::string& template_path) {
  UNDO_INPUT_CHECK(file_exists(template_path), "Slurm template '", template_path, "' does not exist");
  const std::string tmpl = read_file(template_path);
  make_dirs(plan.out);
  FileLock runner(plan.out + "/.runner.lock", /*wait=*/false, "another `undo sweep run` on this --out");
  write_job_scripts(plan, true);
  const auto& s = plan.spec.slurm;
  std::string dir = plan.out + "/slurm";
  make_dirs(dir);
  // Tasks of an earlier submission still queued or running are not submitted again.
  std::set<std::string> in_queue;
  {
    std::istringstream q(run_capture("squeue -h -r -o %i"));
    for (std::string id; std::getline(q, id);) in_queue.insert(id);
  }
  auto task_of = [](const Job& j) {
    auto marker = read_file(j.dir + "/job.submitted");  // "slurm ARRAY_TASK"
    auto id = marker.substr(marker.find(' ') + 1);
    return id.substr(0, id.find('\n'));
  };
  auto already_queued = [&](const Job& j) {
    return file_exists(j.dir + "/job.submitted") && in_queue.count(task_of(j)) > 0;
  };
  std::map<std::string, std::string> array_of_kind;  // kind -> submitted array id
  std::vector<std::string> ids;
  for (auto& kind : job_kinds()) {
    std::vector<const Job*> tasks;
    std::set<std::string> needs, needs_tasks;
    for (auto& j : plan.jobs) {
      if (j.kind != kind || job_done(j)) continue;
      if (already_queued(j)) {
        std::cerr << "sweep: " << j.name << "-" << j.id << " is already queued or running\n";
        continue;
      }
      tasks.push_back(&j);
      for (auto& d : j.deps) {
        const Job& dep = plan.job(d);
        if (job_done(dep)) continue;
        if (already_queued(dep)) needs_tasks.insert(task_of(dep));  // from an earlier submission
        else needs.insert(dep.kind);
      }
    }
    if (tasks.empty()) continue;
    std::string list;
    for (auto* j : tasks) list += j->dir + "\n";
    write_file_atomic(dir + "/" + kind + ".tasks", list);
    std::string sbatch_lines;
    if (!s.partition.empty()) sbatch_lines += "#SBATCH --partition=" + s.partition + "\n";
    if (!s.account.empty()) sbatch_lines += "#SBATCH --account=" + s.account + "\n";
    std::istringstream extra(s.extra);
    for (std::string e; std::getline(extra, e, ';');)
      if (!e.empty()) sbatch_lines += "#SBATCH " + e + "\n";
    std::string script = tmpl;
    for (auto& [key, value] :
         std::vector<std::pair<std::string, std::string>>{{"@NAME@", "undo-" + kind},
                                                          {"@ARRAY@", "0-" + std::to_string(tasks.size() - 1) + "%" +
                                                                          std::to_string(s.max_parallel)},
                                                          {"@TIME@", s.time},
                                                          {"@NODES@", std::to_string(s.nodes)},
                                                          {"@NTASKS@", std::to_string(plan.spec.ranks)},
                                                          {"@CPUS_PER_TASK@", std::to_string(plan.spec.threads)},
                                                          {"@SIGNAL_S@", std::to_string(s.signal_s)},
                                                          {"@OUTPUT@", dir + "/" + kind + "-%A_%a.out"},
                                                          {"@EXTRA@", sbatch_lines},
                                                          {"@TASKS@", shell_quote(dir + "/" + kind + ".tasks")}})
      script = replace_all(script, key, value);
    write_file_atomic(dir + "/" + kind + ".sbatch", script);
    std::string cmd = "sbatch --parsable";
    std::string dep;
    for (auto& k : needs)
      if (array_of_kind.count(k)) dep += ":" + array_of_kind[k];
    for (auto& t : needs_tasks) dep += ":" + t;
    if (!dep.empty()) cmd += " --dependency=afterok" + dep + " --kill-on-invalid-dep=yes";
    cmd += " " + shell_quote(dir + "/" + kind + ".sbatch");
    std::string id = run_capture(cmd);
    id = id.substr(0, id.find_first_of(";\n"));
    array_of_kind[kind] = id;
    ids.push_back(id);
    for (size_t i = 0; i < tasks.size(); ++i)
      write_file_atomic(tasks[i]->dir + "/job.submitted", "slurm " + id + "_" + std::to_string(i) + "\n");
    std::cerr << "sweep: submitted " << kind << " as array " << id << " (" << tasks.size() << " tasks"
              << (dep.empty() ? "" : ", afterok" + dep) << ")\n";
  }
  return ids;
}

bool wait_slurm(const std::vector<std::string>& array_ids, double timeout_s, const std::function<void()>& on_change,
                double refresh_s) {
  auto t0 = std::chrono::steady_clock::now();
  auto refreshed = t0 - std::chrono::hours(1);
  for (;;) {
    if (on_change && std::chrono::duration<double>(std::chrono::steady_clock::now() - refreshed).count() >= refresh_s) {
      on_change();
      refreshed = std::chrono::steady_clock::now();
    }
    // Pending array tasks show as ID_[2-5%2], running ones as ID_3.
    std::istringstream out(run_capture("squeue -h -o %i"));
    bool any = false;
    for (std::string line; std::getline(out, line);)
      for (auto& id : array_ids) any = any || line.rfind(id + "_", 0) == 0 || line == id;
    if (!any) return true;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_s) return false;
    std::this_thread::sleep_for(std::chrono::seconds(2));
  }
}

}  // namespace undo
