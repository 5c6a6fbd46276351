// The rendezvous store: it answers only on its own address, admits only
// clients that prove the job's secret (and proves it back), keeps serving the
// job after refusing a stranger, and implements the store operations the
// backends use. The environment launcher (torchrun style) runs a job with it.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "core/error.h"
#include "core/fs.h"
#include "distributed/launch.h"
#include "distributed/rendezvous.h"
#include "sweep/plan.h"
#include "test_util.h"

using namespace undo;
using std::chrono::milliseconds;

namespace {

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

// A raw TCP connection to host:port; -1 when refused.
int raw_connect(const std::string& host, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Reads until the peer closes (true) or `seconds` pass (false).
bool closed_by_peer(int fd, int seconds) {
  timeval tv{seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[64];
  while (true) {
    ssize_t r = ::recv(fd, buf, sizeof buf, 0);
    if (r == 0) return true;
    if (r < 0) return errno == ECONNRESET;
  }
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

}  // namespace

TEST(Rendezvous, StoreOperations) {
  RendezvousServer server("127.0.0.1", 0, "job-secret");
  RendezvousStore a("127.0.0.1", server.port(), "job-secret", milliseconds(5000));
  auto b = a.clone();
  a.set("k", bytes("v1"));
  EXPECT_EQ(b->get("k"), bytes("v1"));
  EXPECT_EQ(b->add("n", 3), 3);
  EXPECT_EQ(a.add("n", -1), 2);
  EXPECT_TRUE(a.check({"k", "n"}));
  EXPECT_FALSE(a.check({"k", "absent"}));
  EXPECT_EQ(a.getNumKeys(), 2);
  EXPECT_EQ(a.compareSet("c", bytes(""), bytes("x")), bytes("x"));       // missing, no expectation: set
  EXPECT_EQ(a.compareSet("c", bytes("y"), bytes("z")), bytes("x"));      // mismatch: unchanged
  EXPECT_EQ(a.compareSet("c", bytes("x"), bytes("z")), bytes("z"));      // match: swapped
  EXPECT_EQ(a.compareSet("d", bytes("e"), bytes("f")), bytes("e"));      // missing with an expectation: not set
  EXPECT_TRUE(a.deleteKey("c"));
  EXPECT_FALSE(a.deleteKey("c"));
  // wait() blocks until another client sets the key, and times out by name.
  std::thread later([&] {
    std::this_thread::sleep_for(milliseconds(100));
    b->set("late", bytes("1"));
  });
  a.wait({"late"});
  later.join();
  try {
    a.wait({"never"}, milliseconds(50));
    FAIL() << "no timeout";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("for never"), std::string::npos) << e.what();
  }
}

// A client without the secret, a client that sends garbage, and a silent
// fake server: each is refused by name, and the job's own clients go on.
TEST(Rendezvous, AStrangerIsRefusedAndTheJobGoesOn) {
  RendezvousServer server("127.0.0.1", 0, "job-secret");
  RendezvousStore rank("127.0.0.1", server.port(), "job-secret", milliseconds(5000));
  rank.set("addr/0", bytes("here"));
  try {
    RendezvousStore stranger("127.0.0.1", server.port(), "guessed", milliseconds(5000));
    FAIL() << "a client with the wrong secret was admitted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("refused this rank"), std::string::npos) << e.what();
  }
  // Raw bytes in place of a proof: the server hangs up.
  int fd = raw_connect("127.0.0.1", server.port());
  ASSERT_GE(fd, 0);
  char hello[40];
  ASSERT_EQ(::recv(fd, hello, sizeof hello, MSG_WAITALL), 40);
  std::string junk(32, 'x');
  ASSERT_EQ(::send(fd, junk.data(), junk.size(), 0), 32);
  EXPECT_TRUE(closed_by_peer(fd, 5));
  ::close(fd);
  EXPECT_EQ(server.refused(), 2);
  EXPECT_EQ(rank.get("addr/0"), bytes("here"));  // the job's connection is untouched

  // A fake store that greets like ours but cannot prove the secret is not trusted.
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(listener, 1), 0);
  socklen_t len = sizeof a;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
  std::thread impostor([listener] {
    int c = ::accept(listener, nullptr, nullptr);
    std::string hello = "UNDORDV1" + std::string(32, 'n'), proof(32, '\0');
    ::send(c, hello.data(), hello.size(), 0);
    ::recv(c, proof.data(), proof.size(), MSG_WAITALL);
    std::string made_up(32, 'p');
    ::send(c, made_up.data(), made_up.size(), 0);
    closed_by_peer(c, 5);
    ::close(c);
  });
  try {
    RendezvousStore fooled("127.0.0.1", ntohs(a.sin_port), "job-secret", milliseconds(5000));
    ADD_FAILURE() << "a store without the job's secret was trusted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("does not hold the job's secret"), std::string::npos) << e.what();
  }
  impostor.join();
  ::close(listener);
}

// The server answers on the address it was given and on no other.
TEST(Rendezvous, ListensOnlyOnItsOwnAddress) {
  RendezvousServer server("127.0.0.2", 0, "job-secret");  // all of 127/8 is loopback on Linux
  int elsewhere = raw_connect("127.0.0.1", server.port());
  EXPECT_LT(elsewhere, 0) << "the store answered on an address it was not given";
  if (elsewhere >= 0) ::close(elsewhere);
  RendezvousStore rank("127.0.0.2", server.port(), "job-secret", milliseconds(5000));
  rank.set("k", bytes("v"));
  EXPECT_EQ(rank.get("k"), bytes("v"));
}

TEST(Rendezvous, ASecretFileMustBeOnlyYours) {
  auto dir = test::temp_dir("secret_file");
  ::unsetenv("UNDO_DIST_SECRET");
  EXPECT_THROW(job_secret_from(""), InputError);
  write_file_atomic(dir + "/open", "s3cret\n");
  ::chmod((dir + "/open").c_str(), 0644);
  try {
    job_secret_from(dir + "/open");
    FAIL() << "a world-readable secret file was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("can be read by others"), std::string::npos) << e.what();
  }
  ::chmod((dir + "/open").c_str(), 0600);
  EXPECT_EQ(job_secret_from(dir + "/open"), "s3cret");
}

// A 2-rank job started the torchrun way (RANK, WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT, UNDO_DIST_SECRET): a stranger posing as rank 1 is refused by
// name, and the real rank 1 then completes the job with rank 0.
TEST(Rendezvous, TheEnvironmentLauncherAdmitsOnlyTheJobsRanks) {
  auto dir = test::temp_dir("env_launch");
  const int port = free_port();
  const std::string args = std::string(UNDO_BINARY) + " pretrain --config " + UNDO_SOURCE_DIR +
                           "/configs/tiny.ini --data.dir " + test::tiny_data_dir() + " --run-dir " + dir +
                           "/run --run.threads 1 --train.steps 6 --train.eval_every 1000 --dist.timeout_s 60";
  auto env = [&](int rank, const std::string& secret) {
    return "env WORLD_SIZE=2 RANK=" + std::to_string(rank) + " MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
           std::to_string(port) + " UNDO_DIST_SECRET=" + secret + " ";
  };
  std::string rank0_log = dir + "/rank0.log";
  ASSERT_EQ(std::system((env(0, "job-token") + args + " > " + rank0_log + " 2>&1 & echo $! > " + dir + "/rank0.pid")
                            .c_str()),
            0);
  std::string out;
  int rc = test::run_command(env(1, "wrong-token") + args + " 2>&1", &out);
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find("refused this rank"), std::string::npos) << out;
  rc = test::run_command(env(1, "job-token") + args + " 2>&1", &out);
  EXPECT_EQ(rc, 0) << out;
  // Rank 0 finishes too, and said whom it refused.
  std::string pid = read_file(dir + "/rank0.pid");
  test::run_command("while kill -0 " + pid.substr(0, pid.find('\n')) + " 2>/dev/null; do sleep 0.1; done");
  auto log = read_file(rank0_log);
  EXPECT_NE(log.find("rendezvous: refused a connection from 127.0.0.1:"), std::string::npos) << log;
  EXPECT_EQ(test::losses_of(dir + "/run/metrics.jsonl").size(), 2u) << log;  // steps 5 and 6
}

