// Ranks on separate hosts: two network namespaces joined by a veth pair
// (10.231.0.1 and 10.231.0.2, made and removed by the test, as root), one
// rank in each, started the torchrun way or by mpirun through a launch agent
// of our own. Only those two addresses are ever contacted. The curves equal a
// one-host run's at zero 0, 1 and 3; a link taken down mid-run
// makes both ranks exit within dist.timeout_s naming the lost side, and the
// run resumes on one rank.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <string>

#include "core/fs.h"
#include "test_util.h"
#include "numerics.h"

using namespace undo;

namespace {

const std::string kAddr[2] = {"10.231.0.1", "10.231.0.2"};

// Two namespaces, one veth pair between them; removed when the object goes.
class TwoHosts {
 public:
  TwoHosts(const std::string& dir) {
    const std::string tag = std::to_string(::getpid());
    for (int h = 0; h < 2; ++h) ns_[h] = "undo-t" + tag + (h ? "b" : "a");
    // The pair is made under unique names, then each end is called undo0 inside
    // its namespace: one GLOO_SOCKET_IFNAME serves both hosts.
    const std::string va = "uv" + tag + "a", vb = "uv" + tag + "b";
    std::string script = "set -e; ip netns add " + ns_[0] + "; ip netns add " + ns_[1] + "; ip link add " + va +
                         " type veth peer name " + vb + "; ip link set " + va + " netns " + ns_[0] + "; ip link set " +
                         vb + " netns " + ns_[1] + "; ip -n " + ns_[0] + " link set " + va + " name undo0; ip -n " +
                         ns_[1] + " link set " + vb + " name undo0";
    for (int h = 0; h < 2; ++h)
      script += "; ip -n " + ns_[h] + " addr add " + kAddr[h] + "/24 dev undo0; ip -n " + ns_[h] +
                " link set undo0 up; ip -n " + ns_[h] + " link set lo up";
    ok_ = ::geteuid() == 0 && test::run_command("sh -c '" + script + "' 2>&1", &why_) == 0;
    if (!ok_ && why_.empty()) why_ = "not root";
    // mpirun's stand-in for ssh: runs a command on the "host" (namespace) that owns the address.
    agent_ = dir + "/netns-agent";
    write_file_atomic(agent_, "#!/bin/sh\nhost=$1; shift\ncase \"$host\" in\n  " + kAddr[0] + ") ns=" + ns_[0] +
                                  ";;\n  " + kAddr[1] + ") ns=" + ns_[1] +
                                  ";;\n  *) echo \"netns-agent: unknown host $host\" >&2; exit 255;;\nesac\n"
                                  "exec ip netns exec \"$ns\" sh -c \"$*\"\n");
    ::chmod(agent_.c_str(), 0700);
  }
  ~TwoHosts() { test::run_command("ip netns del " + ns_[0] + " 2>/dev/null; ip netns del " + ns_[1] + " 2>/dev/null"); }
  bool ok() const { return ok_; }
  const std::string& why() const { return why_; }
  // `command` run as rank `host` of 2 on that host (torchrun-style environment).
  std::string on(int host, int port, const std::string& command) const {
    return "ip netns exec " + ns_[host] + " env WORLD_SIZE=2 RANK=" + std::to_string(host) +
           " LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 MASTER_ADDR=" + kAddr[0] + " MASTER_PORT=" + std::to_string(port) +
           " UNDO_DIST_SECRET=multihost-test GLOO_SOCKET_IFNAME=undo0 " + command;
  }
  // `undo ARGS` as a 2-rank mpirun job with a rank on each host, started from
  // the first; Open MPI's own traffic is kept to the two addresses.
  std::string mpirun(const std::string& args) const {
    return "ip netns exec " + ns_[0] + " env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 " +
           "--host " + kAddr[0] + "," + kAddr[1] + " --mca plm_rsh_agent " + agent_ +
           " --mca oob_tcp_if_include 10.231.0.0/24 --mca btl_tcp_if_include 10.231.0.0/24 --mca btl self,tcp"
           " --bind-to none -x GLOO_SOCKET_IFNAME=undo0 " + UNDO_BINARY + " " + args + " --dist.addr " + kAddr[0];
  }
  std::string link_down(int host) const { return "ip -n " + ns_[host] + " link set undo0 down"; }

