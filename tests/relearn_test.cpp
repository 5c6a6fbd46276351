// The relearning attack: it trains on forget data, its curves and worst case,
// and skipping / resuming attacks on rerun.
#include <gtest/gtest.h>

#include <cmath>

#include "core/fs.h"
#include "core/json.h"
#include "data/vocabulary.h"
#include "fixtures.h"
#include "results/bootstrap.h"
#include "results/support.h"
#include "test_util.h"
#include "train/relearn.h"

using namespace undo;

namespace {

std::string relearn_args(const std::string& dir) {
  return "relearn --config " + std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini --data.dir " + test::tiny_data_dir() +
         " --model " + test::trained_tiny_checkpoint() + " --eval.arith_per_op 5 --run.threads 2 --run-dir " + dir;
}

}  // namespace

// The original arithmetic script attacked with the retain file: ours draws
// every batch from the forget stream (multiplication and division only).
TEST(Relearn, AttackBatchesComeFromTheForgetStream) {
  Config cfg = test::tiny_config(test::temp_dir("attack_stream"));
  cfg.model.seq_len = 32;
  auto stream = attack_stream(cfg);
  Vocabulary tok(cfg.data.dir + "/vocab.bin");
  int mul = 0, div = 0;
  for (int step = 0; step < 4; ++step) {
    auto rows = stream->batch(uint64_t(cfg.run.seed), uint64_t(step), 0, 8);
    for (int r = 0; r < 8; ++r) {
      std::vector<int> ids(rows.begin() + r * 33, rows.begin() + (r + 1) * 33);
      auto text = tok.decode(ids);
      EXPECT_EQ(text.find(" + "), std::string::npos) << text;
      EXPECT_EQ(text.find(" - "), std::string::npos) << text;
      mul += text.find(" * ") != std::string::npos;
      div += text.find(" / ") != std::string::npos;
    }
  }
  EXPECT_GT(mul, 0);
  EXPECT_GT(div, 0);
}

TEST(Relearn, WorstCaseTakesTheStrongestAttackAtEachStep) {
  auto point = [](double lr, int64_t step, double acc, double ce) {
    AttackPoint p;
    p.lr = lr;
    p.step = step;
    p.metrics = {{"forget_acc", acc}, {"forget_ce", ce}, {"retain_acc", lr}};
    return p;
  };
  std::vector<AttackPoint> pts = {point(1e-3, 0, 0.1, 3), point(1e-4, 0, 0.1, 3), point(1e-3, 5, 0.2, 2.5),
                                  point(1e-4, 5, 0.4, 2.9), point(1e-3, 10, 0.6, 2.0), point(1e-4, 10, 0.5, 1.0)};
  auto worst = worst_case(pts);
  ASSERT_EQ(worst.size(), 3u);
  EXPECT_EQ(attack_metric(pts), "forget_acc");
  EXPECT_DOUBLE_EQ(worst[1].metrics.at("forget_acc"), 0.4);
  EXPECT_DOUBLE_EQ(worst[1].worst_lr, 1e-4);
  EXPECT_DOUBLE_EQ(worst[1].metrics.at("retain_acc"), 1e-4);  // the metrics of the run that attained it
  EXPECT_DOUBLE_EQ(worst[2].metrics.at("forget_acc"), 0.6);
  // Without accuracies the attacker minimises forget CE.
  for (auto& p : pts) p.metrics.erase("forget_acc");
  EXPECT_EQ(attack_metric(pts), "forget_ce");
  EXPECT_DOUBLE_EQ(worst_case(pts)[2].metrics.at("forget_ce"), 1.0);
  // A metric asked for by name, and the metric helpers.
  EXPECT_DOUBLE_EQ(worst_case(pts, "retain_acc")[2].metrics.at("retain_acc"), 1e-3);
  EXPECT_TRUE(relearned_when_higher("forget_acc"));
  EXPECT_FALSE(relearned_when_higher("forget_answer_ce"));
  EXPECT_EQ(retain_metric_of("forget_answer_ce"), "retain_answer_ce");
}

