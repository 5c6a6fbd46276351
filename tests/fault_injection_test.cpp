// kill -9 at random points of pretrain, cache-logits, distill, relearn and
// sweep run: each stage is killed (with every process it started) three
// times at moments drawn from a fixed seed over its uninterrupted run time,
// rerun until it finishes, and must end with exactly the uninterrupted run's
// results. Where the kills land varies with the machine's speed; what is
// asserted holds for any kill point, so the test is deterministic in outcome.
// A run that ends before its first kill (faster than the reference run was)
// is started over from nothing with the kill moments halved, so that at
// least one kill always lands.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>

#include "cache/logit_cache.h"
#include "core/fs.h"
#include "fixtures.h"
#include "test_util.h"

using namespace undo;
using steady = std::chrono::steady_clock;

namespace {

std::string tiny_ini() { return std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini"; }

// Every descendant of `root` (by parent pid in /proc), deepest last.
std::vector<pid_t> descendants(pid_t root) {
  std::map<pid_t, std::vector<pid_t>> children;
  if (DIR* d = ::opendir("/proc")) {
    while (dirent* e = ::readdir(d)) {
      pid_t pid = pid_t(std::atoi(e->d_name));
      if (pid <= 0) continue;
      std::ifstream stat("/proc/" + std::string(e->d_name) + "/stat");
      std::string s((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
      auto close = s.rfind(')');
      if (close == std::string::npos) continue;
      pid_t parent = 0;
      char state = 0;
      if (std::sscanf(s.c_str() + close + 1, " %c %d", &state, &parent) == 2) children[parent].push_back(pid);
    }
    ::closedir(d);
  }
  std::vector<pid_t> out;
  std::vector<pid_t> todo = {root};
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    for (pid_t c : children[p]) out.push_back(c), todo.push_back(c);
  }
  return out;
}

// SIGKILL to `pid` and everything it started (stopped first, so that none forks meanwhile).
void kill_tree(pid_t pid) {
  ::kill(pid, SIGSTOP);
  auto all = descendants(pid);
  for (pid_t p : all) ::kill(p, SIGSTOP);
  for (pid_t p : descendants(pid)) all.push_back(p);  // forked before they stopped
  ::kill(pid, SIGKILL);
  for (pid_t p : all) ::kill(p, SIGKILL);
}

// Runs `command` under sh; kills its tree after `limit_s` unless it ends first.
// Returns the exit code, or -1 when killed.
int run_with_kill(const std::string& command, double limit_s) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const auto deadline = steady::now() + std::chrono::duration<double>(limit_s);
  while (true) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (steady::now() >= deadline) {
      kill_tree(pid);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    ::usleep(5000);
  }
}

double seconds_since(steady::time_point t0) { return std::chrono::duration<double>(steady::now() - t0).count(); }

// Runs `first` uninterrupted into `reference`'s place, then `first` into the
// test's place killed 3 times at random moments (rerunning with `rerun`),
// then `rerun` to the end. `result(dir)` reads what must be equal.
void expect_same_after_kills(const std::string& name, const std::function<std::string(const std::string&)>& first,
                             const std::function<std::string(const std::string&)>& rerun,
                             const std::function<std::string(const std::string&)>& result, uint32_t seed) {
  auto dir = test::temp_dir(name);
  const std::string whole = first(dir + "/whole");  // made before the clock starts (it may build fixtures)
  auto t0 = steady::now();
  ASSERT_EQ(test::run_command(whole + " > " + dir + "/whole.log 2>&1"), 0)
      << read_file(dir + "/whole.log");
  const double whole_s = seconds_since(t0);
  const std::string expected = result(dir + "/whole");
  ASSERT_FALSE(expected.empty());

  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> at(0.05, 0.95);
  int killed = 0, restarts = 0;
  bool started = false;
  double scale = 1;  // halved when a run ends before its first kill (it ran faster than the reference)
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::string cmd = (started ? rerun : first)(dir + "/cut");
    started = true;
    int rc = run_with_kill(cmd + " >> " + dir + "/cut.log 2>&1", at(rng) * scale * whole_s);
    if (rc == -1) {
      ++killed;
    } else {
      ASSERT_EQ(rc, 0) << read_file(dir + "/cut.log");
      if (killed > 0 || restarts == 4) break;  // it finished before its next kill
      // No kill landed at all: start over from nothing, with the kills drawn earlier.
      std::filesystem::remove_all(dir + "/cut");
      started = false;
      scale /= 2;
      ++restarts;
      --attempt;
    }
  }
  ASSERT_EQ(test::run_command(rerun(dir + "/cut") + " >> " + dir + "/cut.log 2>&1"), 0) << read_file(dir + "/cut.log");
  EXPECT_GE(killed, 1) << "no kill landed before the run ended";
  EXPECT_EQ(result(dir + "/cut"), expected) << "after " << killed << " kill(s); log:\n" << read_file(dir + "/cut.log");
}

std::string losses_text(const std::string& metrics) {
  std::string s;
  for (double l : test::losses_of(metrics)) s += format_double(l) + "\n";
  return s;
}

}  // namespace

