// The sweep's job graph. Each job is one `undo` stage with its arguments; its
// run directory is named by a hash of its stage, arguments, the config file's
// content and its dependencies, so identical work is one job: one data
// preparation, one base, one oracle, one teacher per method, one logit cache
// per teacher, many students, many attacks.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/stage_settings.h"
#include "sweep/spec.h"

namespace undo {

struct Job {
  std::string id;    // 12 hex of the content hash
  std::string name;  // e.g. distill-maxent-a0.3-b0.1-s1, relearn-base-lr0.001
  std::string kind;  // data | pretrain | unlearn | cache | distill | relearn (a Slurm array each)
  std::vector<std::string> args;  // undo arguments, without --run-dir / --resume
  std::vector<std::string> deps;  // ids
  std::string dir;                // OUT/jobs/<name>-<id>
  double est_tokens = 0;          // estimated compute in training-token equivalents (forward-only counts 1/3)
  // What the job is, for collect: role (base|oracle|unlearn|student|attack|...), method, alpha, beta, seed,
  // lr, model (the attacked model's job id).
  std::map<std::string, std::string> tags;
};

// Job kinds in dependency order.
const std::vector<std::string>& job_kinds();

struct Plan {
  SweepSpec spec;
  std::string out;
  std::string undo_binary;
  std::string cwd;  // where relative paths of the config (data.dir, ...) resolve: jobs run here
  std::vector<Job> jobs;  // topologically ordered
  const Job& job(const std::string& id) const;
  // The shell command of a job: launcher prefix (mpirun / srun for ranks > 1), binary, args, run dir.
  std::string command(const Job& job, bool slurm) const;
};

Plan make_plan(const SweepSpec& spec, const std::string& out, const std::string& undo_binary);
// The attack's batch for the spec's pretraining budget and attack steps (core/stage_settings.h).
AttackBatch planned_attack_batch(const SweepSpec& spec);
// The attack's share of the forget tokens, and the support rules a spec can be
// judged on before anything runs, one line each (results/support.h).
std::string planned_support(const SweepSpec& spec);
// The graph: one line per job (kind, name, estimated tokens, dependencies), then planned_support.
std::string plan_text(const Plan& plan);
// Writes DIR/cmd.sh for every job: the command plus state markers (job.running,
// job.done, job.failed) and, under Slurm, a requeue on a checkpointed stop (exit 75).
void write_job_scripts(const Plan& plan, bool slurm);

std::string shell_quote(const std::string& s);

}  // namespace undo
