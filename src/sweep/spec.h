// A sweep spec: one INI file naming the setting (a base config), the grid and
// how to run it. [sweep] and [slurm] are the sweep's own keys (unknown ones
// are errors); every other section is a config override applied to every
// stage (e.g. [train] steps = 200), validated against the config registry,
// except [unlearn.<method>], whose unlearn keys reach that method's teacher
// alone: methods are tuned apart (undo-spec.md sweeps the LR per method), and one
// method's setting must not change the other teachers or anything planned
// from them (their job hashes stay as they were).
//
//   [sweep]
//   config = configs/demo-arith.ini    ; the setting
//   methods = maxent,maxent+sam,npo     ; teachers: unlearning methods, each also as METHOD+sam (wrapped
//                                       ; in SAM; its section or the setting gives sam_rho > 0); every one attacked
//   distill_methods = maxent            ; the teachers students are distilled from (default: all methods)
//   alphas = 1,0.6,0.3                  ; 1 = Unlearn-and-Distill (random student), <1 = UNDO (noised)
//   betas = 0.1
//   seeds = 1                           ; student seeds
//   replicates = 5                      ; independent replicates: each reseeds every stage (default 1)
//   replicate_shared = none             ; base_oracle: the replicates share replicate 1's base and oracle
//   controls = base,oracle              ; distilled controls: the base and/or the oracle, distilled like a student (or none)
//   attack_lrs = 1e-3,4e-4,1e-4
//   attack_steps = 100
//   attack_eval_every = 10
//   ranks = 1                           ; per job (mpirun -np / srun -n)
//   threads = 2                         ; per rank
//   cache = 1                           ; one teacher-logit cache per teacher (0 = online teacher)
//   signals = s12:q8,top32+s32:f16,online ; instead of cache: the distillation signals compared
//   metric = auto                       ; robustness on: auto | forget_acc | forget_answer_ce | forget_ce
//   prepare_data = 1                    ; first job: undo data prepare (0: data.dir is ready)
//   cache_root = /scratch/caches        ; logit caches by key, shared with other sweeps (default OUT/cache)
//   [unlearn.rmu]
//   lr = 1e-3                           ; RMU's teacher alone (any unlearn key but method)
//   [slurm]
//   partition = ...                     ; account, time, nodes, max_parallel (%N), signal_s, extra,
//                                       ; lost_rank_requeues
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"

namespace undo {

struct SlurmSettings {
  std::string partition, account;
  std::string time = "01:00:00";
  int nodes = 1;
  int max_parallel = 8;  // array throttle %N
  int signal_s = 120;    // SIGUSR1 this long before the time limit: checkpoint and requeue
  // A task whose ranks lost one (exit 3: a node went away mid-step) requeues
  // and resumes from its last checkpoint, at most this many times.
  int lost_rank_requeues = 3;
  std::string extra;     // more #SBATCH lines, ';'-separated (e.g. "--gres=gpu:1;--mem=32G")
};

// What a student learns the teacher's distribution from: the teacher run
// online in every step (the full-vocabulary KL), or its logit cache with the
// top k and s draws from the rest (train/objectives/distill.h). Written
// "online", "top<k>" or "top<k>+s<s>".
// A distillation signal: online, or a cache format. Written online, top<k>,
// top<k>+s<n>, s<n> (pure sampling), each cache format optionally with
// :<dtype> (f32 | f16 | q8; default the setting's distill.cache_dtype).
struct DistillSignal {
  std::string name;
  bool online = false;
  int k = 0, samples = 0;
  std::string dtype;  // "" = distill.cache_dtype
};
DistillSignal parse_distill_signal(const std::string& where, const std::string& text);

struct SweepSpec {
  std::string path;    // the spec file
  std::string config;  // base config of every stage
  std::vector<std::string> methods = {"maxent"};
  std::vector<std::string> distill_methods;  // empty: every method's teacher gets students
  std::vector<double> alphas = {1.0};
  std::vector<double> betas = {0.1};
  std::vector<int64_t> seeds = {1};
  // Independent replicates of the whole pipeline: replicate r > 1 reseeds
  // pretraining (data order, initialisation), unlearning, the cache's draws,
  // the students and the attacks (sweep/plan.cpp); the prepared data, and so
  // the evaluation sets, are shared. replicate_shared = "base_oracle" keeps
  // replicate 1's base and oracle for all of them.
  int replicates = 1;
  std::string replicate_shared = "none";
  // The distilled controls (sweep/plan.cpp): "base", "oracle", both by default ("none": neither).
  std::vector<std::string> controls = {"base", "oracle"};
  // The paper's attack by default: 10 LRs, 500 steps, an evaluation every 5.
  std::vector<double> attack_lrs = {1e-3, 7e-4, 4e-4, 1e-4, 7e-5, 5e-5, 1e-5, 7e-6, 4e-6, 1e-6};
  int attack_steps = 500;
  int attack_eval_every = 5;
  int ranks = 1;
  int threads = 2;
  bool cache = true;
  // The signals every student configuration is distilled with (the first also
  // serves the distilled-base control). Default: one, from `cache` and the
  // config's distill.cache_k / distill.cache_samples.
  std::vector<DistillSignal> signals;
  // The forget metric robustness is computed on (auto: accuracy where measured,
  // else forget_ce; forget_answer_ce: the held-out answers' NLL, eval/evaluator.h).
  std::string metric = "auto";
  bool prepare_data = true;  // a first job runs `undo data prepare` (0: data.dir is prepared already)
  // Where the sweep's logit caches live, by key: another sweep that names the
  // same root reuses a cache of the same teacher and stream. "" = <out>/cache.
  std::string cache_root;
  SlurmSettings slurm;
  // "--section.key", "value" pairs from the other sections, in file order.
  std::vector<std::pair<std::string, std::string>> overrides;
  Config cfg;  // the setting's config with the overrides applied (validated when the spec is read)
  // "--unlearn.key", "value" pairs of each [unlearn.<method>] section, applied after `overrides` to that
  // method's unlearning job only; method_cfg holds `cfg` with them applied (both only for such methods).
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> method_overrides;
  std::map<std::string, Config> method_cfg;
};

// A sweep's teacher is an unlearning method (core/unlearning_methods.h) or METHOD+sam.
bool is_sweep_teacher(const std::string& teacher);
// The unlearning method a teacher runs: "maxent" for "maxent+sam".
std::string teacher_method(const std::string& teacher);
bool teacher_uses_sam(const std::string& teacher);

// What differs between the replicates whose robustness results.csv pools (its
// replicates_vary column, results/support.h's constants).
std::string replicates_vary(const SweepSpec& spec);

// Reads and validates the spec (and its overrides against the config) before
// anything runs; errors name the file, line and key.
// The most jobs a spec may plan: a grid whose product was millions of jobs
// hung the planner. Checked from the grid's sizes before anything is planned.
constexpr double kMaxPlannedJobs = 100000;
// How many jobs the spec's grid makes (an upper bound: a shared cache counts once per user).
double planned_job_count(const SweepSpec& spec);

SweepSpec read_sweep_spec(const std::string& path);

}  // namespace undo