TEST(FaultInjection, PretrainKilledAtRandomEndsAsAnUninterruptedRun) {
  auto cmd = [](bool resume) {
    return [resume](const std::string& d) {
      return std::string(UNDO_BINARY) + " pretrain --config " + tiny_ini() + " --data.dir " + test::tiny_data_dir() +
             " --run.threads 1 --train.ckpt_every 4 --train.log_every 1 --train.eval_every 10 --run-dir " + d +
             (resume ? " --resume" : "");
    };
  };
  expect_same_after_kills("kill_pretrain", cmd(false), cmd(true),
                          [](const std::string& d) { return test::lines_without_wall_clock(d + "/metrics.jsonl"); }, 11);
}

TEST(FaultInjection, CacheBuildKilledAtRandomEndsWithTheSameBits) {
  auto cmd = [](const std::string& d) {
    return std::string(UNDO_BINARY) + " cache-logits --config " + tiny_ini() + " --data.dir " + test::tiny_data_dir() +
           " --teacher " + test::trained_tiny_checkpoint() + " --tokens 6400 --run.threads 1 --out " + d +
           ".h5 --run-dir " + d;
  };
  expect_same_after_kills("kill_cache", cmd, cmd,
                          [](const std::string& d) { return LogitCacheReader(d + ".h5").recorded_sha256(); }, 12);
}

TEST(FaultInjection, DistillKilledAtRandomEndsAsAnUninterruptedRun) {
  auto cmd = [](bool resume) {
    return [resume](const std::string& d) {
      return std::string(UNDO_BINARY) + " distill --config " + tiny_ini() + " --data.dir " + test::tiny_data_dir() +
             " --teacher " + test::trained_tiny_checkpoint() +
             " --run.threads 1 --eval.arith_per_op 0 --distill.stop_metric none --distill.steps 24"
             " --train.ckpt_every 4 --train.log_every 1 --distill.cache_dir " + d + "-cache --run-dir " + d +
             (resume ? " --resume" : "");
    };
  };
  expect_same_after_kills("kill_distill", cmd(false), cmd(true),
                          [](const std::string& d) { return losses_text(d + "/metrics.jsonl"); }, 13);
}

TEST(FaultInjection, RelearnKilledAtRandomEndsWithTheSameCurves) {
  auto cmd = [](bool resume) {
    return [resume](const std::string& d) {
      return std::string(UNDO_BINARY) + " relearn --config " + tiny_ini() + " --data.dir " + test::tiny_data_dir() +
             " --model " + test::trained_tiny_checkpoint() +
             " --eval.arith_per_op 5 --run.threads 1 --lrs 1e-3,3e-4 --steps 16 --relearn.eval_every 4"
             " --train.ckpt_every 4 --run-dir " + d + (resume ? " --resume" : "");
    };
  };
  expect_same_after_kills("kill_relearn", cmd(false), cmd(true),
                          [](const std::string& d) { return read_file(d + "/attack.jsonl"); }, 14);
}

TEST(FaultInjection, SweepKilledAtRandomEndsWithTheSameResults) {
  auto spec_of = [](const std::string& d) {
    make_dirs(d);
    std::string path = d + "-spec.ini";
    std::ofstream(path) << "[sweep]\nconfig = " << tiny_ini() << "\nprepare_data = 0\nthreads = 1\n"
                        << "methods = maxent\nalphas = 1\nattack_lrs = 1e-3\nattack_steps = 8\nattack_eval_every = 4\n"
                        << "[data]\ndir = " << test::tiny_data_dir() << "\n[train]\nsteps = 16\nckpt_every = 4\n"
                        << "[unlearn]\nsteps = 4\nlr = 1e-3\n[distill]\nsteps = 8\ncheck_every = 4\n"
                        << "[eval]\narith_per_op = 5\nbatches = 1\n";
    return path;
  };
  auto cmd = [&](const std::string& d) {
    return std::string(UNDO_BINARY) + " sweep run --jobs 2 --spec " + spec_of(d) + " --out " + d;
  };
  expect_same_after_kills("kill_sweep", cmd, cmd,
                          [](const std::string& d) { return read_file(d + "/results.csv") + read_file(d + "/curves.csv"); },
                          15);
}
