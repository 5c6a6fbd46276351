// The sweep launcher: grid expansion and sharing, the local executor (a failing
// job reported, its dependants not started; a killed job resumed on rerun),
// collect and report, and the Slurm executor against the local one.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "model/transformer.h"
#include "results/results_table.h"
#include "results/support.h"
#include "sweep/plan.h"
#include "sweep/rank_memory.h"
#include "sweep/state.h"
#include "sweep_wait.h"
#include "test_util.h"

using namespace undo;

namespace {

// A sweep spec over the tests' tiny data: small budgets, `grid` lines in [sweep].
std::string write_spec(const std::string& dir, const std::string& grid, const std::string& extra = "") {
  // The tests' defaults, less any key that `extra` sets itself (a key given
  // twice in a spec is refused).
  std::set<std::string> given;
  std::istringstream in(extra);
  std::string section;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] == '[') section = line.substr(1, line.find(']') - 1);
    else if (auto eq = line.find(" ="); eq != std::string::npos) given.insert(section + "." + line.substr(0, eq));
  }
  const std::vector<std::tuple<std::string, std::string, std::string>> defaults = {
      {"data", "dir", test::tiny_data_dir()}, {"train", "steps", "30"},   {"unlearn", "steps", "5"},
      {"unlearn", "lr", "1e-3"},              {"distill", "steps", "10"}, {"distill", "check_every", "5"},
      {"eval", "arith_per_op", "5"},          {"eval", "batches", "1"}};
  std::ostringstream text;
  text << "[sweep]\nconfig = " << UNDO_SOURCE_DIR << "/configs/tiny.ini\nprepare_data = 0\nthreads = 1\n"
       << "attack_steps = 10\nattack_eval_every = 5\n" << grid << "\n";
  std::string open;  // one header per section, as a user writes it
  for (auto& [sec, key, value] : defaults)
    if (!given.count(sec + "." + key)) {
      if (sec != open) text << "[" << sec << "]\n";
      open = sec;
      text << key << " = " << value << "\n";
    }
  text << extra;
  std::string path = dir + "/spec.ini";
  std::ofstream(path) << text.str();
  return path;
}

const std::string kSmallGrid = "methods = maxent\nalphas = 1\nattack_lrs = 1e-3";

std::string sweep(const std::string& action, const std::string& spec, const std::string& out, int* rc,
                  const std::string& env = "", const std::string& more = "") {
  std::string output;
  std::string cmd = (env.empty() ? "" : "env " + env + " ") + std::string(UNDO_BINARY) + " sweep " + action +
                    " --spec " + spec + " --out " + out + " " + more + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) output.append(buf, n);
  int status = ::pclose(p);
  *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return output;
}

int count_kind(const Plan& plan, const std::string& kind) {
  return int(std::count_if(plan.jobs.begin(), plan.jobs.end(), [&](const Job& j) { return j.kind == kind; }));
}

// `undo sweep run --jobs 1` in the background, its output in `log`: the pipe
// to pclose (which waits for it) and, in `pid`, the runner's own process.
FILE* start_runner(const std::string& spec, const std::string& out, const std::string& log, pid_t* pid) {
  FILE* p = ::popen(("echo $$; exec " + std::string(UNDO_BINARY) + " sweep run --spec " + spec + " --out " + out +
                     " --jobs 1 > " + log + " 2>&1")
                        .c_str(),
                    "r");
  char buf[64] = {0};
  *pid = p && std::fgets(buf, sizeof buf, p) ? pid_t(std::atol(buf)) : 0;
  return p;
}

}  // namespace

TEST(Sweep, GridExpandsIntoASharedContentAddressedGraph) {
  auto dir = test::temp_dir("sweep_grid");
  auto spec = write_spec(dir, "methods = maxent,graddiff\nalphas = 1,0.5,0.3\nbetas = 0.1,0.05\nseeds = 1,2\n"
                              "attack_lrs = 1e-3,1e-4");
  Plan plan = make_plan(read_sweep_spec(spec), dir + "/out", UNDO_BINARY);
  EXPECT_EQ(count_kind(plan, "data"), 0);
  EXPECT_EQ(count_kind(plan, "pretrain"), 2);  // one base, one oracle
  EXPECT_EQ(count_kind(plan, "unlearn"), 2);   // one teacher per method
  EXPECT_EQ(count_kind(plan, "cache"), 4);  // one logit cache per teacher, and the base's and oracle's for the controls
  // Per method and seed: one Unlearn-and-Distill student (beta plays no part) + 2 alphas x 2 betas.
  EXPECT_EQ(count_kind(plan, "distill"), 2 * 2 * (1 + 2 * 2) + 2 * 2);  // + the distilled base and oracle per seed
  EXPECT_EQ(count_kind(plan, "relearn"), (2 + 2 + 20 + 4) * 2);  // every model at every LR
  EXPECT_EQ(count_kind(plan, "extend"), 2 + 2 + 20 + 4);         // and its grid's extension
  std::set<std::string> ids, dirs;
  for (auto& j : plan.jobs) {
    ids.insert(j.id);
    dirs.insert(j.dir);
    for (auto& d : j.deps) EXPECT_NO_THROW(plan.job(d));
  }
  EXPECT_EQ(ids.size(), plan.jobs.size());
  EXPECT_EQ(dirs.size(), plan.jobs.size());
  // Students of a method share its teacher's one cache.
  std::set<std::string> caches_used;
  for (auto& j : plan.jobs)
    if (j.kind == "distill") caches_used.insert(j.deps.back());
  EXPECT_EQ(caches_used.size(), 4u);
  // The spec's [train] steps is the pretraining budget: stages with budgets of their own do not get it.
  for (auto& j : plan.jobs) {
    bool has_steps = std::find(j.args.begin(), j.args.end(), "--train.steps") != j.args.end();
    EXPECT_EQ(has_steps, j.kind == "pretrain" || j.kind == "cache") << j.name;
  }
  // Content addressing: the same spec plans the same ids; another attack grid keeps the models' ids;
  // another pretraining budget changes everything downstream of it.
  Plan again = make_plan(read_sweep_spec(spec), dir + "/out", UNDO_BINARY);
  EXPECT_EQ(again.jobs.front().id, plan.jobs.front().id);
  auto other = write_spec(test::temp_dir("sweep_grid_lr"), "methods = maxent\nattack_lrs = 5e-4");
  Plan lr_only = make_plan(read_sweep_spec(other), dir + "/out", UNDO_BINARY);
  EXPECT_EQ(lr_only.jobs[0].id, plan.jobs[0].id);
  // run.dir is replaced by each job's --run-dir: another [run] dir leaves every job as it was.
  auto moved = write_spec(test::temp_dir("sweep_grid_run_dir"), "methods = maxent,graddiff\nalphas = 1,0.5,0.3\n"
                          "betas = 0.1,0.05\nseeds = 1,2\nattack_lrs = 1e-3,1e-4", "[run]\ndir = elsewhere\n");
  Plan moved_plan = make_plan(read_sweep_spec(moved), dir + "/out", UNDO_BINARY);
  ASSERT_EQ(moved_plan.jobs.size(), plan.jobs.size());
  for (size_t i = 0; i < plan.jobs.size(); ++i) EXPECT_EQ(moved_plan.jobs[i].id, plan.jobs[i].id) << plan.jobs[i].name;
  auto longer = write_spec(test::temp_dir("sweep_grid_long"), "methods = maxent", "[train]\nsteps = 31\n");
  Plan changed = make_plan(read_sweep_spec(longer), dir + "/out", UNDO_BINARY);
  EXPECT_NE(changed.jobs[0].id, plan.jobs[0].id);
  // `plan` prints the graph with estimated compute.
  int rc = 0;
  auto text = sweep("plan", spec, dir + "/out", &rc);
  EXPECT_EQ(rc, 0) << text;
  EXPECT_NE(text.find(std::to_string(plan.jobs.size()) + " jobs"), std::string::npos) << text;
  EXPECT_NE(text.find("unlearn-graddiff"), std::string::npos) << text;
}