TEST(Relearn, ADivergedAttackIsNeitherTheWorstCaseNorReadAsZero) {
  // A diverged run's loss is written as null; it must read back as NaN (as 0
  // it would look like a perfect relearning) and lose to any finite run.
  const std::string curve = test::temp_dir("attack_diverged") + "/attack.jsonl";
  write_file_atomic(curve,
             "{\"lr\": 0.1, \"seed\": 1, \"step\": 5, \"forget_ce\": null}\n"
             "{\"lr\": 0.01, \"seed\": 1, \"step\": 5, \"forget_ce\": 2.5}\n"
             "{\"lr\": 0.1, \"seed\": 1, \"step\": 10, \"forget_ce\": null}\n");
  auto pts = read_attack_points(curve);
  ASSERT_EQ(pts.size(), 3u);
  EXPECT_TRUE(std::isnan(pts[0].metrics.at("forget_ce")));
  auto worst = worst_case(pts);
  ASSERT_EQ(worst.size(), 2u);
  EXPECT_DOUBLE_EQ(worst[0].metrics.at("forget_ce"), 2.5);
  EXPECT_DOUBLE_EQ(worst[0].worst_lr, 0.01);
  EXPECT_TRUE(std::isnan(worst[1].metrics.at("forget_ce")));  // every run diverged there: said, not hidden
}

TEST(Cli, RelearnAttackRaisesForgetPerformanceAndSkipsFinishedAttacksOnRerun) {
  auto dir = test::temp_dir("relearn");
  std::string out;
  ASSERT_EQ(test::run_undo(relearn_args(dir) + " --lrs 3e-3,1e-5 --steps 20 --eval-every 5", &out), 0) << out;
  auto lines = read_json_lines(dir + "/attack.jsonl");
  ASSERT_EQ(lines.size(), 10u);  // 2 LRs x (step 0 + 4 evaluations)
  auto worst = read_json_lines(dir + "/attack_worst.jsonl");
  ASSERT_EQ(worst.size(), 5u);
  double before = std::stod(worst.front().at("forget_ce")), after = std::stod(worst.back().at("forget_ce"));
  // Training on multiplication and division lowers their CE...
  EXPECT_LT(after, before - 0.1) << "forget CE " << before << " -> " << after;
  EXPECT_EQ(std::stod(worst.back().at("worst_lr")), 3e-3);
  // ...and the tiny LR barely moves it.
  double slow = 0;
  for (auto& l : lines)
    if (std::stod(l.at("lr")) == 1e-5 && l.at("step") == "20") slow = std::stod(l.at("forget_ce"));
  EXPECT_GT(slow, before - 0.05);
  // The held-out answers' NLL falls too: the attack teaches the answers, not only the text around them.
  std::vector<AttackPoint> points;
  for (auto& l : lines) points.push_back(AttackPoint::from_json(l));
  auto by_answers = worst_case(points, "forget_answer_ce");
  double answers_before = by_answers.front().metrics.at("forget_answer_ce");
  double answers_after = by_answers.back().metrics.at("forget_answer_ce");
  EXPECT_LT(answers_after, answers_before) << "forget answer CE " << answers_before << " -> " << answers_after;
  auto summary = parse_flat_json(read_file(dir + "/summary.json"));
  EXPECT_EQ(summary.at("metric"), "forget_acc");
  EXPECT_NE(summary.at("after_40").find("\"step\": 20"), std::string::npos) << summary.at("after_40");
  // A rerun skips both finished attacks; a third LR runs alone.
  ASSERT_EQ(test::run_undo(relearn_args(dir) + " --lrs 3e-3,1e-5,1e-3 --steps 20 --eval-every 5", &out), 0) << out;
  EXPECT_NE(out.find("lr-0.003-seed-1-steps-20-every-5 done, skipping"), std::string::npos) << out;
  EXPECT_EQ(read_json_lines(dir + "/attack.jsonl").size(), 15u);
  EXPECT_EQ(test::run_undo(relearn_args(dir) + " --lrs 3e-3,abc", &out), 2);
  EXPECT_NE(out.find("--lrs"), std::string::npos) << out;
}