 private:
  std::string ns_[2], agent_, why_;
  bool ok_ = false;
};

pid_t spawn(const std::string& command, const std::string& log) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", (command + " > " + log + " 2>&1").c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

// The exit code of `pid`, or -1 when it has not ended within `seconds` (then it is killed).
int wait_for(pid_t pid, double seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    ::usleep(20000);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

// `undo pretrain` arguments (without the program) with `batch` rows per rank.
std::string pretrain_args(const std::string& run_dir, const std::string& more, int batch = 4) {
  return "pretrain --config " + std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini --data.dir " + test::tiny_data_dir() +
         " --run.threads 1 --train.batch_size " + std::to_string(batch) +
         " --train.log_every 1 --train.eval_every 1000 --run-dir " + run_dir + " " + more;
}
std::string pretrain(const std::string& run_dir, const std::string& more) {
  return std::string(UNDO_BINARY) + " " + pretrain_args(run_dir, more);
}

// Both ranks of a two-host run; returns rank 0's and rank 1's exit codes.
std::pair<int, int> run_two_hosts(const TwoHosts& hosts, int port, const std::string& command,
                                  const std::string& dir, double seconds) {
  pid_t a = spawn(hosts.on(0, port, command), dir + "/host0.log");
  pid_t b = spawn(hosts.on(1, port, command), dir + "/host1.log");
  int rb = wait_for(b, seconds);
  int ra = wait_for(a, seconds);
  return {ra, rb};
}

}  // namespace

// Data parallelism, ZeRO-1 and ZeRO-3 across the two hosts, started the
// torchrun way and by mpirun, give the one-host curves.
TEST(MultiHost, TwoHostsGiveTheOneHostCurves) {
  auto root = test::temp_dir("two_hosts");
  TwoHosts hosts(root);
  if (!hosts.ok()) GTEST_SKIP() << "network namespaces need root and iproute2: " << hosts.why();
  for (std::string zero : {"0", "1", "3"}) {
    auto dir = root + "/zero" + zero;
    make_dirs(dir);
    const std::string more = "--train.steps 8 --dist.zero " + zero;
    std::string out;
    ASSERT_EQ(test::run_undo_mpi(2, pretrain_args(dir + "/one", more), &out), 0) << out;
    auto [ra, rb] = run_two_hosts(hosts, 29611 + std::stoi(zero), pretrain(dir + "/env", more), dir, 120);
    ASSERT_EQ(ra, 0) << read_file(dir + "/host0.log");
    ASSERT_EQ(rb, 0) << read_file(dir + "/host1.log");
    ASSERT_EQ(test::run_command(hosts.mpirun(pretrain_args(dir + "/mpi", more)) + " 2>&1", &out), 0) << out;
    auto one = test::losses_of(dir + "/one/metrics.jsonl");
    ASSERT_EQ(one.size(), 8u);
    for (std::string how : {"env", "mpi"}) {
      auto two = test::losses_of(dir + "/" + how + "/metrics.jsonl");
      ASSERT_EQ(two.size(), one.size()) << how;
      // Two ranks either way, but over TCP between hosts: the same sums, perhaps in another order.
      test::expect_curves_match(one, two, test::fp32_reordered(test::kTinyLongestSum, 8), how + ", zero " + zero);
    }
  }
}

// The link between the hosts goes down mid-run of a ZeRO-3 job (so mostly
// inside an all-gather or reduce-scatter): each rank gives up within
// dist.timeout_s (plus its diagnosis), naming the other side, and the run
// resumes from its last (consolidated) checkpoint on one rank, unsharded.
TEST(MultiHost, ALinkDownEndsBothRanksAndTheRunResumesOnOne) {
  auto dir = test::temp_dir("link_down");
  TwoHosts hosts(dir);
  if (!hosts.ok()) GTEST_SKIP() << "network namespaces need root and iproute2: " << hosts.why();
  const std::string more = "--train.steps 4000 --train.ckpt_every 5 --dist.timeout_s 8 --dist.zero 3";
  pid_t a = spawn(hosts.on(0, 29621, pretrain(dir + "/run", more)), dir + "/host0.log");
  pid_t b = spawn(hosts.on(1, 29621, pretrain(dir + "/run", more)), dir + "/host1.log");
  struct Reap {  // neither rank outlives a failed assertion
    pid_t a, b;
    ~Reap() {
      for (pid_t p : {a, b}) ::kill(p, SIGKILL), ::waitpid(p, nullptr, WNOHANG);
    }
  } reap{a, b};
  for (int i = 0; i < 1200 && test::losses_of(dir + "/run/metrics.jsonl").size() < 12; ++i) ::usleep(50000);
  ASSERT_GE(test::losses_of(dir + "/run/metrics.jsonl").size(), 12u) << read_file(dir + "/host0.log");
  ASSERT_EQ(test::run_command(hosts.link_down(1)), 0);
  auto t0 = std::chrono::steady_clock::now();
  int rb = wait_for(b, 60), ra = wait_for(a, 60);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto log0 = read_file(dir + "/host0.log"), log1 = read_file(dir + "/host1.log");
  EXPECT_EQ(ra, 3) << log0;
  EXPECT_EQ(rb, 3) << log1;
  EXPECT_LT(took, 8 + 12 + 10) << "timeout 8 s, diagnosis at most 12 s, and slack";
  EXPECT_NE(log0.find("lost rank 1"), std::string::npos) << log0;
  EXPECT_NE(log1.find("lost rank 0"), std::string::npos) << log1;
  // On one rank with the same global batch (8 rows), and fewer steps to finish sooner.
  std::string out;
  ASSERT_EQ(test::run_undo(pretrain_args(dir + "/run", "--train.steps 40 --train.ckpt_every 5 --resume", 8), &out), 0)
      << out;
  EXPECT_NE(out.find("resuming from"), std::string::npos) << out;
}