// [unlearn.<method>]: one method's own unlearn keys reach its teacher alone (replacing the spec's [unlearn]
// values there); every other job keeps the id it had without the section.
TEST(Sweep, AMethodsOwnSectionReachesItsTeacherAlone) {
  auto dir = test::temp_dir("sweep_method_keys");
  const std::string grid = "methods = maxent,rmu\nalphas = 1\nattack_lrs = 1e-3";
  Plan plain = make_plan(read_sweep_spec(write_spec(test::temp_dir("sweep_method_plain"), grid)), dir + "/out", UNDO_BINARY);
  SweepSpec spec = read_sweep_spec(write_spec(test::temp_dir("sweep_method_own"), grid, "[unlearn.rmu]\nlr = 2e-3\nrmu_c = 20\nsteps = 7\n"));
  EXPECT_DOUBLE_EQ(spec.cfg.unlearn.lr, 1e-3);  // the general section's, as before
  EXPECT_DOUBLE_EQ(spec.method_cfg.at("rmu").unlearn.lr, 2e-3);
  EXPECT_EQ(spec.method_cfg.at("rmu").unlearn.steps, 7);
  Plan own = make_plan(spec, dir + "/out", UNDO_BINARY);
  ASSERT_EQ(own.jobs.size(), plain.jobs.size());
  auto value_of = [](const Job& j, const std::string& key) {
    std::vector<std::string> values;  // every occurrence: a replaced key must not linger
    for (size_t i = 0; i + 1 < j.args.size(); ++i)
      if (j.args[i] == key) values.push_back(j.args[i + 1]);
    return values;
  };
  for (size_t i = 0; i < own.jobs.size(); ++i) {
    const Job& j = own.jobs[i];
    bool from_rmu = j.name.find("rmu") != std::string::npos;
    EXPECT_EQ(j.id == plain.jobs[i].id, !from_rmu) << j.name;  // RMU's teacher and all made from it change
    if (j.name == "unlearn-rmu") {
      EXPECT_EQ(value_of(j, "--unlearn.lr"), std::vector<std::string>{"2e-3"});
      EXPECT_EQ(value_of(j, "--unlearn.rmu_c"), std::vector<std::string>{"20"});
      EXPECT_EQ(value_of(j, "--unlearn.steps"), std::vector<std::string>{"7"});
    } else if (j.kind == "unlearn") {
      EXPECT_EQ(value_of(j, "--unlearn.lr"), std::vector<std::string>{"1e-3"}) << j.name;
      EXPECT_TRUE(value_of(j, "--unlearn.rmu_c").empty()) << j.name;
    }
  }
  // Refused: a method the sweep does not run, an unknown method, the method key itself, a bad key or value.
  int rc = 0;
  auto refused = [&](const std::string& grid_lines, const std::string& extra, const std::string& message) {
    auto out = sweep("plan", write_spec(dir, grid_lines, extra), dir + "/out", &rc);
    EXPECT_EQ(rc, 2) << out;
    EXPECT_NE(out.find(message), std::string::npos) << out;
  };
  refused(grid, "[unlearn.graddiff]\nlr = 1e-3\n", "[unlearn.graddiff] but 'graddiff' is not one of sweep.methods");
  refused(grid, "[unlearn.forgetful]\nlr = 1e-3\n", "unknown method 'forgetful'");
  refused(grid, "[unlearn.rmu]\nmethod = maxent\n", "[unlearn.rmu] cannot set method");
  refused(grid, "[unlearn.rmu]\nrmu_k = 3\n", "rmu_k");
  refused(grid, "[unlearn.rmu]\nlr = fast\n", "fast");
}

// METHOD+sam is a teacher of its own: the method, wrapped in SAM with its section's radius, beside the
// plain method's teacher; without a radius it is refused before anything runs.
TEST(Sweep, ASamTeacherRunsItsMethodInSamBesideThePlainOne) {
  auto dir = test::temp_dir("sweep_sam_teacher");
  const std::string grid = "methods = maxent,maxent+sam,npo\ndistill_methods = maxent+sam\nalphas = 1\nattack_lrs = 1e-3";
  SweepSpec spec = read_sweep_spec(write_spec(dir, grid, "[unlearn.maxent+sam]\nsam_rho = 0.02\n"));
  Plan plan = make_plan(spec, dir + "/out", UNDO_BINARY);
  auto arg = [](const Job& j, const std::string& key) {
    auto it = std::find(j.args.begin(), j.args.end(), key);
    return it == j.args.end() ? std::string() : *(it + 1);
  };
  std::map<std::string, const Job*> teachers;
  int students = 0;
  for (auto& j : plan.jobs) {
    if (j.kind == "unlearn") teachers[j.tags.at("method")] = &j;
    if (j.kind == "distill" && j.tags.at("role") == "student") {
      ++students;
      EXPECT_EQ(j.tags.at("method"), "maxent+sam") << j.name;
    }
  }
  ASSERT_EQ(teachers.size(), 3u);
  EXPECT_EQ(arg(*teachers.at("maxent+sam"), "--unlearn.method"), "maxent");
  EXPECT_EQ(arg(*teachers.at("maxent+sam"), "--unlearn.sam_rho"), "0.02");
  EXPECT_EQ(arg(*teachers.at("maxent"), "--unlearn.sam_rho"), "");
  EXPECT_EQ(arg(*teachers.at("npo"), "--unlearn.method"), "npo");
  EXPECT_NE(teachers.at("maxent")->id, teachers.at("maxent+sam")->id);
  EXPECT_EQ(students, 1);
  int rc = 0;
  auto out = sweep("plan", write_spec(dir, grid), dir + "/out", &rc);
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("teacher 'maxent+sam' runs SAM but its unlearn.sam_rho is 0"), std::string::npos) << out;
  out = sweep("plan", write_spec(dir, grid, "[unlearn]\nsam_rho = 0.02\n"), dir + "/out", &rc);
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("teachers 'maxent' and 'maxent+sam' would both run SAM"), std::string::npos) << out;
  out = sweep("plan", write_spec(dir, "methods = maxent+rho\nalphas = 1\nattack_lrs = 1e-3"), dir + "/out", &rc);
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("unknown method 'maxent+rho'"), std::string::npos) << out;
}

// Replicates reseed the whole pipeline: replicate 1 is the sweep without
// replicates (its jobs keep their ids), every later one has its own base,
// oracle, teacher, caches, students and attacks, each stage with its own
// seeds; base_oracle shares replicate 1's base and oracle.
TEST(Sweep, ReplicatesReseedEveryStage) {
  auto dir = test::temp_dir("sweep_replicates");
  Plan one = make_plan(read_sweep_spec(write_spec(dir, kSmallGrid)), dir + "/out", UNDO_BINARY);
  Plan three = make_plan(read_sweep_spec(write_spec(dir, kSmallGrid + "\nreplicates = 3")), dir + "/out", UNDO_BINARY);
  EXPECT_EQ(three.jobs.size(), 3 * one.jobs.size());
  std::set<std::string> one_ids;
  for (auto& j : one.jobs) one_ids.insert(j.id);
  auto arg = [](const Job& j, const std::string& key) {
    auto it = std::find(j.args.begin(), j.args.end(), key);
    return it == j.args.end() ? std::string() : *(it + 1);
  };
  std::map<std::string, std::set<std::string>> seeds_by_kind;
  for (auto& j : three.jobs) {
    const std::string rep = j.tags.at("replicate");
    EXPECT_EQ(one_ids.count(j.id), rep == "1" ? 1u : 0u) << j.name;
    if (rep == "1") continue;
    EXPECT_NE(j.name.find("-r" + rep), std::string::npos) << j.name;
    seeds_by_kind[j.kind].insert(arg(j, "--run.seed"));
    const std::string offset = std::to_string(1 + 1000 * std::stoi(rep));  // the configs' seeds are 1
    if (j.kind == "relearn") {
      EXPECT_EQ(arg(j, "--relearn.seeds"), offset) << j.name;
    }
    if (j.kind == "cache") {
      EXPECT_EQ(arg(j, "--distill.data_seed"), offset) << j.name;
    }
  }
  for (auto kind : {"pretrain", "unlearn", "cache", "distill", "relearn"})
    EXPECT_EQ(seeds_by_kind[kind].size(), 2u) << kind << ": one seed per later replicate";
  EXPECT_EQ(replicates_vary(read_sweep_spec(write_spec(dir, kSmallGrid + "\nreplicates = 3"))), kEveryStageVaries);
  // Shared base and oracle: one of each, the rest replicated.
  Plan shared = make_plan(read_sweep_spec(write_spec(dir, kSmallGrid + "\nreplicates = 3\nreplicate_shared = base_oracle")),
                          dir + "/out", UNDO_BINARY);
  EXPECT_EQ(count_kind(shared, "pretrain"), 2);
  EXPECT_EQ(count_kind(shared, "unlearn"), 3);
  EXPECT_EQ(count_kind(shared, "distill"), 3 * count_kind(one, "distill"));
  int rc = 0;
  auto out = sweep("plan", write_spec(dir, kSmallGrid + "\nreplicate_shared = data"), dir + "/out", &rc);
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("sweep.replicate_shared: 'data' (none | base_oracle)"), std::string::npos) << out;
  // The plan says before anything runs that 3 replicates are too few, and that they are independent.
  out = sweep("plan", write_spec(dir, kSmallGrid + "\nreplicates = 3"), dir + "/out", &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("n = 3 replicates varying whole pipeline (needed: 5"), std::string::npos) << out;
}