// Slurm's tasks-per-node list, as srun sets SLURM_STEP_TASKS_PER_NODE: a job
// of 2 nodes with a task on each is 2 hosts, whether or not --ntasks-per-node
// was given (before, without it, undo took the job for one host and served the
// rendezvous on loopback, where the second node's rank waited forever).
TEST(Launch, SlurmTasksPerNodeListsAreRead) {
  EXPECT_EQ(slurm_tasks_on_node("1(x2)", 0), 1);
  EXPECT_EQ(slurm_tasks_on_node("1(x2)", 1), 1);
  EXPECT_EQ(slurm_tasks_on_node("4", 0), 4);
  EXPECT_EQ(slurm_tasks_on_node("2(x3),1", 2), 2);
  EXPECT_EQ(slurm_tasks_on_node("2(x3),1", 3), 1);
  EXPECT_EQ(slurm_tasks_on_node("3,1(x2),5", 3), 5);
  for (std::string bad : {"", "x", "2(x", "2(x3", "2(3)", "2;1", "-1"})
    EXPECT_NE(test::error_of([&] { slurm_tasks_on_node(bad, 0); }).find("SLURM_STEP_TASKS_PER_NODE='" + bad + "'"),
              std::string::npos)
        << bad;
  EXPECT_NE(test::error_of([&] { slurm_tasks_on_node("1(x2)", 2); }).find("lists 2 node(s), and this is node 2"),
            std::string::npos);
  // Node counts whose sum would wrap an int.
  EXPECT_EQ(slurm_tasks_on_node("1(x2147483647),2(x2147483647)", 2147483647), 2);
}