// The report prints robustness bare only when the attack moved the oracle and
// the grid, seeds and evaluation are large enough (results/support.h).
TEST(Report, RobustnessIsSupportedOnlyByAStrongEnoughAttackAndEnoughData) {
  SweepEvidence e;
  e.metric = "forget_acc";
  e.has_oracle = true;
  e.oracle_before = 0.02;
  e.oracle_after = 0.06;  // the published main job's oracle: it hardly relearned
  e.attack_lrs = 10, e.attack_steps = 500, e.seeds = 3, e.eval_per_op_format = 100;
  Support s = judge_support(e);
  EXPECT_FALSE(s.attack_strong) << s.attack_note;
  EXPECT_FALSE(s.supported());
  e.oracle_after = 0.40;
  s = judge_support(e);
  EXPECT_TRUE(s.attack_strong);
  EXPECT_TRUE(s.supported()) << s.gaps.size();
  e.attack_lrs = 3, e.attack_steps = 100, e.seeds = 1, e.eval_per_op_format = 50;  // the main job's subset
  s = judge_support(e);
  EXPECT_TRUE(s.attack_strong);
  ASSERT_EQ(s.gaps.size(), 3u);  // 3 LRs, 1 seed, 50 problems; 100 steps is enough
  EXPECT_EQ(s.gaps[0], "3 attack LRs (< 5)");
  // CE metrics: the oracle's forget CE must fall by 10%.
  SweepEvidence ce;
  ce.metric = "forget_ce";
  ce.has_oracle = true;
  ce.oracle_before = 5.8, ce.oracle_after = 5.5;
  ce.attack_lrs = 10, ce.attack_steps = 500, ce.seeds = 3, ce.eval_windows = 128;
  EXPECT_FALSE(judge_support(ce).attack_strong);
  ce.oracle_after = 4.0;
  EXPECT_TRUE(judge_support(ce).supported());
  // Answer CE falls like a CE but scores problems: their number is what must be large enough.
  SweepEvidence answers = ce;
  answers.metric = "forget_answer_ce";
  answers.eval_per_op_format = 50;
  auto a = judge_support(answers);
  EXPECT_TRUE(a.attack_strong) << a.attack_note;
  EXPECT_NE(a.attack_note.find("forget answer CE"), std::string::npos) << a.attack_note;
  ASSERT_EQ(a.gaps.size(), 1u);
  EXPECT_EQ(a.gaps[0], "50 problems per operation and format (< 100)");
  EXPECT_FALSE(judge_support(SweepEvidence{}).attack_strong) << "no oracle, no judgement";
}

TEST(Report, BootstrapIntervalOfTheMeanOverSeeds) {
  auto one = bootstrap_mean({0.7});
  EXPECT_DOUBLE_EQ(one.mean, 0.7);
  EXPECT_TRUE(std::isnan(one.lo) && std::isnan(one.hi)) << "one seed has no interval";
  auto ci = bootstrap_mean({0.2, 0.4, 0.9});
  EXPECT_NEAR(ci.mean, 0.5, 1e-12);
  EXPECT_EQ(ci.n, 3);
  // The percentile interval lies within the sample's range and around the mean; it is deterministic.
  EXPECT_GE(ci.lo, 0.2);
  EXPECT_LE(ci.hi, 0.9);
  EXPECT_LT(ci.lo, ci.mean);
  EXPECT_GT(ci.hi, ci.mean);
  auto again = bootstrap_mean({0.2, 0.4, 0.9});
  EXPECT_EQ(again.lo, ci.lo);
  EXPECT_EQ(again.hi, ci.hi);
  // A tight sample gives a tight interval.
  auto tight = bootstrap_mean({0.50, 0.51, 0.49, 0.50, 0.52});
  EXPECT_LT(tight.hi - tight.lo, 0.03);
}