// Several distillation signals: one cache per teacher and cached signal, a
// student per signal (named by it), online students without a cache, and the
// control on the first signal. A job's own key replaces the spec's override.
TEST(Sweep, SignalsPlanOneCachePerTeacherAndSignal) {
  auto dir = test::temp_dir("sweep_signals");
  auto spec = write_spec(dir, "methods = maxent\nalphas = 1\nattack_lrs = 1e-3\nsignals = top8,top8+s4,online\n"
                              "controls = base",
                         "[distill]\ncache_k = 16\n");
  Plan plan = make_plan(read_sweep_spec(spec), dir + "/out", UNDO_BINARY);
  EXPECT_EQ(count_kind(plan, "cache"), 2 + 1);
  EXPECT_EQ(count_kind(plan, "distill"), 3 + 1);
  auto arg = [](const Job& j, const std::string& key) {
    auto it = std::find(j.args.begin(), j.args.end(), key);
    EXPECT_EQ(std::count(j.args.begin(), j.args.end(), key), it == j.args.end() ? 0 : 1) << j.name << " " << key;
    return it == j.args.end() ? std::string() : *(it + 1);
  };
  std::set<std::string> names;
  for (auto& j : plan.jobs) {
    if (j.kind != "distill") continue;
    names.insert(j.name);
    if (j.tags.at("signal") == "online") {
      EXPECT_EQ(arg(j, "--distill.cache"), "off");
      EXPECT_EQ(j.deps.size(), 1u);  // the teacher only
    } else {
      EXPECT_EQ(arg(j, "--distill.cache"), "require");
      EXPECT_EQ(arg(j, "--distill.cache_k"), "8");
      EXPECT_EQ(arg(j, "--distill.cache_samples"), j.tags.at("signal") == "top8+s4" ? "4" : "0");
      EXPECT_EQ(arg(plan.job(j.deps.back()), "--distill.cache_samples"), arg(j, "--distill.cache_samples"));
    }
  }
  EXPECT_EQ(names, (std::set<std::string>{"distill-maxent-top8-a1-s1", "distill-maxent-top8+s4-a1-s1",
                                          "distill-maxent-online-a1-s1", "control-distilled-base-top8-s1"}));
  // The setting's own signal (the default: 12 draws in q8) keeps the names a single-signal sweep gives.
  auto with_default =
      write_spec(dir, "methods = maxent\nalphas = 1\nattack_lrs = 1e-3\nsignals = s12:q8,online\ncontrols = base");
  std::set<std::string> default_names;
  for (auto& j : make_plan(read_sweep_spec(with_default), dir + "/out", UNDO_BINARY).jobs)
    if (j.kind == "distill" || j.kind == "cache") default_names.insert(j.name);
  EXPECT_EQ(default_names, (std::set<std::string>{"cache-maxent", "cache-base", "distill-maxent-a1-s1",
                                                  "distill-maxent-online-a1-s1", "control-distilled-base-s1"}));
  // Pure sampling and a dtype: the dtype reaches the cache and the student, the name is file-safe;
  // a cache root shared with other sweeps replaces OUT/cache in both.
  auto sampled = write_spec(dir, "methods = maxent\nalphas = 1\nattack_lrs = 1e-3\nsignals = s8:f16\n"
                                 "controls = none\ncache_root = " + dir + "/shared-caches");
  Plan sampled_plan = make_plan(read_sweep_spec(sampled), dir + "/out", UNDO_BINARY);
  int sampled_jobs = 0;
  for (auto& j : sampled_plan.jobs) {
    if (j.kind != "distill" && j.kind != "cache") continue;
    ++sampled_jobs;
    EXPECT_EQ(j.name, j.kind == "cache" ? "cache-maxent-s8-f16" : "distill-maxent-s8-f16-a1-s1");
    EXPECT_EQ(arg(j, "--distill.cache_k"), "0");
    EXPECT_EQ(arg(j, "--distill.cache_samples"), "8");
    EXPECT_EQ(arg(j, "--distill.cache_dtype"), "f16");
    EXPECT_EQ(arg(j, "--distill.cache_dir"), dir + "/shared-caches");
  }
  EXPECT_EQ(sampled_jobs, 2);
  // Teachers that are only attacked: no cache, no students, their attacks all the same.
  auto attacked_only = write_spec(dir, "methods = maxent,graddiff,rmu\ndistill_methods = maxent\nalphas = 1\n"
                                       "attack_lrs = 1e-3\ncontrols = base");
  Plan three = make_plan(read_sweep_spec(attacked_only), dir + "/out", UNDO_BINARY);
  EXPECT_EQ(count_kind(three, "unlearn"), 3);
  EXPECT_EQ(count_kind(three, "cache"), 1 + 1);
  EXPECT_EQ(count_kind(three, "distill"), 1 + 1);
  EXPECT_EQ(count_kind(three, "relearn"), 2 + 3 + 2);
  EXPECT_EQ(count_kind(three, "extend"), 2 + 3 + 2);
  int rc = 0;
  auto out = sweep("plan", write_spec(dir, kSmallGrid + "\ndistill_methods = rmu"), dir + "/out", &rc);
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("'rmu' is not one of sweep.methods"), std::string::npos) << out;
  out = sweep("plan", write_spec(dir, kSmallGrid + "\ncache = 1\nsignals = top8"), dir + "/out", &rc);
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("sweep.cache and sweep.signals both given"), std::string::npos) << out;
  out = sweep("plan", write_spec(dir, kSmallGrid + "\nsignals = top8,full"), dir + "/out", &rc);
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("distillation signal 'full'"), std::string::npos) << out;
  out = sweep("plan", write_spec(dir, kSmallGrid + "\nsignals = s12:f8"), dir + "/out", &rc);
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("has dtype 'f8' (f32 | f16 | q8)"), std::string::npos) << out;
  out = sweep("plan", write_spec(dir, kSmallGrid + "\ncontrols = teacher"), dir + "/out", &rc);
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("sweep.controls: control 'teacher' (base | oracle, or none)"), std::string::npos) << out;
  Plan no_controls = make_plan(read_sweep_spec(write_spec(dir, kSmallGrid + "\ncontrols = none")), dir + "/out", UNDO_BINARY);
  EXPECT_EQ(count_kind(no_controls, "distill"), 1);
  out = sweep("plan", write_spec(dir, kSmallGrid + "\nmetric = accuracy"), dir + "/out", &rc);
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("metric 'accuracy'"), std::string::npos) << out;
  out = sweep("plan", write_spec(dir, kSmallGrid + "\nmetric = forget_mcq_acc"), dir + "/out", &rc);
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("forget_mcq_acc scores the questions of data.forget_mcq, which names none"), std::string::npos)
      << out;
}

// A run with a sampled and an online signal, robustness on forget CE: both
// students train, results and report carry the signal, and the metric is CE.
TEST(Sweep, SampledAndOnlineSignalsRunAndReportOnForgetCe) {
  auto dir = test::temp_dir("sweep_signals_run");
  auto spec = write_spec(dir, "methods = maxent\nalphas = 1\nattack_lrs = 1e-3\nsignals = top8+s4,online\n"
                              "metric = forget_ce");
  int rc = 0;
  auto out = sweep("run", spec, dir + "/out", &rc, "", "--jobs 2");
  ASSERT_EQ(rc, 0) << out;
  auto csv = read_file(dir + "/out/results.csv");
  EXPECT_NE(csv.find("distill-maxent-top8+s4-a1-s1,student,maxent,1,,top8+s4,1,0.001,forget_ce"), std::string::npos)
      << csv;
  EXPECT_NE(csv.find("distill-maxent-online-a1-s1,student,maxent,1,,online,1,0.001,forget_ce"), std::string::npos)
      << csv;
  std::string report;
  ASSERT_EQ(test::run_undo("report " + dir + "/out", &report), 0) << report;
  std::string md = read_file(dir + "/out/report/report.md");
  EXPECT_NE(md.find("| student | maxent | 1 | - | top8+s4 | 1 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| student | maxent | 1 | - | online | 1 |"), std::string::npos) << md;
  EXPECT_NE(md.find("forget CE / retain CE before"), std::string::npos) << md;
}

