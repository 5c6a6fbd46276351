// The relearning attack: it trains on forget data, its curves and worst case,
// and skipping / resuming attacks on rerun.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/stage_settings.h"
#include "core/json.h"
#include "data/vocabulary.h"
#include "fixtures.h"
#include "results/bootstrap.h"
#include "results/results_table.h"
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

// The attacker's worst LR is chosen on validation figures where they were
// measured; the figure reported is the test one of the run chosen, even where
// another run's test figure is higher (choosing on test would inflate it).
TEST(Relearn, TheWorstCaseIsChosenOnValidationAndReportedOnTest) {
  auto point = [](double lr, double val, double test) {
    AttackPoint p;
    p.lr = lr, p.step = 10;
    p.metrics = {{"forget_acc", test}, {"val_forget_acc", val}, {"forget_gen_acc", test / 2}};
    return p;
  };
  std::vector<AttackPoint> pts = {point(1e-3, 0.5, 0.4), point(1e-4, 0.3, 0.6)};
  EXPECT_EQ(selected_on(pts, "forget_acc"), "validation");
  auto worst = worst_case(pts, "forget_acc");
  ASSERT_EQ(worst.size(), 1u);
  EXPECT_DOUBLE_EQ(worst[0].worst_lr, 1e-3);
  EXPECT_DOUBLE_EQ(worst[0].metrics.at("forget_acc"), 0.4);
  // Generalisation is chosen on the same validation figure.
  EXPECT_DOUBLE_EQ(worst_case(pts, "forget_gen_acc")[0].worst_lr, 1e-3);
  // Curves from before validation sets choose on the test figure, and say so.
  for (auto& p : pts) p.metrics.erase("val_forget_acc");
  EXPECT_EQ(selected_on(pts, "forget_acc"), "test");
  EXPECT_DOUBLE_EQ(worst_case(pts, "forget_acc")[0].worst_lr, 1e-4);
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
  // The grid as given (the extension has its own test).
  ASSERT_EQ(test::run_undo(relearn_args(dir) + " --lrs 3e-3,1e-5 --steps 20 --eval-every 5 --relearn.extend 0", &out),
            0)
      << out;
  auto lines = read_json_lines(dir + "/attack.jsonl");
  ASSERT_EQ(lines.size(), 10u);  // 2 LRs x (step 0 + 4 evaluations)
  auto worst = read_json_lines(dir + "/attack_worst.jsonl");
  ASSERT_EQ(worst.size(), 5u);
  double before = std::stod(worst.front().at("forget_ce")), after = std::stod(worst.back().at("forget_ce"));
  // Training on multiplication and division lowers their CE (on the test
  // stream's held-out renderings, which the attack never trains on, only a little)...
  EXPECT_LT(after, before) << "forget CE " << before << " -> " << after;
  EXPECT_EQ(std::stod(worst.back().at("worst_lr")), 3e-3);
  // ...and the tiny LR barely moves it.
  double slow = 0;
  for (auto& l : lines)
    if (std::stod(l.at("lr")) == 1e-5 && l.at("step") == "20") slow = std::stod(l.at("forget_ce"));
  EXPECT_GT(slow, before - 0.05);
  // ...and the test problems' answers clearly: the attack teaches the answers, not only the text around them.
  std::vector<AttackPoint> points;
  for (auto& l : lines) points.push_back(AttackPoint::from_json(l));
  auto by_answers = worst_case(points, "forget_answer_ce");
  double answers_before = by_answers.front().metrics.at("forget_answer_ce");
  double answers_after = by_answers.back().metrics.at("forget_answer_ce");
  EXPECT_LT(answers_after, answers_before - 0.1) << "forget answer CE " << answers_before << " -> " << answers_after;
  auto summary = parse_flat_json(read_file(dir + "/summary.json"));
  EXPECT_EQ(summary.at("metric"), "forget_acc");
  EXPECT_NE(summary.at("after_40").find("\"step\": 20"), std::string::npos) << summary.at("after_40");
  // A rerun skips both finished attacks; a third LR runs alone.
  ASSERT_EQ(test::run_undo(relearn_args(dir) + " --lrs 3e-3,1e-5,1e-3 --steps 20 --eval-every 5 --relearn.extend 0",
                           &out),
            0)
      << out;
  EXPECT_NE(out.find("lr-0.003-seed-1-steps-20-every-5-batch-1x1 done, skipping"), std::string::npos) << out;
  EXPECT_EQ(read_json_lines(dir + "/attack.jsonl").size(), 15u);
  EXPECT_EQ(test::run_undo(relearn_args(dir) + " --lrs 3e-3,abc", &out), 2);
  EXPECT_NE(out.find("--lrs"), std::string::npos) << out;
}

