#include "sweep/plan.h"

#include <algorithm>
#include <filesystem>
#include <cmath>
#include <iomanip>
#include <sstream>

#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/sha256.h"
#include "core/stage_settings.h"
#include "results/support.h"
#include "sweep/rank_memory.h"

namespace undo {

namespace {

std::string num(double v) { return format_double(v); }

std::string absolute(const std::string& p) {
  if (!p.empty() && p[0] == '/') return p;
  char buf[4096];
  return getcwd(buf, sizeof buf) ? std::string(buf) + "/" + p : p;
}

}  // namespace

const std::vector<std::string>& job_kinds() {
  // "extend" after "relearn": the Slurm executor orders kinds (one job array each, afterok), and a grid's
  // extension reads the grid's finished attacks.
  static const std::vector<std::string> k = {"data", "pretrain", "unlearn", "cache", "distill", "relearn", "extend"};
  return k;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

const Job& Plan::job(const std::string& id) const {
  for (auto& j : jobs)
    if (j.id == id) return j;
  UNDO_FAIL("no job with id ", id);
}

std::string Plan::command(const Job& j, bool slurm) const {
  std::ostringstream os;
  if (spec.ranks > 1) {
    if (slurm) os << "srun -n " << spec.ranks << " --mpi=pmix ";
    else os << "mpirun -np " << spec.ranks << " --bind-to none --oversubscribe ";
  }
  os << shell_quote(undo_binary);
  for (auto& a : j.args) os << " " << shell_quote(a);
  os << " --run-dir " << shell_quote(j.dir) << " --resume";
  return os.str();
}

namespace {

// Builds a plan's job graph, one replicate of the pipeline at a time
// (sweep.replicates): replicate r > 1 gives every stage its own seeds
// (replicate_seeds), so that its jobs hash apart from replicate 1's, whose
// jobs are those of a sweep without replicates.
class PlanBuilder {
 public:
  PlanBuilder(Plan& plan) : plan_(plan), spec_(plan.spec), cfg_(plan.spec.cfg) {
    common_ = {"--config", absolute(spec_.config)};
    for (auto& [k, v] : spec_.overrides)
      if (k != "--run.dir") common_.insert(common_.end(), {k, v});  // each job is given its own --run-dir
    common_.insert(common_.end(), {"--run.threads", std::to_string(spec_.threads)});
    Config resolved = cfg_;  // describe() takes the keys' storage
    for (auto& k : describe(resolved)) config_values_.emplace_back(k.name, k.value());
    global_batch_ = double(cfg_.train.batch_size) * cfg_.train.accum * spec_.ranks;
    window_ = cfg_.model.seq_len;
  }

  void build() {
    if (spec_.prepare_data)
      data_deps_.push_back(add("data", "data", with({"data", "prepare"}, {}), {}, 0, {{"role", "data"}}).id);
    for (int r = 1; r <= spec_.replicates; ++r) {
      enter_replicate(r);
      add_models();
    }
    add_attacks();
  }

 private:
  // The seeds of replicate r: 1 keeps the config's, r > 1 offsets each stage's
  // own seed by 1000 r (pretraining's data order and initialisation,
  // unlearning, the cache's draws and the distillation stream, students,
  // attacks). The prepared data, and so the evaluation sets, stay shared.
  int64_t seed_of(int64_t own) const { return replicate_ == 1 ? own : own + 1000 * replicate_; }
  std::vector<std::string> replicate_seeds() const {
    if (replicate_ == 1) return {};
    std::string attack_seeds;
    for (double s : parse_number_list("relearn.seeds", cfg_.relearn.seeds))
      attack_seeds += (attack_seeds.empty() ? "" : ",") + std::to_string(seed_of(int64_t(s)));
    return {"--run.seed", std::to_string(seed_of(cfg_.run.seed)), "--distill.data_seed",
            std::to_string(seed_of(cfg_.distill.data_seed)), "--relearn.seeds", attack_seeds};
  }
  void enter_replicate(int r) {
    replicate_ = r;
    reseed_ = replicate_seeds();
  }

  const Job& add(std::string kind, std::string name, std::vector<std::string> args, std::vector<std::string> deps,
                 double est_tokens, std::map<std::string, std::string> tags) {
    // The hash covers exactly what the job's stage reads: the config's values
    // of its keys (core/stage_settings.h's stage_reads_key; the config file's
    // other sections and its comments do not count), its arguments and its
    // dependencies. (v1 hashed the whole config file.)
    Sha256 h;
    h.update("undo-sweep-job-v2\n" + kind + "\n");
    // run.dir is not read: every job is given its own --run-dir (named by this hash), so a spec's [run] dir
    // must not make another sweep's identical jobs hash apart.
    for (auto& [key, value] : config_values_)
      if (key != "run.dir" && stage_reads_key(stage_of(kind), key)) h.update(key + "=" + value + "\n");
    for (auto& a : args) h.update(a + "\n");
    for (auto& d : deps) h.update("dep=" + d + "\n");
    Job j;
    j.id = h.hex().substr(0, 12);
    for (auto& existing : plan_.jobs)
      if (existing.id == j.id) return existing;  // the same work, already planned: share it
    j.kind = std::move(kind);
    j.name = std::move(name);
    j.args = std::move(args);
    j.deps = std::move(deps);
    j.dir = plan_.out + "/jobs/" + j.name + "-" + j.id;
    j.est_tokens = est_tokens;
    j.tags = std::move(tags);
    j.tags["name"] = j.name;
    if (j.kind != "data") j.tags.emplace("replicate", std::to_string(replicate_));
    plan_.jobs.push_back(std::move(j));
    return plan_.jobs.back();
  }
  // A job's name in this replicate.
  std::string named(const std::string& name) const {
    return replicate_ == 1 ? name : name + "-r" + std::to_string(replicate_);
  }

  // A stage's arguments: `head`, the spec's overrides and the replicate's
  // seeds, then `tail`. A stage that sets a general key itself
  // (core/stage_settings.h) would refuse the spec's override of it, which is
  // meant for pretraining: it is left out there. A key the job sets itself (in
  // `tail`) replaces the spec's.
  std::vector<std::string> with(std::vector<std::string> head, const std::vector<std::string>& tail,
                                const std::vector<std::string>& owned = {}) const {
    const std::string stage = head.front();
    for (const auto* pairs : {&common_, &reseed_})
      for (size_t i = 0; i < pairs->size(); i += 2) {
        const std::string& key = (*pairs)[i];
        bool skip = std::find(owned.begin(), owned.end(), key.substr(2)) != owned.end() ||
                    std::find(tail.begin(), tail.end(), key) != tail.end() ||
                    (key.find('.') != std::string::npos && !stage_reads_key(stage, key.substr(2)));
        if (!skip) head.insert(head.end(), {key, (*pairs)[i + 1]});
      }
    head.insert(head.end(), tail.begin(), tail.end());
    return head;
  }
  static std::string ckpt(const Job& j) { return j.dir + "/model.ckpt"; }

  void add_models() {
    const double pretrain_tokens = double(cfg_.train.steps) * global_batch_ * window_;
    {
      // sweep.replicate_shared = base_oracle: replicate 1's base and oracle serve every replicate.
      const auto own = reseed_;
      if (spec_.replicate_shared == "base_oracle") reseed_.clear();
      base_id_ = add("pretrain", named("base"), with({"pretrain"}, {"--pretrain.target", "base"}), data_deps_,
                     pretrain_tokens, {{"role", "base"}}).id;
      oracle_id_ = add("pretrain", named("oracle"), with({"pretrain"}, {"--pretrain.target", "oracle"}), data_deps_,
                       pretrain_tokens, {{"role", "oracle"}}).id;
      reseed_ = own;
      attacked(base_id_), attacked(oracle_id_);
    }
    for (auto& method : spec_.methods) add_method(method);
    for (auto& which : spec_.controls) add_control(which, which == "base" ? base_id_ : oracle_id_);
  }
  void attacked(const std::string& id) {
    if (std::find(models_.begin(), models_.end(), id) == models_.end()) models_.push_back(id);
  }

  // The caches' directory: the spec's root (absolute, as jobs run anywhere), else OUT/cache.
  std::string cache_root() const {
    return spec_.cache_root.empty() ? plan_.out + "/cache" : std::filesystem::absolute(spec_.cache_root).string();
  }

  // A signal's name in job names: its ':' (before a dtype) as '-'.
  static std::string file_safe(std::string name) {
    std::replace(name.begin(), name.end(), ':', '-');
    return name;
  }

  // Distilling from a teacher with one signal: its cache job (none online), and
  // the arguments and dependencies of a student. Names carry the signal unless
  // it is the setting's own (its distill.cache_k and cache_samples), so that a
  // sweep adding signals to an earlier one on the same --out reuses its jobs.
  struct Teaching {
    std::vector<std::string> args, deps;
    std::string suffix;  // "-<signal>" or ""
    double tokens = 0;   // a student's, the teacher's online forward pass included
  };
  Teaching teaching(const DistillSignal& signal, const std::string& teacher_id, const std::string& cache_name,
                    const std::string& method) {
    const double distill_tokens = double(cfg_.distill.steps) * global_batch_ * window_;
    const std::string teacher = ckpt(plan_.job(teacher_id));
    Teaching t;
    const std::string dtype = signal.dtype.empty() ? cfg_.distill.cache_dtype : signal.dtype;
    t.suffix = !signal.online && signal.k == cfg_.distill.cache_k && signal.samples == cfg_.distill.cache_samples &&
                       dtype == cfg_.distill.cache_dtype
                   ? ""
                   : "-" + file_safe(signal.name);
    t.deps = {teacher_id};
    t.args = {"--teacher", teacher, "--distill.cache_dir", cache_root()};
    if (signal.online) {
      t.args.insert(t.args.end(), {"--distill.cache", "off"});
      t.tokens = distill_tokens * 4.0 / 3.0;
      return t;
    }
    std::vector<std::string> shape = {"--distill.cache_k", std::to_string(signal.k), "--distill.cache_samples",
                                      std::to_string(signal.samples)};
    if (dtype != cfg_.distill.cache_dtype) shape.insert(shape.end(), {"--distill.cache_dtype", dtype});
    std::vector<std::string> cache_tail = {"--teacher", teacher, "--tokens", std::to_string(int64_t(distill_tokens)),
                                           "--distill.cache_dir", cache_root()};
    cache_tail.insert(cache_tail.end(), shape.begin(), shape.end());
    t.deps.push_back(add("cache", named(cache_name + t.suffix), with({"cache-logits"}, cache_tail), {teacher_id},
                         distill_tokens / 3, {{"role", "cache"}, {"method", method}, {"signal", signal.name}}).id);
    t.args.insert(t.args.end(), {"--distill.cache", "require"});
    t.args.insert(t.args.end(), shape.begin(), shape.end());
    t.tokens = distill_tokens;
    return t;
  }

  // A method's teacher (attacked), and its students when it is distilled.
  void add_method(const std::string& method) {
    // The method's own [unlearn.<method>] keys come last, replacing the spec's general ones for it alone.
    std::vector<std::string> unlearn_tail = {"--base", ckpt(plan_.job(base_id_)), "--unlearn.method",
                                              teacher_method(method)};
    const Config* unlearn_cfg = &cfg_;
    if (auto own = spec_.method_overrides.find(method); own != spec_.method_overrides.end()) {
      for (auto& [k, v] : own->second) unlearn_tail.insert(unlearn_tail.end(), {k, v});
      unlearn_cfg = &spec_.method_cfg.at(method);
    }
    const std::string teacher_id =
        add("unlearn", named("unlearn-" + method),
            with({"unlearn"}, unlearn_tail, stage_owned_keys(TrainingStage::Unlearn)), {base_id_},
            2.0 * unlearn_cfg->unlearn.steps * global_batch_ * window_, {{"role", "unlearn"}, {"method", method}}).id;
    attacked(teacher_id);
    if (std::find(spec_.distill_methods.begin(), spec_.distill_methods.end(), method) == spec_.distill_methods.end())
      return;  // a teacher that is only attacked
    for (auto& signal : spec_.signals) {
      Teaching t = teaching(signal, teacher_id, "cache-" + method, method);
      for (int64_t seed : spec_.seeds)
        for (double alpha : spec_.alphas)
          for (double beta : spec_.betas) add_student(t, teacher_id, method, signal, seed, alpha, beta);
    }
  }
  void add_student(const Teaching& t, const std::string& teacher_id, const std::string& method,
                   const DistillSignal& signal, int64_t seed, double alpha, double beta) {
    bool fresh = alpha >= 1.0;  // Unlearn-and-Distill: a random student, beta plays no part
    std::vector<std::string> tail = t.args;
    tail.insert(tail.end(), {"--run.seed", std::to_string(seed_of(seed))});
    if (fresh) tail.insert(tail.end(), {"--distill.init", "random"});
    else tail.insert(tail.end(), {"--distill.init", "noised", "--distill.alpha", num(alpha), "--distill.beta", num(beta)});
    std::string name = "distill-" + method + t.suffix + "-a" + num(alpha) + (fresh ? "" : "-b" + num(beta)) + "-s" +
                       std::to_string(seed);
    attacked(add("distill", named(name), with({"distill"}, tail, stage_owned_keys(TrainingStage::Distill)), t.deps,
                 t.tokens,
                 {{"role", "student"}, {"method", method}, {"alpha", num(fresh ? 1.0 : alpha)},
                  {"beta", fresh ? "" : num(beta)}, {"seed", std::to_string(seed)}, {"teacher", teacher_id},
                  {"signal", signal.name}}).id);
  }

  // The controls, per seed: the base and the oracle, each distilled with the
  // Unlearn-and-Distill recipe (a random student, the same budget and stopping
  // rule, the first signal). A student that relearns no faster than the
  // distilled base owes its robustness to distillation itself, not to the
  // unlearning before it; the distilled oracle is how robust distillation
  // from a model that never learned the capability leaves a student.
  void add_control(const std::string& which, const std::string& teacher_id) {
    const DistillSignal& signal = spec_.signals.front();
    Teaching t = teaching(signal, teacher_id, "cache-" + which, "");
    for (int64_t seed : spec_.seeds) {
      std::vector<std::string> tail = t.args;
      tail.insert(tail.end(), {"--run.seed", std::to_string(seed_of(seed)), "--distill.init", "random"});
      attacked(add("distill", named("control-distilled-" + which + t.suffix + "-s" + std::to_string(seed)),
                   with({"distill"}, tail, stage_owned_keys(TrainingStage::Distill)), t.deps, t.tokens,
                   {{"role", "control"}, {"method", "distilled-" + which}, {"alpha", "1"}, {"beta", ""},
                    {"seed", std::to_string(seed)}, {"teacher", teacher_id}, {"signal", signal.name}}).id);
    }
  }

  // Every model is attacked at every LR (one job each, so LRs run in parallel),
  // with the batch the spec's pretraining budget gives it (written out, so that
  // the job's hash and command say it), and its replicate's attack seeds.
  void add_attacks() {
    const AttackBatch attack = planned_attack_batch(spec_);
    const double attack_rows = double(attack.rows) * cfg_.relearn.accum * spec_.ranks;  // a step's, over the ranks
    for (auto& model_id : models_) {
      const Job& m = plan_.job(model_id);
      enter_replicate(std::stoi(m.tags.at("replicate")));
      const std::string model_name = m.name;  // it carries its replicate already
      const std::vector<std::string> attack_args = {"--model", ckpt(m), "--steps", std::to_string(spec_.attack_steps),
                                                    "--eval-every", std::to_string(spec_.attack_eval_every),
                                                    "--relearn.batch_size", std::to_string(attack.rows),
                                                    "--relearn.metric", spec_.metric};
      std::vector<std::string> grid_jobs, grid_dirs;
      for (double lr : spec_.attack_lrs) {
        std::vector<std::string> tail = attack_args;
        tail.insert(tail.end(), {"--lrs", num(lr), "--relearn.extend", "0"});
        const Job& job = add("relearn", "relearn-" + model_name + "-lr" + num(lr),
                             with({"relearn"}, tail, stage_owned_keys(TrainingStage::Relearn)), {model_id},
                             double(spec_.attack_steps) * attack_rows * window_,
                             {{"role", "attack"}, {"model", model_id}, {"lr", num(lr)}});
        grid_jobs.push_back(job.id);
        grid_dirs.push_back(job.dir);
      }
      if (cfg_.relearn.extend > 0) add_extension(model_id, model_name, attack_args, grid_jobs, grid_dirs, attack_rows);
    }
  }
  // The grid's extension, once the grid is done: twice its largest LR while the worst case sits there.
  void add_extension(const std::string& model_id, const std::string& model_name, std::vector<std::string> tail,
                     const std::vector<std::string>& grid_jobs, const std::vector<std::string>& grid_dirs,
                     double attack_rows) {
    std::string dirs;
    for (auto& d : grid_dirs) dirs += (dirs.empty() ? "" : ",") + d;
    tail.insert(tail.end(), {"--lrs", num(*std::max_element(spec_.attack_lrs.begin(), spec_.attack_lrs.end())),
                             "--extend-after", dirs});
    add("extend", "relearn-" + model_name + "-extend", with({"relearn"}, tail, stage_owned_keys(TrainingStage::Relearn)),
        grid_jobs, double(cfg_.relearn.extend) * spec_.attack_steps * attack_rows * window_,
        {{"role", "attack"}, {"model", model_id}, {"lr", "extend"}});
  }

  Plan& plan_;
  const SweepSpec& spec_;
  const Config& cfg_;  // budgets and estimates
  std::vector<std::string> common_, reseed_, data_deps_;
  std::vector<std::pair<std::string, std::string>> config_values_;  // the spec's config, every key resolved
  // The command a job kind runs, as stage_reads_key names it.
  static std::string stage_of(const std::string& kind) {
    return kind == "cache" ? "cache-logits" : kind == "extend" ? "relearn" : kind;
  }
  std::vector<std::string> models_;  // ids of every model to attack, in plan order
  std::string base_id_, oracle_id_;  // this replicate's base and oracle
  double global_batch_ = 0, window_ = 0;
  int replicate_ = 1;
};

}  // namespace

Plan make_plan(const SweepSpec& spec, const std::string& out_dir, const std::string& undo_binary) {
  Plan plan;
  plan.spec = spec;
  plan.out = absolute(out_dir);
  plan.undo_binary = absolute(undo_binary);
  plan.cwd = absolute(".");
  // Paths reach job scripts shell-quoted (shell_quote), but also #SBATCH lines
  // and newline-separated task lists, where no quoting helps: a control
  // character in one is refused rather than written.
  for (auto [what, value] : {std::pair{"--out", plan.out}, {"the undo binary", plan.undo_binary},
                             {"the working directory", plan.cwd}, {"sweep.config", absolute(spec.config)}})
    for (char c : value)
      UNDO_INPUT_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f, what, " '", value,
                       "' contains a control character (a newline?): job scripts cannot hold it safely");
  PlanBuilder(plan).build();
  // Order by kind (dependencies always point to an earlier kind).
  std::stable_sort(plan.jobs.begin(), plan.jobs.end(), [](const Job& a, const Job& b) {
    auto rank = [](const std::string& k) {
      auto& ks = job_kinds();
      return std::find(ks.begin(), ks.end(), k) - ks.begin();
    };
    return rank(a.kind) < rank(b.kind);
  });
  return plan;
}

AttackBatch planned_attack_batch(const SweepSpec& spec) {
  Config c = spec.cfg;
  c.relearn.steps = spec.attack_steps;
  return attack_batch(c);
}

// What the spec lets the support rules judge before anything runs: its grid,
// its replicates and its evaluation's size (results/support.h).
std::string planned_support(const SweepSpec& spec) {
  SweepEvidence e;
  const Config& cfg = spec.cfg;
  e.metric = spec.metric == "auto" ? (cfg.eval.arith_per_op > 0 ? "forget_acc" : "forget_ce") : spec.metric;
  e.attack_lrs = int(spec.attack_lrs.size());
  e.attack_steps = spec.attack_steps;
  e.replicates = spec.replicates > 1 ? spec.replicates : int(spec.seeds.size());
  e.varied = replicates_vary(spec);
  e.independent = spec.replicates > 1;
  e.eval_per_op_format = cfg.eval.arith_per_op;
  e.eval_windows = int64_t(cfg.eval.batches) * cfg.train.batch_size;
  const AttackBatch attack = planned_attack_batch(spec);
  std::ostringstream out;
  out << "attack: " << attack.rows << " row(s) per rank x " << cfg.relearn.accum << " micro-batch(es) a step, "
      << spec.attack_steps << " steps: it replays ";
  if (std::isfinite(attack.forget_share))
    out << std::setprecision(3) << 100 * attack.forget_share << "% of the forget tokens pretraining saw";
  else
    out << "forget tokens pretraining never saw (data.base_mix holds no forget stream)";
  out << " (the paper: about 1%)\n";
  auto gaps = plan_support_gaps(e);
  if (gaps.empty()) return out.str() + "support: the grid, the replicates and the evaluation meet the support rules\n";
  out << "support: this sweep runs, but its robustness figures will be marked, never bare:\n";
  for (auto& g : gaps) out << "  - " << g << "\n";
  return out.str();
}

std::string plan_text(const Plan& plan) {
  std::ostringstream os;
  double total = 0;
  os << std::left << std::setw(9) << "kind" << std::setw(58) << "job" << std::right << std::setw(14)
     << "est_tokens" << "  needs\n";
  for (auto& j : plan.jobs) {
    total += j.est_tokens;
    os << std::left << std::setw(9) << j.kind << std::setw(58) << (j.name + "-" + j.id) << std::right
       << std::setw(14) << std::fixed << std::setprecision(0) << j.est_tokens << "  ";
    for (size_t i = 0; i < j.deps.size(); ++i) os << (i ? ", " : "") << plan.job(j.deps[i]).name;
    os << "\n";
  }
  os << plan.jobs.size() << " jobs, " << std::fixed << std::setprecision(0) << total
     << " training-token equivalents in all (forward-only passes count 1/3)\n\n";
  // What a rank of a job holds at this sweep's ranks per job, and on larger clusters.
  std::vector<int> worlds{plan.spec.ranks};
  for (int w : {8, 64})
    if (w != plan.spec.ranks) worlds.push_back(w);
  os << rank_memory_table(plan.spec.cfg.model, plan.spec.cfg.data.tokenizer_vocab, worlds);
  os << "\n" << planned_support(plan.spec);
  return os.str();
}

void write_job_scripts(const Plan& plan, bool slurm) {
  for (auto& j : plan.jobs) {
    make_dirs(j.dir);
    std::ostringstream s;
    s << "#!/usr/bin/env bash\n"
      << "# undo sweep job " << j.name << " (" << j.id << "), written by `undo sweep run`; safe to rerun:\n"
      << "# a finished stage is not rerun by the sweep, a cut one resumes from its checkpoint.\n"
      << "cd " << shell_quote(plan.cwd) << " || exit 1\n"
      << "dir=" << shell_quote(j.dir) << "\n"
      << "rm -f \"$dir/job.failed\" \"$dir/job.submitted\"\n"
      << "# This Slurm task as scontrol and scancel name it: ARRAY_TASK, or the job id outside an array.\n"
      << "task=\"${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-}}${SLURM_ARRAY_TASK_ID:+_$SLURM_ARRAY_TASK_ID}\"\n"
      << "echo \"pid $$ host $(hostname) started $(date -u +%FT%TZ)${SLURM_JOB_ID:+ slurm $task}\" > "
         "\"$dir/job.running\"\n"
      << "echo \"== $(date -u +%FT%TZ) $(hostname)${SLURM_JOB_ID:+ slurm job $SLURM_JOB_ID}\" >> \"$dir/log\"\n"
      << plan.command(j, slurm) << " >> \"$dir/log\" 2>&1 &\n"
      << "child=$!\n"
      << "# The warning signal (sbatch --signal), a TERM (the local runner passes its own on) or a\n"
      << "# Ctrl-C: the stage checkpoints and exits 75 (a background child ignores INT itself).\n"
      << "trap 'kill -USR1 $child 2>/dev/null' USR1 TERM INT\n"
      << "while :; do wait $child; rc=$?; kill -0 $child 2>/dev/null || break; done\n"
      << "rm -f \"$dir/job.running\"\n"
      << "if [[ $rc -eq 0 ]]; then echo \"finished $(date -u +%FT%TZ)\" > \"$dir/job.done\"; exit 0; fi\n"
      << "if [[ $rc -eq 75 && -n ${SLURM_JOB_ID:-} ]]; then\n"
      << "  echo \"checkpointed, requeueing\" >> \"$dir/log\"\n"
      << "  scontrol requeue \"$task\" && exit 0\n"
      << "fi\n"
      << "# A lost rank (exit 3: a node went away mid-step, and every rank left, naming it): the last\n"
      << "# checkpoint is whole, so the task requeues and resumes, a bounded number of times.\n"
      << "if [[ $rc -eq 3 && -n ${SLURM_JOB_ID:-} ]]; then\n"
      << "  lost=$(( $(cat \"$dir/job.lost\" 2>/dev/null || echo 0) + 1 ))\n"
      << "  echo \"$lost\" > \"$dir/job.lost\"\n"
      << "  if (( lost <= " << plan.spec.slurm.lost_rank_requeues << " )); then\n"
      << "    echo \"a rank was lost (exit 3); requeueing to resume from the last checkpoint ($lost of at most "
      << plan.spec.slurm.lost_rank_requeues << ")\" >> \"$dir/log\"\n"
      << "    scontrol requeue \"$task\" && exit 0\n"
      << "  fi\n"
      << "fi\n"
      << "echo \"exit code $rc $(date -u +%FT%TZ)\" > \"$dir/job.failed\"\n"
      << "exit $rc\n";
    write_file_atomic(j.dir + "/cmd.sh", s.str());
  }
}

}  // namespace undo