// Every path reaches a job script through shell_quote; where no quoting can
// help (#SBATCH lines, newline-separated task lists) a control character is
// refused. An --out of '$(touch PWNED)' used to run the command.
TEST(Sweep, HostilePathsAreQuotedOrRefused) {
  auto dir = test::temp_dir("sweep_hostile");
  const std::string pwned = dir + "/PWNED";
  for (std::string s : {std::string("plain"), std::string("it's"), "$(touch " + pwned + ")", "`touch " + pwned + "`",
                        std::string("a b\t\\c"), "'; touch " + pwned + "; '"}) {
    std::string got;
    ASSERT_EQ(test::run_command("bash -c " + shell_quote("printf %s " + shell_quote(s)), &got), 0) << s;
    EXPECT_EQ(got, s);
  }
  // A whole job, planned under such an --out, runs in that very directory.
  const std::string out = dir + "/out '$(touch " + pwned + ")'";
  auto spec = write_spec(dir, kSmallGrid);
  Plan plan = make_plan(read_sweep_spec(spec), out, UNDO_BINARY);
  write_job_scripts(plan, false);
  const Job& base = plan.jobs.front();
  ASSERT_EQ(base.name, "base");
  std::string log;
  EXPECT_EQ(test::run_command("bash " + shell_quote(base.dir + "/cmd.sh") + " 2>&1", &log), 0) << log;
  EXPECT_TRUE(file_exists(base.dir + "/job.done")) << read_file(base.dir + "/log");
  // The Slurm array template takes the task list quoted.
  std::string tmpl = read_file(std::string(UNDO_SOURCE_DIR) + "/slurm/job-array.sbatch.in");
  auto line = tmpl.substr(tmpl.find("tasks=@TASKS@"), 13);
  ASSERT_EQ(line, "tasks=@TASKS@");
  std::string got;
  ASSERT_EQ(test::run_command("bash -c " + shell_quote("tasks=" + shell_quote(out + "/slurm/relearn.tasks") +
                                                       "; printf %s \"$tasks\""),
                              &got),
            0);
  EXPECT_EQ(got, out + "/slurm/relearn.tasks");
  EXPECT_FALSE(file_exists(pwned)) << "a path was run as a command";
  // A newline cannot be quoted into an #SBATCH line or a task list: refused.
  int rc = 0;
  auto text = sweep("plan", spec, shell_quote(dir + "/two\nlines"), &rc);
  EXPECT_EQ(rc, 2) << text;
  EXPECT_NE(text.find("control character"), std::string::npos) << text;
}

// One runner per --out; and a runner killed alone (its jobs' processes go on)
// leaves no stale state: the next runner waits for the orphaned job instead of
// calling its dependants blocked and exiting 0 with nothing done.
TEST(Sweep, OneRunnerPerOutAndAKilledRunnersJobsAreWaitedFor) {
  auto dir = test::temp_dir("sweep_runners");
  auto spec = write_spec(dir, kSmallGrid, "[train]\nsteps = 60\n");
  const std::string out = dir + "/out";
  int rc = 0;
  {
    make_dirs(out);
    FileLock held(out + "/.runner.lock");
    auto text = sweep("run", spec, out, &rc);
    EXPECT_EQ(rc, 2) << text;
    EXPECT_NE(text.find("another `undo sweep run` on this --out"), std::string::npos) << text;
  }
  Plan plan = make_plan(read_sweep_spec(spec), out, UNDO_BINARY);
  const Job& base = plan.jobs.front();
  ASSERT_EQ(base.name, "base");
  pid_t runner = 0;
  FILE* p = start_runner(spec, out, dir + "/first.log", &runner);
  ASSERT_TRUE(p && runner > 0);
  for (int i = 0; i < 600 && !file_exists(base.dir + "/job.running"); ++i) usleep(50000);
  ASSERT_TRUE(file_exists(base.dir + "/job.running")) << read_file(dir + "/first.log");
  ::kill(runner, SIGKILL);  // the runner alone: base's cmd.sh and its undo go on
  ::pclose(p);
  ASSERT_FALSE(job_done(base)) << "base finished before its runner was killed: make it longer";
  auto text = sweep("run", spec, out, &rc);
  EXPECT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("base-" + base.id + " is still running"), std::string::npos) << text;
  for (auto& j : plan.jobs) EXPECT_TRUE(job_done(j)) << j.name;
}

// A TERM to the runner stops the sweep, not only the runner: the running job
// gets it, checkpoints and exits 75, the runner waits for it and exits 75, no
// process is left behind, and a rerun resumes and finishes every job.
TEST(Sweep, ATermToTheRunnerStopsItsJobsAndARerunResumesThem) {
  auto dir = test::temp_dir("sweep_term");
  auto spec = write_spec(dir, kSmallGrid, "[train]\nsteps = 400\nckpt_every = 20\n");
  const std::string out = dir + "/out";
  Plan plan = make_plan(read_sweep_spec(spec), out, UNDO_BINARY);
  const Job& base = plan.jobs.front();
  ASSERT_EQ(base.name, "base");
  pid_t runner = 0;
  FILE* p = start_runner(spec, out, dir + "/first.log", &runner);
  ASSERT_TRUE(p && runner > 0);
  for (int i = 0; i < 600 && !file_exists(base.dir + "/ckpt"); ++i) usleep(50000);
  ASSERT_TRUE(file_exists(base.dir + "/job.running")) << read_file(dir + "/first.log");
  ::kill(runner, SIGTERM);
  const int status = ::pclose(p);  // the runner: it exits once its job has
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 75) << status;
  const std::string log = read_file(dir + "/first.log");
  EXPECT_NE(log.find("passing it to 1 running job(s)"), std::string::npos) << log;
  EXPECT_NE(log.find("stopped by a signal"), std::string::npos) << log;
  EXPECT_NE(read_file(base.dir + "/log").find("stop signal"), std::string::npos) << read_file(base.dir + "/log");
  EXPECT_FALSE(job_done(base));
  std::string procs;
  // "[/]..." matches the jobs' command lines but not this shell's own.
  test::run_command("pgrep -f -- '[/]" + base.dir.substr(1) + "' || true", &procs);
  EXPECT_TRUE(procs.empty()) << "left running: " << procs;
  int rc = 0;
  auto text = sweep("run", spec, out, &rc);
  EXPECT_EQ(rc, 0) << text;
  EXPECT_NE(read_file(base.dir + "/log").find("resuming from"), std::string::npos) << read_file(base.dir + "/log");
  for (auto& j : plan.jobs) EXPECT_TRUE(job_done(j)) << j.name;
}

// A results.csv of another shape, or a summary that is not JSON, is refused
// naming the file and what is missing (it used to be `map::at` or a JSON
// offset with no file).
TEST(Sweep, MalformedResultsAreRefusedByFileAndColumn) {
  auto dir = test::temp_dir("sweep_malformed");
  write_file_atomic(dir + "/results.csv", "model,role,metric\nbase,base,forget_acc\n");
  write_file_atomic(dir + "/curves.csv", "model,step,forget\n");
  std::string out;
  EXPECT_EQ(test::run_undo("report " + dir, &out), 2) << out;
  EXPECT_NE(out.find(dir + "/results.csv' has no column 'method'"), std::string::npos) << out;
  auto spec = write_spec(dir, kSmallGrid);
  Plan plan = make_plan(read_sweep_spec(spec), dir + "/out", UNDO_BINARY);
  const Job& base = plan.jobs.front();
  make_dirs(base.dir);
  write_file_atomic(base.dir + "/job.done", "finished\n");
  write_file_atomic(base.dir + "/summary.json", "[not, json");
  for (auto& j : plan.jobs)  // base's attacks done, so that collect reads its summary
    if ((j.kind == "relearn" || j.kind == "extend") && j.tags.at("model") == base.id) {
      make_dirs(j.dir);
      write_file_atomic(j.dir + "/job.done", "finished\n");
      write_file_atomic(j.dir + "/attack.jsonl", "{\"lr\": 0.001, \"seed\": 1, \"step\": 0, \"forget_ce\": 3}\n");
    }
  int rc = 0;
  auto text = sweep("collect", spec, dir + "/out", &rc);
  EXPECT_NE(rc, 0) << text;
  EXPECT_NE(text.find(base.dir + "/summary.json' is not a summary"), std::string::npos) << text;
}