namespace {
// Evidence on which every support rule holds: a strong attack, a sane base, an
// interior worst LR, 5 independent replicates, a large enough grid and test set.
SweepEvidence sound_evidence() {
  SweepEvidence e;
  e.metric = "forget_acc";
  e.has_oracle = true;
  e.oracle_before = 0.02, e.oracle_after = 0.40;
  e.has_base = true, e.base_robustness = 0.05;
  e.base_before = 0.60, e.base_before_se = 0.02;  // competent, on a test set that resolves the gap
  e.attack_lrs = 10, e.attack_steps = 500, e.replicates = 5, e.eval_per_op_format = 100;
  e.varied = kEveryStageVaries, e.independent = true;
  return e;
}
ResultRow student_row(double robustness) {
  ResultRow r;
  r.model = "student-a1-s1", r.role = "student", r.robustness = robustness;
  r.robustness_seeds = 3, r.robustness_min = 0.40, r.robustness_max = 0.52;
  r.robustness_ci_lo = 0.42, r.robustness_ci_hi = 0.50;
  r.stop_metric = "retain_acc", r.stopped_at = 400;
  return r;
}
}  // namespace

// While the worst case after the whole attack sits at the grid's largest LR,
// the grid is extended by doubling it (relearn.extend times at most), and the
// LRs that broke the model's retain CE are said in the summary.
TEST(Cli, TheGridIsExtendedWhileItsWorstLrIsItsLargest) {
  auto dir = test::temp_dir("extend");
  std::string out;
  // Judged on forget CE: the tiny model's accuracies are all 0, a tie that the first LR wins.
  const std::string attack = relearn_args(dir + "/grid") +
                             " --steps 10 --eval-every 5 --relearn.batch_size 8 --relearn.metric forget_ce";
  ASSERT_EQ(test::run_undo(attack + " --lrs 1e-4,3e-4 --relearn.extend 2", &out), 0) << out;
  std::vector<AttackPoint> points = read_attack_points(dir + "/grid/attack.jsonl");
  std::set<double> lrs;
  for (auto& p : points) lrs.insert(p.lr);
  auto summary = parse_flat_json(read_file(dir + "/grid/summary.json"));
  const int doublings = std::stoi(summary.at("grid_doublings"));
  ASSERT_GE(doublings, 1) << "at 10 steps the larger LR relearns more: 3e-4 was the worst";
  EXPECT_EQ(lrs.size(), size_t(2 + doublings));
  EXPECT_TRUE(lrs.count(6e-4));
  const GridEdge edge = grid_edge(points, attack_metric(points));
  if (summary.at("grid_extension") == "interior") {
    EXPECT_LT(edge.worst_lr, edge.largest_lr);
  } else {
    EXPECT_EQ(summary.at("grid_extension"), "limit");
    EXPECT_EQ(doublings, 2);
  }
  // An extension past any learning rate is refused by key, before anything runs.
  EXPECT_EQ(test::run_undo(relearn_args(dir + "/big") + " --lrs 0.3 --relearn.extend 2", &out), 2) << out;
  EXPECT_NE(out.find("relearn.extend = 2: doubling the largest LR 0.3 2 times reaches 1.2"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/big/summary.json"));
  // LRs that break the model's retain CE (worse than uniform) do not end the
  // extension: they are attacks still, listed in the summary (results/grid_extension.h).
  ASSERT_EQ(test::run_undo(relearn_args(dir + "/broken") + " --steps 5 --eval-every 5 --relearn.batch_size 8"
                           " --lrs 0.2 --relearn.extend 1", &out), 0) << out;
  summary = parse_flat_json(read_file(dir + "/broken/summary.json"));
  EXPECT_EQ(summary.at("grid_doublings"), "1");
  EXPECT_EQ(summary.at("retain_broken_lrs"), "0.2,0.4");
}

// The attack's own batch: by default the one whose whole attack replays 1% of
// the forget rows pretraining saw (at least one row), said in the summary; one
// larger than the forget data is refused by key.
TEST(Cli, TheAttackHasItsOwnBatch) {
  Config cfg = test::tiny_config(test::temp_dir("batch"));
  cfg.train.steps = 4000, cfg.train.batch_size = 8, cfg.relearn.steps = 10;  // 4000 x 8 x 1/8 forget rows
  AttackBatch b = attack_batch(cfg);
  EXPECT_EQ(b.rows, 4);  // 0.01 x 4000 rows / 10 steps
  EXPECT_NEAR(b.forget_share, 0.01, 1e-12);
  cfg.relearn.steps = 10000;
  EXPECT_EQ(attack_batch(cfg).rows, 1);  // never less than a row: then it replays more than asked
  EXPECT_NEAR(attack_batch(cfg).forget_share, 10000.0 / 4000, 1e-12);
  cfg.relearn.batch_size = 8;  // the strong attack: the pretraining batch
  EXPECT_EQ(attack_batch(cfg).rows, 8);
  cfg.data.base_mix = "english:1";  // no forget stream in pretraining: only an explicit batch
  EXPECT_TRUE(std::isnan(attack_batch(cfg).forget_share));
  cfg.relearn.batch_size = 0;
  EXPECT_NE(test::error_of([&] { attack_batch(cfg); }).find("give relearn.batch_size"), std::string::npos);
  std::string out;
  auto dir = test::temp_dir("batch_cli");
  ASSERT_EQ(test::run_undo(relearn_args(dir) + " --lrs 1e-3 --steps 5 --eval-every 5 --relearn.extend 0", &out), 0)
      << out;
  auto summary = parse_flat_json(read_file(dir + "/summary.json"));
  EXPECT_EQ(summary.at("batch_size"), "1");  // tiny.ini: 40 x 8 x 1/8 rows; 1% of them is less than a row
  EXPECT_NEAR(std::stod(summary.at("forget_share")), 5.0 / 40, 1e-9);
  EXPECT_EQ(test::run_undo(relearn_args(dir + "/huge") + " --lrs 1e-3 --steps 5 --relearn.batch_size 1000000", &out), 2)
      << out;
  EXPECT_NE(out.find("relearn.batch_size = 1000000: a step of 1000000 sequences"), std::string::npos) << out;
}

// The report prints robustness bare only when every support rule holds
// (results/support.h); each rule, failing alone, marks the figure with itself.
TEST(Report, EachSupportRuleFailingAloneMarksTheFigure) {
  const ResultRow row = student_row(0.48);
  Support s = judge_support(sound_evidence());
  ASSERT_TRUE(s.supported()) << support_summary(s);
  EXPECT_EQ(robustness_text(s, row, row.robustness), "0.48");
  // Attack strength: the published main job's oracle hardly relearned, so everything is withheld.
  SweepEvidence e = sound_evidence();
  e.oracle_after = 0.06;
  s = judge_support(e);
  EXPECT_FALSE(s.attack_strong) << s.attack_note;
  EXPECT_EQ(robustness_text(s, row, row.robustness), "withheld");
  EXPECT_EQ(interval_text(s, row), "-");
  // Base sanity: the attacked base of the committed arithmetic sweeps scored +1.1.
  e = sound_evidence();
  e.base_robustness = 1.1;
  s = judge_support(e);
  EXPECT_EQ(robustness_text(s, row, row.robustness), "0.48 (base not near 0)");
  EXPECT_NE(support_summary(s).find("the attacked base scores robustness 1.1"), std::string::npos) << support_summary(s);
  e.has_base = false;
  EXPECT_EQ(figure_mark(judge_support(e), row), "base not attacked");
  // Base competence: the committed arithmetic sweeps' base scored 0.15-0.2 on held-out operands.
  e = sound_evidence();
  e.base_before = 0.15;
  s = judge_support(e);
  EXPECT_EQ(figure_mark(s, row), "base not competent");
  EXPECT_NE(support_summary(s).find("forget_acc before the attack is 0.15 against the oracle's 0.02"),
            std::string::npos)
      << support_summary(s);
  // A test set whose standard error is not small against the gap it measures.
  e = sound_evidence();
  e.base_before_se = 0.07;
  s = judge_support(e);
  EXPECT_EQ(figure_mark(s, row), "small test set");
  EXPECT_NE(support_summary(s).find("standard error of 0.07"), std::string::npos) << support_summary(s);
  // Validation apart: curves that chose the worst LR on the test figures.
  e = sound_evidence();
  e.selected_on = "test";
  EXPECT_EQ(figure_mark(judge_support(e), row), "selected on test set");
  // Grid edge.
  e = sound_evidence();
  e.censored = {"base", "oracle"};
  s = judge_support(e);
  EXPECT_EQ(figure_mark(s, row), "censored at grid edge");
  EXPECT_NE(support_summary(s).find("the worst LR of base, oracle is the largest of its grid"), std::string::npos);
  // Replication: 3 seeds of the student alone are not independent replicates, and show a range.
  e = sound_evidence();
  e.replicates = 3, e.varied = kStudentSeedVaries, e.independent = false;
  s = judge_support(e);
  EXPECT_EQ(figure_mark(s, row), "n = 3");
  EXPECT_EQ(interval_text(s, row), "range [0.40, 0.52] (n = 3)");
  EXPECT_EQ(interval_text(judge_support(sound_evidence()), student_row(0.48)).substr(0, 13), "[0.42, 0.50] ");
  // The size of the grid and of the test set (the main job's subset: 3 LRs, 50 problems).
  e = sound_evidence();
  e.attack_lrs = 3, e.eval_per_op_format = 50;
  EXPECT_EQ(figure_mark(judge_support(e), row), "3 attack LRs; small test set");
  // The stopping rule: a student that never met it carries it, on its own row only.
  ResultRow unstopped = row;
  unstopped.stopped_at = 0;
  s = judge_support(sound_evidence());
  EXPECT_EQ(robustness_text(s, unstopped, unstopped.robustness), "0.48 (stopping rule not met)");
  unstopped.stop_metric = "none";  // a fixed budget has no rule to fail
  EXPECT_EQ(figure_mark(s, unstopped), "");
  // CE metrics: the oracle's forget CE must fall by 10%; answer CE scores problems.
  SweepEvidence ce = sound_evidence();
  ce.metric = "forget_ce";
  ce.oracle_before = 5.8, ce.oracle_after = 5.5, ce.eval_windows = 128, ce.base_before = 3.0;
  EXPECT_FALSE(judge_support(ce).attack_strong);
  ce.oracle_after = 4.0;
  EXPECT_TRUE(judge_support(ce).supported());
  ce.base_before = 5.4;  // within 10% of the oracle's: the base hardly knows the forget text
  EXPECT_EQ(figure_mark(judge_support(ce), row), "base not competent");
  ce.base_before = 3.0;
  SweepEvidence answers = ce;
  answers.metric = "forget_answer_ce";
  answers.eval_per_op_format = 50;
  Support a = judge_support(answers);
  EXPECT_NE(a.attack_note.find("forget answer CE"), std::string::npos) << a.attack_note;
  ASSERT_EQ(a.failed.size(), 1u);
  EXPECT_EQ(a.failed[0], "50 problems per operation and format (< 100)");
  EXPECT_FALSE(judge_support(SweepEvidence{}).attack_strong) << "no oracle, no judgement";
}

// The rules read off a results table: the base's robustness, each model's
// worst LR against its grid, the replicates and what they vary.
TEST(Report, EvidenceIsReadOffTheResultsTable) {
  std::vector<ResultRow> rows;
  auto add = [&](const std::string& model, const std::string& role, double lr, double final, double worst) {
    ResultRow r;
    r.model = model, r.role = role, r.attack_lr = lr, r.forget_final = final, r.worst_forget_final = worst;
    r.attack_steps = 500, r.eval_per_op_format = 100, r.replicates_vary = kStudentSeedVaries, r.metric = "forget_acc";
    r.robustness = role == "base" ? 1.1 : NAN;
    rows.push_back(r);
  };
  add("base", "base", 1e-3, 0.30, 0.30);  // worst at the top of its grid: censored
  add("base", "base", 1e-4, 0.20, 0.30);
  add("oracle", "oracle", 1e-3, 0.20, 0.25);  // worst inside its grid
  add("oracle", "oracle", 1e-4, 0.25, 0.25);
  rows[2].forget_before = 0.01;
  SweepEvidence e = evidence_of(rows, "forget_acc");
  EXPECT_TRUE(e.has_base);
  EXPECT_DOUBLE_EQ(e.base_robustness, 1.1);
  EXPECT_EQ(e.censored, std::vector<std::string>{"base"});
  EXPECT_EQ(e.attack_lrs, 2);
  EXPECT_FALSE(e.independent);
  EXPECT_EQ(e.selected_on, "test") << "a table from before validation figures";
  Support s = judge_results(rows);
  EXPECT_EQ(figure_mark(s, rows[0]), "base not near 0; selected on test set; censored at grid edge; 2 attack LRs; n = 1");
  // Rows that chose on validation are judged on their validation figures: the
  // base's worst LR on validation is the smaller one, so it is not censored.
  for (auto& r : rows) r.selected_on = "validation";
  rows[0].forget_final_val = 0.20, rows[1].forget_final_val = 0.30;
  rows[2].forget_final_val = 0.20, rows[3].forget_final_val = 0.25;
  e = evidence_of(rows, "forget_acc");
  EXPECT_EQ(e.selected_on, "validation");
  EXPECT_TRUE(e.censored.empty()) << e.censored.front();
  // Replicates of the whole pipeline are counted by replicate (not by student
  // seed), and the base that looks most robust is the one judged.
  for (int rep = 1; rep <= 5; ++rep) {
    ResultRow student;
    student.model = "distill-maxent-a1-s1-r" + std::to_string(rep), student.role = "student", student.seed = "1";
    student.replicate = std::to_string(rep), student.attack_lr = 1e-4, student.attack_steps = 500;
    student.selected_on = "validation";
    rows.push_back(student);
  }
  ResultRow second_base = rows[0];
  second_base.model = "base-r2", second_base.replicate = "2", second_base.robustness = -0.4;
  rows.push_back(second_base);
  for (auto& r : rows) r.replicates_vary = kEveryStageVaries;
  e = evidence_of(rows, "forget_acc");
  EXPECT_TRUE(e.independent);
  EXPECT_EQ(e.replicates, 5);
  EXPECT_DOUBLE_EQ(e.base_robustness, 1.1);
  rows.back().robustness = -1.5;
  EXPECT_DOUBLE_EQ(evidence_of(rows, "forget_acc").base_robustness, -1.5);
}

// Generalisation (held-out operands) is reported beside the paper's figure,
// with the headline's marks, and its own base's competence judged on it.
TEST(Report, TheGeneralisationFigureIsJudgedOnItsOwnCompetence) {
  std::vector<ResultRow> rows(3);
  rows[0].role = "base", rows[0].forget_before_general = 0.15;
  rows[1].role = "oracle", rows[1].forget_before_general = 0.01;
  rows[2] = student_row(0.48);
  for (auto& r : rows) r.metric = "forget_acc";
  rows[2].robustness_general = 0.9;
  const Support sound = judge_support(sound_evidence());
  EXPECT_EQ(general_robustness_text(sound, rows, rows[2]), "0.90 (base not competent)");
  rows[0].forget_before_general = 0.5;
  EXPECT_EQ(general_robustness_text(sound, rows, rows[2]), "0.90");
  SweepEvidence censored = sound_evidence();
  censored.censored = {"base"};
  EXPECT_EQ(general_robustness_text(judge_support(censored), rows, rows[2]), "0.90 (censored at grid edge)");
  rows[2].robustness_general = NAN;
  EXPECT_EQ(general_robustness_text(sound, rows, rows[2]), "-");
  EXPECT_EQ(generalisation_metric_of("forget_acc"), "forget_gen_acc");
  EXPECT_EQ(generalisation_metric_of("retain_answer_ce"), "retain_gen_answer_ce");
  EXPECT_EQ(generalisation_metric_of("forget_ce"), "");
  EXPECT_EQ(validation_metric_of("forget_gen_acc"), "val_forget_acc");
}

// A spec is judged on what it fixes before anything runs.
TEST(Report, APlanIsJudgedOnItsGridReplicatesAndTestSet) {
  SweepEvidence planned;
  planned.metric = "forget_ce";
  planned.attack_lrs = 1, planned.attack_steps = 500, planned.replicates = 3, planned.eval_windows = 16;
  auto gaps = plan_support_gaps(planned);
  ASSERT_EQ(gaps.size(), 3u);
  EXPECT_EQ(gaps[0], "1 attack LRs (< 5)");
  EXPECT_NE(gaps[1].find("n = 3 replicates varying student seed only"), std::string::npos) << gaps[1];
  EXPECT_EQ(gaps[2], "16 evaluation windows (< 64)");
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

// results.csv's cells are plain (results/csv_table.h): a text that would
// break its columns is refused when written, not read back shifted.
TEST(Report, AResultsCellWithACommaIsRefusedWhenWritten) {
  ResultRow r = student_row(0.5);
  r.replicates_vary = kAllButBaseOracleVaries;
  const std::string csv = results_csv({r});
  EXPECT_EQ(parse_results_csv(csv, "test").at(0).replicates_vary, kAllButBaseOracleVaries);
  r.replicates_vary = "unlearning, cache";
  EXPECT_THROW(results_csv({r}), RuntimeError);
}

// The figures docs/RESULTS.md shows are drawn by `undo report` from the CSVs committed beside them: drawn
// again from those CSVs they come out byte for byte the same, so a figure cannot drift from its numbers.
// (A change to the charts fails here until the figures are redrawn: `cp docs/results/S/{results,curves}.csv
// /tmp/S/ && build/undo report /tmp/S && cp /tmp/S/report/*.svg /tmp/S/report/report.md docs/results/S/`.)
TEST(Report, TheCommittedFiguresRegenerateFromTheirCsvs) {
  for (const char* name : {"baselines-lang", "alpha-lang", "beta-lang", "simnpo-lang", "attack500-lang", "attack500-lang-s16",
                           "size-d32-tokens",
                           "size-d64", "size-d128-tokens", "size-d32-compute", "size-d128-compute"}) {
    SCOPED_TRACE(name);
    const std::string committed = std::string(UNDO_SOURCE_DIR) + "/docs/results/" + name;
    const std::string dir = test::temp_dir(name);
    for (const char* csv : {"results.csv", "curves.csv"})
      std::filesystem::copy_file(committed + "/" + csv, dir + "/" + csv);
    std::string out;
    ASSERT_EQ(test::run_command(std::string(UNDO_BINARY) + " report " + dir, &out), 0) << out;
    for (const char* figure : {"relearn_curves.svg", "compute_robustness.svg"})
      EXPECT_TRUE(read_file(dir + "/report/" + figure) == read_file(committed + "/" + figure)) << figure;
    // Bands over the replicates and intervals as bars: the plots show the spread, not only the means.
    const std::string curves = read_file(dir + "/report/relearn_curves.svg");
    EXPECT_NE(curves.find("<polygon"), std::string::npos);
    EXPECT_NE(curves.find("(mean of 5, band: their range)"), std::string::npos);
  }
}
