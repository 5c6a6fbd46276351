// Shared fixtures: generated data only (no network, no package downloads).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/config.h"

namespace undo::test {

// A fresh empty directory under the build tree, named after the running test.
std::string temp_dir(const std::string& name);
// The process's umask (the mode a new directory gets is 0777 & ~umask).
unsigned current_umask();
// The message of what `f` throws ("" when it does not throw).
std::string error_of(const std::function<void()>& f);
// English-like sentences from fixed word lists, deterministic in `seed`.
std::string generated_english(int sentences, uint64_t seed);
// A prepared arithmetic + generated-English data directory, built once per process.
const std::string& tiny_data_dir();
// The tiny config used by tests: configs/tiny.ini plus the tiny data dir and `run_dir`.
Config tiny_config(const std::string& run_dir);
// Runs a shell command; returns its exit code, its standard output in `output`.
int run_command(const std::string& cmd, std::string* output = nullptr);
// Slurm holds a requeued task about two minutes before it may start again
// (its BeginTime); the Slurm tests release it at once, as an administrator
// may: once `task` (ARRAY_TASK) is pending again and 2 s after (slurmd
// refuses a launch within the second its last run was killed in). Slurm
// commands run as `client` + " squeue ..." (client: "" or a wrapper that runs
// them on the cluster's login host). Fails the test when it never requeues.
void start_requeued_now(const std::string& client, const std::string& task);
// Whether UNDO_PYTHON imports every module of `modules` ("tokenizers, transformers"):
// what a test against a Python library checks before it runs, to skip saying so.
bool python_has(const std::string& modules);
// Runs the undo binary with `args`; returns its exit code, output in `output`.
int run_undo(const std::string& args, std::string* output = nullptr);
// The same under `mpirun -np N` (as root where needed, threads unbound).
int run_undo_mpi(int np, const std::string& args, std::string* output = nullptr, const std::string& env = "");
// The "loss" of each line of a metrics.jsonl that has one.
std::vector<double> losses_of(const std::string& metrics_path);
// A metrics.jsonl line without the keys that hold wall-clock values
// (tokens_per_s and time, which end every line that has them), for comparing
// two runs' lines.
std::string without_wall_clock(const std::string& line);
// Every line of a JSON-lines file through without_wall_clock, joined by newlines.
std::string lines_without_wall_clock(const std::string& path);

}  // namespace undo::test