TEST(Sweep, BadSpecsAreRefusedBeforeAnythingRuns) {
  auto dir = test::temp_dir("sweep_bad");
  int rc = 0;
  auto out = sweep("plan", write_spec(dir, "methods = maxent\nalphas = 1.5"), dir + "/out", &rc);
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("alpha 1.5"), std::string::npos) << out;
  out = sweep("plan", write_spec(dir, "methods = maxent\nlrs = 1"), dir + "/out", &rc);
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("unknown sweep key 'sweep.lrs'"), std::string::npos) << out;
  out = sweep("plan", write_spec(dir, "methods = maxent", "[train]\nstepz = 3\n"), dir + "/out", &rc);
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("stepz"), std::string::npos) << out;
  // Issue 26, class 6: integers are integers in range (a seed of 1e20 became
  // INT64_MIN, 1.5 became 1), a key given twice is refused (the later one
  // used to win), and a grid too large to plan is refused from its sizes.
  for (auto [body, words] : std::vector<std::pair<std::string, std::string>>{
           {"methods = maxent\nseeds = 1e20", "sweep.seeds"},
           {"methods = maxent\nseeds = 1,1.5", "sweep.seeds"},
           {"methods = maxent\nseeds = -3", "sweep.seeds"},
           {"methods = maxent\nalphas = 1\nmethods = rmu", "'sweep.methods' is given twice (first at "}}) {
    out = sweep("plan", write_spec(dir, body), dir + "/out", &rc);
    EXPECT_EQ(rc, 2) << body << ": " << out;
    EXPECT_NE(out.find(words), std::string::npos) << body << ": " << out;
  }
  out = sweep("plan", write_spec(dir, "methods = maxent", "[train]\nsteps = 3\nsteps = 4\n"), dir + "/out", &rc);
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("'train.steps' is given twice"), std::string::npos) << out;
  std::string seeds, alphas;
  for (int i = 1; i <= 400; ++i) seeds += (i > 1 ? "," : "") + std::to_string(i);
  for (int i = 1; i <= 50; ++i) alphas += (i > 1 ? "," : "") + format_double(i / 50.0);
  out = sweep("plan", write_spec(dir, "methods = maxent,rmu,graddiff\nseeds = " + seeds + "\nalphas = " + alphas),
              dir + "/out", &rc);
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("more than the 100000 a sweep may plan"), std::string::npos) << out;
  EXPECT_FALSE(file_exists(dir + "/out/plan.txt"));
}

