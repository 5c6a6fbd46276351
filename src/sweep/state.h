// The state of each job, read from the markers its cmd.sh leaves in its run
// directory: job.done, job.failed (exit code), job.running (pid, host, Slurm
// id), job.submitted (Slurm array task). Nothing else is needed to resume a sweep.
#pragma once
#include <string>
#include <vector>

#include "sweep/plan.h"

namespace undo {

enum class JobState { Done, Failed, Running, Queued, Cut, Ready, Waiting, Blocked };
const char* state_name(JobState s);

struct JobStatus {
  JobState state;
  std::string reason;  // why failed (log tail), what it waits for, which dependency failed
};

JobStatus job_status(const Plan& plan, const Job& job);
bool job_done(const Job& job);
// The last `lines` lines of the job's log.
std::string log_tail(const Job& job, int lines);
// The table `undo sweep status` prints, with counts per state.
std::string status_text(const Plan& plan);

}  // namespace undo
