// The sweep dashboard (OUT/report/index.html) rendered by a real browser:
// headless Chromium (Debian's `chromium`) loads the page `undo report` wrote
// for a sweep whose jobs are in every state, runs its script without a
// console message, and shows every job, its state, a running job's progress,
// a failed job's log tail, and the results. The screenshot is kept as a test
// artefact (build/test_artifacts/dashboard.png). Skipped, saying so, where
// Chromium is missing (launch/setup installs it; CI runs this test).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <tuple>

#include "core/config.h"
#include "core/fs.h"
#include "results/results_table.h"
#include "sweep/job_list.h"
#include "sweep/state.h"
#include "test_util.h"

namespace undo {
namespace {

std::string hostname() {
  char buf[256] = {0};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

// A sweep output with one job in each state, marked as cmd.sh marks them.
Plan crafted_sweep(const std::string& out) {
  Plan plan;
  plan.out = out;
  auto add = [&](const std::string& id, const std::string& name, const std::string& kind,
                 std::vector<std::string> deps) {
    Job j;
    j.id = id, j.name = name, j.kind = kind, j.deps = std::move(deps);
    j.dir = out + "/jobs/" + name + "-" + id;
    make_dirs(j.dir);
    plan.jobs.push_back(j);
    return j.dir;
  };
  const std::string base = add("a00000000001", "base", "pretrain", {});
  write_file_atomic(base + "/job.done", "");
  write_file_atomic(base + "/metrics.jsonl", "{\"step\": 10, \"loss\": 5.5}\n{\"step\": 20, \"loss\": 4.25}\n");
  auto running = add("a00000000002", "oracle", "pretrain", {});
  write_file_atomic(running + "/job.running", "pid " + std::to_string(::getpid()) + " host " + hostname() + "\n");
  write_file_atomic(running + "/config.ini", "[train]\nsteps = 100\nbatch_size = 8\n");
  write_file_atomic(running + "/metrics.jsonl", "{\"step\": 20, \"loss\": 3.1}\n{\"step\": 40, \"loss\": 2.9}\n");
  auto failed = add("a00000000003", "unlearn-maxent", "unlearn", {"a00000000001"});
  write_file_atomic(failed + "/job.failed", "exit 3\n");
  write_file_atomic(failed + "/log", "step 1\nstep 2\nerror: rank 1 is gone (connection reset)\n");
  write_file_atomic(add("a00000000004", "distill-maxent-a1-s1", "distill", {"a00000000003"}) + "/.keep", "");
  const std::string attack = add("a00000000005", "relearn-base-lr0.001", "relearn", {"a00000000001"});
  write_file_atomic(attack + "/job.submitted", "slurm 4242_0\n");
  std::string points;  // two LRs of an attack, the larger relearning more
  for (auto [lr, step, ce] : {std::tuple{1e-3, 0, 9.0}, {1e-3, 50, 7.0}, {1e-3, 100, 6.0}, {1e-4, 0, 9.0},
                              {1e-4, 50, 8.5}, {1e-4, 100, 8.0}})
    points += "{\"lr\": " + format_double(lr) + ", \"seed\": 1, \"step\": " + std::to_string(step) +
              ", \"forget_ce\": " + format_double(ce) + ", \"retain_ce\": 3.0}\n";
  write_file_atomic(attack + "/attack.jsonl", points);
  write_file_atomic(add("a00000000006", "relearn-oracle-lr0.001", "relearn", {"a00000000002"}) + "/.keep", "");
  write_file_atomic(add("a00000000007", "cache-base", "cache", {"a00000000001"}) + "/job.running",
                    "pid 999999999 host " + hostname() + "\n");  // a process that is gone: cut
  write_job_list(plan);
  // Results of the models already attacked, as `undo sweep collect` writes them.
  std::vector<ResultRow> rows;
  for (auto [model, role, robustness] : {std::tuple{"oracle", "oracle", 1.0}, {"unlearn-maxent", "unlearn", 0.0},
                                         {"distill-maxent-a1-s1", "student", 0.64}}) {
    ResultRow r;
    r.model = model, r.role = role, r.method = role == std::string("oracle") ? "" : "maxent", r.alpha = "1";
    r.seed = "1", r.metric = "forget_ce", r.attack_lr = 1e-3, r.attack_steps = 100;
    r.forget_before = 9.8, r.worst_forget_final = role == std::string("oracle") ? 5.2 : 6.0;
    r.forget_after40 = r.forget_final = r.worst_forget_final, r.robustness = robustness;
    r.compute_vs_oracle = 0.5, r.total_compute_alone = 0.8, r.total_compute_amortised = 0.6;
    rows.push_back(r);
  }
  write_file_atomic(out + "/results.csv", results_csv(rows));
  write_file_atomic(out + "/curves.csv", curves_csv({{"oracle", "oracle", "", "", 0, 1e-3, 9.8, 3.0},
                                                     {"oracle", "oracle", "", "", 100, 1e-3, 5.2, 3.1}}));
  return plan;
}

TEST(Dashboard, ChromiumShowsEveryJobAndTheResultsWithoutConsoleErrors) {
  if (test::run_command("command -v chromium > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "chromium is missing: skipped (launch/setup installs Debian's chromium; CI runs this test)";
  auto dir = test::temp_dir("dashboard");
  const std::string out = dir + "/sweep";
  Plan plan = crafted_sweep(out);
  std::string text;
  ASSERT_EQ(test::run_undo("report " + out, &text), 0) << text;
  const std::string page = out + "/report/index.html";
  ASSERT_TRUE(file_exists(page));
  // The page as the browser built it, after its script ran, and everything it logged.
  const std::string chromium = "timeout 120 chromium --headless --no-sandbox --disable-gpu --enable-logging=stderr "
                               "--v=0 --window-size=1400,1800 ";
  std::string dom, log;
  ASSERT_EQ(test::run_command(chromium + "--dump-dom file://" + page + " 2> " + dir + "/console.log", &dom), 0);
  log = read_file(dir + "/console.log");
  EXPECT_EQ(log.find(":CONSOLE"), std::string::npos) << "the page logged to the console:\n" << log;
  for (auto& j : plan.jobs) {
    EXPECT_NE(dom.find("id=\"job-" + j.id + "\""), std::string::npos) << j.name;
    EXPECT_NE(dom.find(j.name), std::string::npos) << j.name;
  }
  for (const char* state : {">done<", ">running<", ">failed<", ">waiting<", ">queued<", ">blocked<", ">cut<"})
    EXPECT_NE(dom.find(state), std::string::npos) << state;
  EXPECT_NE(dom.find("40%"), std::string::npos) << "the running job's progress";
  EXPECT_NE(dom.find("rank 1 is gone"), std::string::npos) << "the failed job's log tail";
  EXPECT_NE(dom.find("http-equiv=\"refresh\""), std::string::npos) << "a running sweep's page reloads itself";
  EXPECT_NE(dom.find("href=\"../jobs/oracle-a00000000002/config.ini\""), std::string::npos);
  EXPECT_NE(dom.find("id=\"results\""), std::string::npos);
  EXPECT_NE(dom.find("<svg"), std::string::npos) << "the charts, inline";
  // Issue 28: each stage's loss curve, and each attack's curves per LR with the worst case marked.
  const auto training = dom.find("id=\"training\""), attacks = dom.find("id=\"attacks\"");
  ASSERT_NE(training, std::string::npos);
  ASSERT_NE(attacks, std::string::npos);
  EXPECT_NE(dom.find("pretrain: training loss", training), std::string::npos);
  EXPECT_LT(dom.find(">base<", training), attacks) << "the base's loss curve, named";
  EXPECT_NE(dom.find(">LR 0.0001<", attacks), std::string::npos);
  EXPECT_NE(dom.find(">worst (LR 0.001*)<", attacks), std::string::npos) << "the worst case, at the grid's edge";
  EXPECT_TRUE(dom.find("<p class=\"verdict\">") != std::string::npos || dom.find("<p class=\"note\">") != std::string::npos)
      << "the support rules' verdict on the results";
  // The sorting script ran: it marks every header it made clickable.
  EXPECT_NE(dom.find("<th class=\"sortable\">model</th>"), std::string::npos);
  // The screenshot, kept.
  const std::string artefacts = (std::filesystem::current_path() / "test_artifacts").string();
  make_dirs(artefacts);
  ASSERT_EQ(test::run_command(chromium + "--screenshot=" + artefacts + "/dashboard.png file://" + page + " 2>/dev/null"),
            0);
  EXPECT_TRUE(file_exists(artefacts + "/dashboard.png"));
}

// Issue 26, class 9: what is shown from a file is escaped. A job's log with
// terminal escape sequences reached the terminal raw through `sweep status`,
// and a name in results.csv carried HTML into report.md.
TEST(Dashboard, TextFromFilesIsEscapedInStatusAndReport) {
  auto dir = test::temp_dir("escaped");
  const std::string out = dir + "/sweep";
  Plan plan = crafted_sweep(out);
  const Job& failed = plan.job("a00000000003");
  write_file_atomic(failed.dir + "/log", "step 1\n\x1b]0;pwned\x07\x1b[2Jerror: \xc2\x9b" "31m gone \xed\x95\x9c\n");
  const std::string status = status_text(plan);
  EXPECT_EQ(status.find('\x1b'), std::string::npos) << status;
  EXPECT_EQ(status.find("\xc2\x9b"), std::string::npos) << status;
  EXPECT_NE(status.find("\\x1b]0;pwned\\x07\\x1b[2Jerror: \\u009b31m gone \xed\x95\x9c"), std::string::npos) << status;
  auto rows = read_results_csv(out + "/results.csv");
  rows.back().model = "<img src=x onerror=alert(1)>|cell";
  rows.back().signal = "s12`code`";
  write_file_atomic(out + "/results.csv", results_csv(rows));
  std::string text;
  ASSERT_EQ(test::run_undo("report " + out, &text), 0) << text;
  const std::string md = read_file(out + "/report/report.md");
  EXPECT_EQ(md.find("<img"), std::string::npos) << md;
  EXPECT_NE(md.find("&lt;img src=x onerror=alert(1)&gt;\\|cell"), std::string::npos) << md;
}

}  // namespace
}  // namespace undo