TEST(Sweep, LocalRunCollectsAndReports) {
  auto dir = test::temp_dir("sweep_local");
  // One doubling at most: each model's grid is extended to 6e-3 where its worst case sits at 3e-3.
  auto spec = write_spec(dir, "methods = maxent\nalphas = 1,0.5\nattack_lrs = 3e-3,1e-3", "[relearn]\nextend = 1\n");
  int rc = 0;
  // The run, followed as it goes by `sweep status --watch`, which rewrites the
  // dashboard and ends once nothing runs any more.
  const std::string undo = UNDO_BINARY, where = " --spec " + spec + " --out " + dir + "/out";
  std::string watched;
  ASSERT_EQ(test::run_command("(" + undo + " sweep run --jobs 2" + where + " > " + dir + "/run.log 2>&1; echo $? > " +
                                  dir + "/run.rc) & sleep 1; " + undo + " sweep status --watch --every 0.5" + where +
                                  " 2>&1; wait",
                              &watched),
            0);
  auto out = read_file(dir + "/run.log");
  ASSERT_EQ(read_file(dir + "/run.rc"), "0\n") << out;
  EXPECT_NE(out.find("31 jobs: 31 done"), std::string::npos) << out;  // 7 models' grids, each extended
  // Sweep-level progress as jobs finish: done of all, what runs, the time left.
  EXPECT_NE(out.find("31/31 jobs done, 0 running, ETA 0h00m"), std::string::npos) << out;
  EXPECT_NE(watched.find("\nrunning  "), std::string::npos) << "the watch saw jobs run:\n" << watched;
  EXPECT_EQ(watched.rfind("31 jobs: 31 done") + 2, watched.rfind(" jobs: ")) << "the watch ended when all were done";
  std::string page = read_file(dir + "/out/report/index.html");
  for (auto& j : make_plan(read_sweep_spec(spec), dir + "/out", UNDO_BINARY).jobs)
    EXPECT_NE(page.find("id=\"job-" + j.id + "\""), std::string::npos) << j.name;
  auto csv = read_file(dir + "/out/results.csv");
  // 7 models (the distilled base and oracle among them) x 2 LRs, plus the header, plus a row at 6e-3 for
  // each model whose worst case sat at 3e-3 (and for no other).
  const auto results = read_results_csv(dir + "/out/results.csv");
  std::map<std::string, std::set<double>> lrs;
  for (auto& r : results) lrs[r.model].insert(r.attack_lr);
  ASSERT_EQ(lrs.size(), 7u);
  for (auto& r : results) {  // a model left unextended had its worst case inside the grid
    if (!lrs[r.model].count(6e-3) && r.forget_final == r.worst_forget_final) {
      EXPECT_NE(r.attack_lr, 3e-3) << r.model;
    }
  }
  EXPECT_GE(results.size(), 14u);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), int(results.size()) + 1) << csv;
  EXPECT_NE(csv.find("control-distilled-base-s1,control,distilled-base,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("control-distilled-oracle-s1,control,distilled-oracle,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("distill-maxent-a0.5-b0.1-s1,student,maxent,0.5,0.1,s12,1,0.003,forget_acc"),
            std::string::npos)
      << csv;
  // A second run finds everything done and runs nothing.
  out = sweep("run", spec, dir + "/out", &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(out.find("start"), std::string::npos) << out;
  std::string report;
  ASSERT_EQ(test::run_undo("report " + dir + "/out", &report), 0) << report;
  for (auto f : {"report.md", "index.html", "relearn_curves.svg", "compute_robustness.svg"})
    EXPECT_TRUE(file_exists(dir + "/out/report/" + f)) << f;
  EXPECT_FALSE(file_exists(dir + "/out/report/relearn_curves.png")) << "SVG only (results/chart.h)";
  EXPECT_NE(read_file(dir + "/out/report/relearn_curves.svg").find("distill-maxent-a0.5-b0.1-s1"), std::string::npos);
  // This sweep is far too small to carry a robustness figure, and the report says so: the figures are
  // withheld (an oracle that does not relearn) or carry the rules they fail, never printed bare. It
  // said so before its first job too, and results.csv carries each row's marks.
  std::string md = read_file(dir + "/out/report/report.md");
  bool withheld = md.find("Attack too weak to judge:") != std::string::npos;
  bool marked = md.find("Robustness figures carry the rules they fail:") != std::string::npos;
  EXPECT_TRUE(withheld || marked) << md;
  if (marked) {
    EXPECT_NE(md.find("2 attack LRs (< 5)"), std::string::npos) << md;
    EXPECT_NE(md.find("2 attack LRs; n = 1"), std::string::npos) << md;
  }
  if (withheld) {
    EXPECT_NE(md.find("| withheld |"), std::string::npos) << md;
  }
  EXPECT_NE(read_file(dir + "/out/plan.txt").find("support: this sweep runs, but its robustness figures will be marked"),
            std::string::npos);
  // The attack's forget share is stated against the spec's pretraining budget ([train] steps = 30), not
  // the setting's (tiny.ini: 40), which the attack jobs' own configs hold.
  const double share = planned_attack_batch(read_sweep_spec(spec)).forget_share;
  ASSERT_TRUE(std::isfinite(share));
  for (auto& row : read_results_csv(dir + "/out/results.csv")) {
    EXPECT_FALSE(row.support.empty()) << row.model;
    EXPECT_NEAR(row.attack_forget_share, share, 1e-12 * share) << row.model << ": a decimal written and read back";
    // Validation apart: every worst LR chosen on validation, the test figure's standard error and the
    // generalisation set measured beside it.
    EXPECT_EQ(row.selected_on, "validation") << row.model;
    EXPECT_TRUE(std::isfinite(row.forget_final_val)) << row.model;
    EXPECT_TRUE(std::isfinite(row.forget_before_general)) << row.model;
    if (row.role == "base") {
      EXPECT_GE(row.forget_before_se, 0) << "a binomial standard error over 20 problems";
    }
  }
  EXPECT_NE(md.find("| robustness | generalisation |"), std::string::npos) << md;
  EXPECT_NE(md.find("Test set: the base's forget acc before the attack is"), std::string::npos) << md;
  EXPECT_NE(csv.find(",eval_per_op_format,eval_windows"), std::string::npos);
  // Compute counts the teacher's forward pass, alone and shared by the two students of its cache.
  std::istringstream lines(csv);
  std::string header_line, line;
  std::getline(lines, header_line);
  auto cells = [](const std::string& l) {
    std::vector<std::string> out;
    std::string c;
    std::istringstream ss(l);
    while (std::getline(ss, c, ',')) out.push_back(c);
    return out;
  };
  auto header = cells(header_line);
  auto col = [&](const char* name) { return size_t(std::find(header.begin(), header.end(), name) - header.begin()); };
  for (auto name : {"teacher_compute_alone", "teacher_compute_amortised", "total_compute_alone",
                    "total_compute_amortised", "total_compute_consumed", "robustness_mean", "robustness_ci_lo"})
    ASSERT_LT(col(name), header.size()) << name;
  bool checked = false;
  while (std::getline(lines, line)) {
    auto c = cells(line);
    if (c[0] != "distill-maxent-a1-s1") continue;
    double alone = std::stod(c[col("teacher_compute_alone")]), shared = std::stod(c[col("teacher_compute_amortised")]);
    EXPECT_GT(alone, 0);
    EXPECT_NEAR(shared, alone / 2, 1e-12);
    EXPECT_NEAR(std::stod(c[col("total_compute_alone")]) - std::stod(c[col("total_compute_amortised")]), alone / 2, 1e-9);
    // Charged for what it read: a third of its own training tokens, against the oracle's pretraining.
    const double consumed = std::stod(c[col("total_compute_consumed")]) - std::stod(c[col("compute_vs_oracle")]) -
                            std::stod(c[col("unlearn_compute")]);
    EXPECT_NEAR(consumed, std::stod(c[col("compute_vs_oracle")]) / 3, 1e-9);
    checked = true;
  }
  EXPECT_TRUE(checked) << csv;
  EXPECT_NE(md.find("total compute (teacher consumed / shared / alone)"), std::string::npos) << md;
  EXPECT_NE(md.find("Robustness per configuration"), std::string::npos) << md;
}

// Teachers of two methods: each model also gets its robustness against the first method's teacher, the
// one reference on which a teacher attacked as it is and every student compare, and the report shows it.
TEST(Sweep, TeachersOfTwoMethodsCompareOnOneReference) {
  auto dir = test::temp_dir("sweep_common_reference");
  auto spec = write_spec(dir, "methods = maxent,npo\nalphas = 1\nattack_lrs = 1e-3\ncontrols = none\nmetric = forget_ce");
  int rc = 0;
  auto out = sweep("run", spec, dir + "/out", &rc);
  ASSERT_EQ(rc, 0) << out;
  std::map<std::string, ResultRow> by_model;
  for (auto& r : read_results_csv(dir + "/out/results.csv")) by_model[r.model] = r;
  ASSERT_TRUE(by_model.count("unlearn-maxent") && by_model.count("unlearn-npo") && by_model.count("oracle"));
  const double reference = by_model["unlearn-maxent"].worst_forget_final, oracle = by_model["oracle"].worst_forget_final;
  for (auto& [model, r] : by_model) {
    SCOPED_TRACE(model);
    ASSERT_TRUE(std::isfinite(r.robustness_common));
    if (r.role == "oracle") {
      EXPECT_EQ(r.robustness_common, 1.0);
      continue;
    }
    EXPECT_NEAR(r.robustness_common, robustness_between(r.worst_forget_final, reference, oracle), 1e-12);
    if (r.method == "maxent" || r.role == "base") {
      EXPECT_NEAR(r.robustness_common, r.robustness, 1e-12);
    }
    EXPECT_NEAR(r.robustness_common_mean, r.robustness_common, 1e-12) << "one replicate: its own value";
  }
  EXPECT_EQ(by_model["unlearn-npo"].robustness, 0.0);  // against itself
  ASSERT_EQ(test::run_command(std::string(UNDO_BINARY) + " report " + dir + "/out", &out), 0) << out;
  const std::string report = read_file(dir + "/out/report/report.md");
  EXPECT_NE(report.find("| robustness vs the maxent teacher |"), std::string::npos) << report;
  EXPECT_NE(report.find("| unlearn | npo | - | - |"), std::string::npos) << report;
}

TEST(Sweep, AFailingJobIsReportedAndItsDependantsAreNotStarted) {
  auto dir = test::temp_dir("sweep_fail");
  // RMU steering a block the model does not have: the unlearning job fails at run time.
  auto spec = write_spec(dir, "methods = rmu\nalphas = 1\nattack_lrs = 1e-3", "[unlearn]\nrmu_layer = 9\n");
  int rc = 0;
  // Issue 28: the runner keeps the dashboard current by itself. A page that
  // exists before results.csv does was written while jobs ran (the runner
  // collects first and writes its final page after).
  pid_t runner = 0;
  FILE* p = start_runner(spec, dir + "/out", dir + "/run.log", &runner);
  ASSERT_TRUE(p);
  bool live = false;
  std::string live_page;
  while (!live && ::kill(runner, 0) == 0) {
    if (file_exists(dir + "/out/report/index.html")) {
      std::string page = read_file(dir + "/out/report/index.html");
      if (!file_exists(dir + "/out/results.csv")) live = true, live_page = page;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const int exit_status = ::pclose(p);
  rc = WIFEXITED(exit_status) ? WEXITSTATUS(exit_status) : -1;
  auto out = read_file(dir + "/run.log");
  EXPECT_TRUE(live) << "no dashboard was written while the sweep ran";
  EXPECT_NE(live_page.find("id=\"jobs\""), std::string::npos) << live_page;
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("FAILED unlearn-rmu"), std::string::npos) << out;
  auto status = sweep("status", spec, dir + "/out", &rc);
  Plan plan = make_plan(read_sweep_spec(spec), dir + "/out", UNDO_BINARY);
  for (auto& j : plan.jobs) {
    auto s = job_status(plan, j);
    bool downstream = j.name.find("rmu") != std::string::npos;
    if (j.kind == "unlearn") {
      EXPECT_EQ(s.state, JobState::Failed);
      EXPECT_NE(s.reason.find("rmu_layer"), std::string::npos) << s.reason;  // the log's tail says why
    } else if (downstream) {
      EXPECT_EQ(s.state, JobState::Blocked) << j.name;
      EXPECT_FALSE(file_exists(j.dir + "/log")) << j.name << " was started";
    } else {
      EXPECT_EQ(s.state, JobState::Done) << j.name;  // base, oracle and their attacks are not lost
    }
  }
  EXPECT_NE(status.find("blocked"), std::string::npos) << status;
  // The models that finished are collected.
  auto csv = read_file(dir + "/out/results.csv");
  EXPECT_NE(csv.find("\nbase,base"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\noracle,oracle"), std::string::npos) << csv;
}

TEST(Sweep, AKilledJobResumesFromItsCheckpointOnRerun) {
  auto dir = test::temp_dir("sweep_kill");
  auto spec = write_spec(dir, kSmallGrid);
  int rc = 0;
  // Every job dies at step 25 as if killed (after the step-20 checkpoint): only pretraining gets that far.
  auto out = sweep("run", spec, dir + "/out", &rc, "UNDO_FAULT_EXIT=25");
  EXPECT_NE(rc, 0) << out;
  Plan plan = make_plan(read_sweep_spec(spec), dir + "/out", UNDO_BINARY);
  const Job& base = plan.jobs[0];
  ASSERT_EQ(base.name, "base");
  EXPECT_FALSE(job_done(base));
  EXPECT_TRUE(file_exists(base.dir + "/ckpt/step_00000020.ckpt"));
  out = sweep("run", spec, dir + "/out", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(read_file(base.dir + "/log").find("resuming from"), std::string::npos);
  EXPECT_EQ(test::losses_of(base.dir + "/metrics.jsonl").size(), 6u);  // steps 5..30 logged once each
}

// Run by CTest with the Slurm fixture: the same sweep through sbatch (job
// arrays, afterok dependencies) gives the same results table as the local executor.
TEST(Slurm, SweepThroughSbatchMatchesTheLocalExecutor) {
  ASSERT_NE(std::getenv("SLURM_CONF"), nullptr) << "run through ctest (the Slurm fixture sets SLURM_CONF)";
  auto dir = test::temp_dir("sweep_slurm");
  auto spec = write_spec(dir, "methods = maxent\nalphas = 1,0.5\nattack_lrs = 1e-3\ncontrols = base",
                         "[slurm]\ntime = 00:10:00\nmax_parallel = 2\n");
  int rc = 0;
  auto local = sweep("run", spec, dir + "/local", &rc);
  ASSERT_EQ(rc, 0) << local;
  auto out = sweep("run", spec, dir + "/slurm", &rc, "", "--executor slurm --wait --wait-timeout 500");
  ASSERT_EQ(rc, 0) << out << read_file(dir + "/slurm/slurm/pretrain.sbatch");
  EXPECT_NE(out.find("afterok"), std::string::npos) << out;
  auto sbatch = read_file(dir + "/slurm/slurm/relearn.sbatch");
  EXPECT_NE(sbatch.find("#SBATCH --array=0-5%2"), std::string::npos) << sbatch;  // 6 models x 1 LR
  EXPECT_NE(sbatch.find("#SBATCH --signal=B:USR1@120"), std::string::npos) << sbatch;
  EXPECT_EQ(read_file(dir + "/slurm/results.csv"), read_file(dir + "/local/results.csv"));
  // Resubmitting a finished sweep submits nothing.
  out = sweep("run", spec, dir + "/slurm", &rc, "", "--executor slurm");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("submitted 0 array(s)"), std::string::npos) << out;
}

// The warning signal Slurm sends before the time limit (here sent by hand to
// the batch shell): the stage checkpoints, the task requeues itself, and the
// requeued task resumes from that checkpoint and finishes.
TEST(Slurm, SignalledJobCheckpointsRequeuesAndResumes) {
  ASSERT_NE(std::getenv("SLURM_CONF"), nullptr) << "run through ctest (the Slurm fixture sets SLURM_CONF)";
  auto dir = test::temp_dir("sweep_requeue");
  auto spec = write_spec(dir, kSmallGrid, "[train]\nsteps = 600\nlog_every = 10\nckpt_every = 1000\n");
  int rc = 0;
  auto out = sweep("run", spec, dir + "/out", &rc, "", "--executor slurm");
  ASSERT_EQ(rc, 0) << out;
  Plan plan = make_plan(read_sweep_spec(spec), dir + "/out", UNDO_BINARY);
  const Job& base = plan.jobs[0];
  ASSERT_EQ(base.name, "base");
  // Wait until base is training, then signal its batch shell as --signal=B:USR1 would. Its Slurm job id
  // is in job.running by then (job.submitted, with the array task, is gone once the task starts).
  for (int i = 0; i < 600 && test::losses_of(base.dir + "/metrics.jsonl").size() < 2; ++i) usleep(100000);
  ASSERT_GE(test::losses_of(base.dir + "/metrics.jsonl").size(), 2u) << read_file(base.dir + "/log");
  auto running = read_file(base.dir + "/job.running");  // "pid P host H started T slurm JOBID"
  auto at = running.find(" slurm ");
  ASSERT_NE(at, std::string::npos) << running;
  std::string task = running.substr(at + 7, running.find('\n') - at - 7);
  ASSERT_EQ(std::system(("scancel --batch --signal=USR1 " + task).c_str()), 0);
  for (int i = 0; i < 600 && read_file(base.dir + "/log").find("checkpointed, requeueing") == std::string::npos; ++i)
    usleep(100000);
  test::start_requeued_now("", task);
  // Up to 5 minutes for the whole sweep: until every job has finished (tasks of one array end in any order).
  test::wait_for_sweep_to_settle(plan, 300);
  auto log = read_file(base.dir + "/log");
  EXPECT_NE(log.find("stop signal received"), std::string::npos) << log;
  EXPECT_NE(log.find("; checkpointed at step"), std::string::npos) << log;
  EXPECT_NE(log.find("checkpointed, requeueing"), std::string::npos) << log;
  EXPECT_NE(log.find("resuming from"), std::string::npos) << log;
  EXPECT_TRUE(job_done(base)) << log;
  for (auto& j : plan.jobs) EXPECT_TRUE(job_done(j)) << j.name << ": " << log_tail(j, 5);
}

// The shipped specs (the main job's and the paper-scale Slurm example) parse and plan.
TEST(Sweep, ShippedSpecsPlan) {
  std::string root = UNDO_SOURCE_DIR;
  auto cwd = std::filesystem::current_path();
  auto demo_out = test::temp_dir("spec_demo"), paper_out = test::temp_dir("spec_paper");  // under the build tree
  std::filesystem::current_path(root);  // the specs' config paths are relative to the repository
  Plan demo = make_plan(read_sweep_spec("configs/demo-arith-sweep.ini"), demo_out, UNDO_BINARY);
  Plan paper = make_plan(read_sweep_spec("slurm/paper-arith-sweep.ini"), paper_out, UNDO_BINARY);
  Plan billion = make_plan(read_sweep_spec("slurm/preset-1b-sweep.ini"), paper_out + "-1b", UNDO_BINARY);
  // The longer protocol and the signal ablation share one output: every job of the ablation that the
  // protocol also plans has the same id (so the ablation reuses it).
  Plan protocol = make_plan(read_sweep_spec("configs/protocol-arith-sweep.ini"), demo_out, UNDO_BINARY);
  Plan ablation = make_plan(read_sweep_spec("configs/ablation-kl-arith-sweep.ini"), demo_out, UNDO_BINARY);
  // The language setting's two specs share one output too: the noise sweep reuses the methods sweep's models.
  Plan lang_methods = make_plan(read_sweep_spec("configs/lang-en-ko-methods-sweep.ini"), demo_out, UNDO_BINARY);
  Plan lang_noise = make_plan(read_sweep_spec("configs/lang-en-ko-noise-sweep.ini"), demo_out, UNDO_BINARY);
  Plan lang_full = make_plan(read_sweep_spec("configs/lang-en-ko-full-attack-sweep.ini"), demo_out, UNDO_BINARY);
  Plan lang_small = make_plan(read_sweep_spec("configs/lang-en-ko-size64-sweep.ini"), demo_out, UNDO_BINARY);
  Plan lang_large = make_plan(read_sweep_spec("configs/lang-en-ko-size256-sweep.ini"), demo_out, UNDO_BINARY);
  // Size against budget: five specs on one output, sharing the prepared data and nothing else.
  std::vector<Plan> sizes;
  for (auto s : {"d64", "d32-tokens", "d128-tokens", "d32-compute", "d128-compute"})
    sizes.push_back(make_plan(read_sweep_spec(std::string("configs/size-") + s + "-sweep.ini"), demo_out, UNDO_BINARY));
  Plan own = make_plan(read_sweep_spec("configs/own-corpora-sweep.ini"), demo_out, UNDO_BINARY);
  Plan quick = make_plan(read_sweep_spec("configs/quick-start-sweep.ini"), demo_out + "-quick", UNDO_BINARY);
  std::filesystem::current_path(cwd);
  std::map<std::string, int> size_dirs;
  for (auto& p : sizes) {
    EXPECT_EQ(count_kind(p, "pretrain"), 2 * 5) << "base and oracle, 5 replicates";
    EXPECT_EQ(count_kind(p, "distill"), 5);
    for (auto& j : p.jobs) ++size_dirs[j.dir];
  }
  for (auto& [d, n] : size_dirs) EXPECT_EQ(n, d.find("/data-") != std::string::npos ? 5 : 1) << d;
  EXPECT_EQ(own.spec.metric, "forget_mcq_acc");
  EXPECT_EQ(count_kind(own, "distill"), 5 * (2 + 2));
  // The README's quick start: one student and the distilled base, each of the 5 models attacked at 3 LRs.
  EXPECT_EQ(count_kind(quick, "pretrain"), 2);
  EXPECT_EQ(count_kind(quick, "distill"), 2);
  EXPECT_EQ(count_kind(quick, "relearn"), 5 * 3);
  EXPECT_EQ(count_kind(protocol, "unlearn"), 3);
  EXPECT_EQ(count_kind(protocol, "distill"), 2 * 3 + 3 + 3);  // the students, the distilled base and oracle
  EXPECT_EQ(count_kind(protocol, "relearn"), (2 + 3 + 9 + 3) * 5);
  EXPECT_EQ(count_kind(protocol, "extend"), 2 + 3 + 9 + 3);
  EXPECT_EQ(count_kind(ablation, "distill"), 4 * 3 + 3 + 3);  // 4 signals and two controls, 3 seeds each
  std::set<std::string> protocol_dirs;
  for (auto& j : protocol.jobs) protocol_dirs.insert(j.dir);
  int shared = 0;
  for (auto& j : ablation.jobs) shared += int(protocol_dirs.count(j.dir));
  // Shared: data, base + oracle, teacher, and the attacks of those three models (5 LRs and the grid's
  // extension). The ablation's signals are all in f16, none the default (12 draws in q8): its caches,
  // students and controls are its own.
  EXPECT_EQ(shared, 1 + 2 + 1 + 3 * (5 + 1));
  EXPECT_EQ(count_kind(lang_methods, "unlearn"), 3);
  EXPECT_EQ(count_kind(lang_methods, "distill"), 2 * 2 * 3 + 3 + 3);  // MaxEnt's and RMU's students, the controls
  EXPECT_EQ(count_kind(lang_noise, "distill"), 5 * 3 + 3 + 3);  // alpha 1, and 0.8 and 0.5 at two betas
  std::set<std::string> methods_dirs;
  for (auto& j : lang_methods.jobs) methods_dirs.insert(j.dir);
  int reused = 0;
  for (auto& j : lang_noise.jobs) reused += int(j.kind == "distill" && methods_dirs.count(j.dir));
  EXPECT_EQ(reused, 2 * 3 + 3 + 3);  // both students of the methods sweep and the controls
  // The paper's attack on the methods sweep's models: every model reused, only the 165 attacks new.
  int full_reused = 0;
  for (auto& j : lang_full.jobs) full_reused += int(j.kind != "relearn" && j.kind != "extend" && methods_dirs.count(j.dir));
  EXPECT_EQ(full_reused, int(lang_full.jobs.size()) - 165);
  // 3 models; 2 students and 2 controls x 3 seeds
  EXPECT_EQ(count_kind(lang_full, "relearn") + count_kind(lang_full, "extend"), (3 + 4 * 3) * (10 + 1));
  EXPECT_EQ(lang_full.spec.attack_steps, 500);
  EXPECT_EQ(count_kind(lang_small, "distill"), 2 * 3 + 3 + 3);
  for (auto& j : lang_small.jobs) EXPECT_TRUE(j.kind == "data" || !methods_dirs.count(j.dir)) << j.name;  // its own models
  EXPECT_EQ(count_kind(lang_large, "distill"), 2 * 3 + 3 + 3);
  std::set<std::string> small_dirs;
  for (auto& j : lang_small.jobs) small_dirs.insert(j.dir);
  for (auto& j : lang_large.jobs)  // its own models, apart from both other sizes'
    EXPECT_TRUE(j.kind == "data" || (!methods_dirs.count(j.dir) && !small_dirs.count(j.dir))) << j.name;
  EXPECT_EQ(count_kind(demo, "distill"), 3 + 1 + 1);  // + the distilled base and oracle
  EXPECT_EQ(count_kind(demo, "relearn"), 8 * 3);
  EXPECT_EQ(count_kind(demo, "extend"), 8);
  EXPECT_EQ(count_kind(paper, "distill"), 5 * (3 * 6 + 1 + 1));  // 5 replicates of 18 students and 2 controls
  EXPECT_EQ(paper.spec.replicates, 5);
  EXPECT_EQ(count_kind(paper, "pretrain"), 5 * 2);
  EXPECT_EQ(paper.spec.ranks, 4);
  EXPECT_EQ(paper.spec.cfg.run.device, "cuda");  // the paper presets train on GPUs
  EXPECT_NE(paper.command(paper.jobs.back(), true).find("srun -n 4 --mpi=pmix"), std::string::npos);
  // The plan says what a rank holds at the spec's ranks per job and at 8 and 64.
  auto text = plan_text(paper);
  EXPECT_NE(text.find("training state per rank"), std::string::npos) << text;
  for (std::string row : {"\n4 ", "\n8 ", "\n64 "}) EXPECT_NE(text.find(row), std::string::npos) << row << text;
  EXPECT_EQ(billion.spec.cfg.dist.zero, 3);
  // A Gemma-2-style block: four norms, attention, MLP.
  const int64_t block = 4 * 2048 + 4 * 2048 * 2048 + 3 * 2048 * 8192, params = 32000 * 2048 + 14 * block + 2048;
  EXPECT_EQ(params, 1005176832);
  EXPECT_NE(plan_text(billion).find("model of 1005176832 parameters"), std::string::npos) << plan_text(billion);
  // 1B parameters: 16 bytes each replicated (15 GiB), 1/64 of it plus the gathered blocks at zero 3, 64 ranks.
  const auto& m = billion.spec.cfg.model;
  EXPECT_EQ(rank_memory(m, 32000, 1, 0).total(), 16 * params);
  auto z3 = rank_memory(m, 32000, 64, 3);
  EXPECT_EQ(z3.transient, 16 * block);
  EXPECT_NEAR(double(z3.weights), 4.0 * params / 64, 4.0 * 16);  // padding: at most one element per unit
  EXPECT_LT(rank_memory(m, 32000, 64, 3).total(), rank_memory(m, 32000, 64, 1).total());
}

// The plan's memory calculator counts exactly the parameters the model builds,
// in every family (grouped-query heads, a head width of their own, biases,
// post-norms, an untied head as a unit of its own).
TEST(Sweep, RankMemoryCountsEveryFamilysParameters) {
  ModelConfig base;
  base.vocab_size = 101, base.d_model = 48, base.n_layers = 3, base.n_heads = 4, base.d_ff = 80;
  std::vector<ModelConfig> models(5, base);
  models[1].n_kv_heads = 2, models[1].tied_embeddings = false, models[1].activation = "silu";  // Llama
  models[2].n_kv_heads = 1, models[2].qkv_bias = true, models[2].tied_embeddings = false;      // Qwen2
  models[3].head_dim = 16;                                                                     // Gemma
  models[4].post_norms = true, models[4].head_dim = 8, models[4].n_kv_heads = 2;               // Gemma-2
  for (auto& m : models) {
    Transformer model(m);
    auto units = unit_parameters(m, 0);
    int64_t all = 0, matrices = 0;
    for (auto& u : units) all += u.total(), matrices += u.matrices;
    EXPECT_EQ(all, model->num_params());
    EXPECT_EQ(units.size(), size_t(m.n_layers + (m.tied_embeddings ? 2 : 3)));
    int64_t multiplied = 0;  // what zero 3 gathers in bf16: every matrix but the embedding
    for (auto& item : model->named_parameters())
      if (item.value().dim() == 2 && item.key().rfind("embed.", 0) != 0) multiplied += item.value().numel();
    EXPECT_EQ(matrices, multiplied);
  }
}

namespace undo {
namespace {

// Issue 26, class 10: a job's hash covers exactly the settings its stage
// reads. For every key of the stages' own sections (unlearn.*, distill.*,
// relearn.*) changed to another valid value, the jobs whose hash changes are
// those that read it (unlearning; the caches and distillation; the attacks)
// and the jobs made from them, never the data or pretraining jobs: an
// [unlearn] budget used to change every hash, retraining base and oracle.
TEST(Sweep, AJobsHashCoversExactlyTheSettingsItsStageReads) {
  auto dir = test::temp_dir("job_identity");
  const std::string spec_path = write_spec(dir, "methods = maxent\nalphas = 1,0.5\nattack_lrs = 1e-3,3e-4");
  const std::string base_text = read_file(spec_path);
  auto plan_of = [&](const std::string& text) {
    write_file_atomic(dir + "/variant.ini", text);
    return make_plan(read_sweep_spec(dir + "/variant.ini"), dir + "/out", UNDO_BINARY);
  };
  std::map<std::string, std::string> before;
  for (auto& j : plan_of(base_text).jobs) before[j.name] = j.id;
  const std::map<std::string, std::set<std::string>> readers = {
      {"unlearn", {"unlearn"}}, {"distill", {"cache", "distill"}}, {"relearn", {"relearn", "extend"}}};
  int keys_tested = 0;
  Config defaults;
  for (auto& key : describe(defaults)) {
    const std::string section = key.name.substr(0, key.name.find('.')), name = key.name.substr(section.size() + 1);
    if (!readers.count(section)) continue;
    // The first of a few other values that the spec accepts.
    const double v = std::atof(key.value().c_str());
    std::optional<Plan> plan;
    for (const std::string& other : std::vector<std::string>{format_double(v * 2), format_double(v / 2),
                                                             format_double(v + 1), "1", "0", "none", "graddiff",
                                                             "forget_ce", "random", "1,2"}) {
      if (other == key.value()) continue;
      std::string text = base_text;
      const std::string line = "\n" + name + " = ";
      const auto at = text.find("[" + section + "]");
      const auto own = at == std::string::npos ? std::string::npos : text.find(line, at);
      if (own != std::string::npos && text.find('[', at + 1) > own)
        text = text.substr(0, own + line.size()) + other + text.substr(text.find('\n', own + 1));
      else
        text += "\n[" + section + "]\n" + name + " = " + other + "\n";
      try {
        plan = plan_of(text);
        break;
      } catch (const InputError&) {
      }
    }
    if (!plan) continue;  // no other value is a valid one here
    ++keys_tested;
    std::map<std::string, bool> changed;  // by job id in the new plan, in order (dependencies come first)
    for (auto& j : plan->jobs) {
      bool reads = readers.at(section).count(j.kind) > 0;
      for (auto& d : j.deps) reads = reads || changed[d];
      changed[j.id] = reads;
      if (!before.count(j.name)) continue;  // a job the change added (an extended grid)
      EXPECT_EQ(before[j.name] != j.id, reads) << key.name << ": job " << j.name << " (" << j.kind << ")";
    }
  }
  EXPECT_GE(keys_tested, 30);
}

}  // namespace
}  // namespace undo
