// Running a plan: locally as processes, or on Slurm as one job array per
// stage kind with afterok dependencies. Both run each job's cmd.sh, so a job
// behaves the same either way, and both skip what is done.
#pragma once
#include <functional>
#include <string>

#include "sweep/plan.h"

namespace undo {

// Runs every job that is not done, as many at once as `slots` (0 = the cores
// divided by ranks x threads), dependencies first. A failed job's dependants
// are not started; the others go on. Returns the number of failed jobs.
// `on_change` (the live dashboard) runs when a job starts or ends, and at
// least every `refresh_s` seconds while jobs run.
int run_local(const Plan& plan, int slots, const std::function<void()>& on_change = {}, double refresh_s = 30);

// Writes OUT/slurm/<kind>.sbatch from `template_path` and the task lists, and
// submits the arrays with sbatch (--dependency=afterok on the arrays they need,
// throttled %N, --signal for checkpoint-and-requeue). Returns the array ids.
std::vector<std::string> submit_slurm(const Plan& plan, const std::string& template_path);
// Polls squeue until none of `array_ids` is queued or running (or `timeout_s`
// passes: false), running `on_change` every `refresh_s` seconds meanwhile.
bool wait_slurm(const std::vector<std::string>& array_ids, double timeout_s, const std::function<void()>& on_change = {},
                double refresh_s = 30);

}  // namespace undo
