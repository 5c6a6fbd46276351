#include "sweep/state.h"

#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>

#include "core/fs.h"
#include "core/utf8.h"

namespace undo {

namespace {

std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string hostname() {
  char buf[256] = {0};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

// A job.running marker whose process is gone was cut (killed, node lost).
bool marker_alive(const std::string& marker) {
  std::istringstream in(marker);
  std::string word, host;
  long pid = 0;
  bool slurm = false;
  while (in >> word) {
    if (word == "pid") in >> pid;
    else if (word == "host") in >> host;
    else if (word == "slurm") slurm = true;
  }
  if (slurm || host != hostname()) return true;  // another machine's process: trust its marker
  return pid > 0 && ::kill(pid_t(pid), 0) == 0;
}

}  // namespace

const char* state_name(JobState s) {
  switch (s) {
    case JobState::Done: return "done";
    case JobState::Failed: return "failed";
    case JobState::Running: return "running";
    case JobState::Queued: return "queued";
    case JobState::Cut: return "cut";
    case JobState::Ready: return "ready";
    case JobState::Waiting: return "waiting";
    default: return "blocked";
  }
}

bool job_done(const Job& job) { return file_exists(job.dir + "/job.done"); }

std::string log_tail(const Job& job, int lines) {
  std::ifstream in(job.dir + "/log");
  std::vector<std::string> all;
  std::string line;
  while (std::getline(in, line)) all.push_back(line);
  std::string out;
  for (size_t i = all.size() > size_t(lines) ? all.size() - size_t(lines) : 0; i < all.size(); ++i)
    out += (out.empty() ? "" : " | ") + all[i];
  return out;
}

JobStatus job_status(const Plan& plan, const Job& job) {
  if (job_done(job)) return {JobState::Done, ""};
  if (file_exists(job.dir + "/job.running")) {
    auto marker = first_line(job.dir + "/job.running");
    if (marker_alive(marker)) return {JobState::Running, marker};
    return {JobState::Cut, "its process is gone (killed?); a rerun resumes it from its checkpoint"};
  }
  if (file_exists(job.dir + "/job.failed"))
    return {JobState::Failed, first_line(job.dir + "/job.failed") + ": " + log_tail(job, 3)};
  std::vector<std::string> missing;
  for (auto& d : job.deps) {
    const Job& dep = plan.job(d);
    if (job_done(dep)) continue;
    auto s = job_status(plan, dep);
    if (s.state == JobState::Failed || s.state == JobState::Blocked)
      return {JobState::Blocked, "needs " + dep.name + ", which " + (s.state == JobState::Failed ? "failed" : "is blocked")};
    missing.push_back(dep.name);
  }
  if (file_exists(job.dir + "/job.submitted")) return {JobState::Queued, first_line(job.dir + "/job.submitted")};
  if (missing.empty()) return {JobState::Ready, ""};
  std::string reason = "needs";
  for (auto& m : missing) reason += " " + m;
  return {JobState::Waiting, reason};
}

std::string status_text(const Plan& plan) {
  std::ostringstream os;
  std::map<std::string, int> counts;
  for (auto& j : plan.jobs) {
    auto s = job_status(plan, j);
    counts[state_name(s.state)]++;
    os << state_name(s.state) << std::string(9 - std::string(state_name(s.state)).size(), ' ') << j.name << "-"
       << j.id;
    // A reason quotes the job's log and markers: a terminal escape sequence
    // there used to reach the user's terminal raw.
    if (!s.reason.empty()) os << "  (" << escape_controls(s.reason) << ")";
    os << "\n";
  }
  os << plan.jobs.size() << " jobs:";
  for (auto& [name, n] : counts) os << " " << n << " " << name;
  os << "\n";
  return os.str();
}

}  // namespace undo
