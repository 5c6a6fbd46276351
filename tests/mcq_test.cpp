// Multiple-choice evaluation (data/mcq.h, eval/mcq_scorer.h): the question
// file's bad inputs refused by file and line, the scorer's accuracies on a
// hand-worked example, and `undo eval --mcq` against the real
// lm-evaluation-harness on the same questions and the same model, exported to
// Hugging Face (skipped, saying so, where lm-eval or transformers is missing;
// launch/setup installs them and CI runs it).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "core/error.h"
#include "core/fs.h"
#include "core/json_value.h"
#include "data/mcq.h"
#include "eval/mcq_scorer.h"
#include "test_util.h"
#include "train/checkpoint.h"

namespace undo {
namespace {

std::string write_questions(const std::string& dir, const std::string& name, const std::string& text) {
  make_dirs(dir);
  const std::string path = dir + "/" + name;
  write_file_atomic(path, text);
  return path;
}

TEST(Mcq, AQuestionFileReadsAndBadLinesAreRefusedByFileAndLine) {
  auto dir = test::temp_dir("mcq_file");
  auto good = write_questions(dir, "good.jsonl",
                              "{\"question\": \"2 + 2?\", \"choices\": [\"3\", \"4\"], \"answer\": 1, \"subject\": \"x\"}\n"
                              "\n"
                              "{\"question\": \"\\uD55C?\", \"choices\": [\"a\", \"b\", \"c\"], \"answer\": 0}\n");
  auto qs = read_mcq_file(good);
  ASSERT_EQ(qs.size(), 2u);
  EXPECT_EQ(qs[0].answer, 1);
  EXPECT_EQ(qs[1].line, 3);
  EXPECT_EQ(qs[1].question, "\xED\x95\x9C?");  // a \u escape kept, not turned into '?'
  EXPECT_EQ(mcq_context(qs[0]), "Question: 2 + 2?\nAnswer:");
  EXPECT_EQ(mcq_rendered(qs[0]), "Question: 2 + 2?\nAnswer: 4");

  const std::string ok = "{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n";
  const std::pair<std::string, std::string> bad[] = {
      {"not json", ":2"},
      {"{\"choices\": [\"a\", \"b\"], \"answer\": 0}", "question"},
      {"{\"question\": \"q\", \"choices\": [\"a\"], \"answer\": 0}", "at least 2"},
      {"{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 2}", "not the index"},
      {"{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 0.5}", "not the index"},
      {"{\"question\": \"q\", \"choices\": [\"a\", \"\"], \"answer\": 0}", "choice 1 is empty"},
      {"[1, 2]", "not a JSON object"},
  };
  for (auto& [line, says] : bad) {
    auto path = write_questions(dir, "bad.jsonl", ok + line + "\n");
    try {
      read_mcq_file(path);
      ADD_FAILURE() << "accepted: " << line;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(path + ":2"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(read_mcq_file(write_questions(dir, "empty.jsonl", "\n\n")), InputError);
  EXPECT_THROW(read_mcq_file(dir + "/missing.jsonl"), InputError);
}

// Three questions worked by hand: the log-likelihoods pick one choice, the
// per-character ones another where the lengths differ; ties go to the first.
TEST(Mcq, AccuracyAndNormalisedAccuracyAndTheirErrorsAreTheHarnesss) {
  std::vector<McqTokens> qs(3);
  qs[0].answer = 0, qs[0].choice_chars = {1, 10};  // ll -2 vs -3: acc picks 0; per char -2 vs -0.3: norm picks 1
  qs[1].answer = 1, qs[1].choice_chars = {4, 4};   // equal lengths: both pick 1
  qs[2].answer = 1, qs[2].choice_chars = {2, 2};   // a tie: both pick the first, 0
  for (auto& q : qs) q.choices.resize(2);
  std::vector<std::vector<double>> lls = {{-2, -3}, {-5, -1}, {-4, -4}};
  McqScore s = score_mcq(qs, lls);
  EXPECT_EQ(s.chosen, (std::vector<int>{0, 1, 0}));
  EXPECT_EQ(s.chosen_norm, (std::vector<int>{1, 1, 0}));
  EXPECT_DOUBLE_EQ(s.acc, 2.0 / 3);
  EXPECT_DOUBLE_EQ(s.acc_norm, 1.0 / 3);
  // hits {1, 1, 0}: sample variance 1/3, se sqrt(1/3)/sqrt(3) = 1/3.
  EXPECT_NEAR(s.acc_se, 1.0 / 3, 1e-12);
  EXPECT_NEAR(s.acc_norm_se, 1.0 / 3, 1e-12);
}

// Questions with what tokenizers and templates trip on: Unicode (the forget
// language among it), runs of spaces, digits, choices of different lengths
// and counts, and one longer than the tiny model's 32-token window, which
// both cut from the left.
std::string harness_questions() {
  const char* rows[] = {
      R"({"question": "What is 12 + 30?", "choices": ["42", "24", "4 2"], "answer": 0})",
      R"({"question": "Which word is a colour?", "choices": ["red", "table", "running quickly"], "answer": 0})",
      R"({"question": "한국어로 인사는?", "choices": ["안녕하세요", "goodbye", "감사합니다 여러분"], "answer": 0})",
      R"({"question": "Spaces   inside   the  question?", "choices": ["yes", "no"], "answer": 1})",
      R"({"question": "Pick the number", "choices": ["1234567", "x", "3.14159", "-7"], "answer": 2})",
      R"({"question": "The quick brown fox jumps over the lazy dog, and then the dog wakes up and runs after the fox across the whole field until evening. What did the dog do?", "choices": ["it ran after the fox", "it slept"], "answer": 0})",
      R"({"question": "Café or tea?", "choices": ["café", "tea"], "answer": 1})",
      R"({"question": "Tabs\tand\nnewlines?", "choices": ["both", "neither"], "answer": 0})",
      R"({"question": "What comes after Monday?", "choices": ["Tuesday", "Sunday", "the weekend"], "answer": 0})",
      R"({"question": "2 * 3 =", "choices": ["6", "5", "23"], "answer": 0})",
  };
  std::string text;
  for (auto* r : rows) text += std::string(r) + "\n";
  return text;
}

TEST(HfMcq, UndoScoresQuestionsAsLmEvaluationHarnessDoes) {
  const std::string py = UNDO_PYTHON;
  if (!test::python_has("lm_eval, transformers, sentencepiece"))
    GTEST_SKIP() << "lm-eval, transformers or sentencepiece is missing from " << py
                 << ": skipped (launch/setup installs them; CI runs this test)";
  auto dir = test::temp_dir("mcq_harness");
  Config cfg = test::tiny_config(dir + "/run");
  Transformer model(cfg.model);
  model->init_weights(5);
  {
    torch::NoGradGuard no_grad;  // weights wide enough that the choices' log-likelihoods differ
    for (auto& p : model->parameters()) p.mul_(3.0);
  }
  CheckpointMeta meta;
  meta.model = model->cfg;
  meta.stage = "pretrain";
  save_checkpoint(dir + "/model.ckpt", meta, model, nullptr);
  const std::string questions = write_questions(dir, "questions.jsonl", harness_questions());
  std::string out;
  ASSERT_EQ(test::run_undo("export --format hf --model " + dir + "/model.ckpt --data.dir " + test::tiny_data_dir() +
                           " --out " + dir + "/hf", &out), 0) << out;
  ASSERT_EQ(test::run_undo("eval --model " + dir + "/model.ckpt --data.dir " + test::tiny_data_dir() +
                           " --train.precision fp32 --mcq " + questions + " --mcq-details " + dir + "/ours.jsonl", &out),
            0) << out;
  JsonValue summary = parse_json(out.substr(out.rfind("{\"model\"")), "undo eval's output");
  ASSERT_EQ(test::run_command(py + " " + UNDO_SOURCE_DIR + "/tests/hf/lm_eval_mcq.py " + dir + "/hf " + questions +
                              " " + dir + "/theirs.json 2>&1", &out), 0) << out;
  JsonValue theirs = read_json_file(dir + "/theirs.json");

  auto ours = read_file(dir + "/ours.jsonl");
  std::vector<JsonValue> rows;
  for (size_t at = 0, end; (end = ours.find('\n', at)) != std::string::npos; at = end + 1)
    rows.push_back(parse_json(ours.substr(at, end - at), "ours.jsonl"));
  const auto& their_qs = theirs.at("questions").array();
  ASSERT_EQ(rows.size(), 10u);
  ASSERT_EQ(their_qs.size(), rows.size());
  double smallest_margin = 1e9;
  for (size_t q = 0; q < rows.size(); ++q) {
    const auto& mine = rows[q].at("loglikelihoods").array();
    const auto& their = their_qs[q].at("loglikelihoods").array();
    ASSERT_EQ(mine.size(), their.size()) << "question " << q;
    std::vector<double> lls;
    for (size_t c = 0; c < mine.size(); ++c) {
      EXPECT_NEAR(mine[c].number(), their[c].number(), 1e-3 + 1e-4 * std::abs(their[c].number()))
          << "question " << q << " choice " << c;
      lls.push_back(mine[c].number());
    }
    std::sort(lls.rbegin(), lls.rend());
    smallest_margin = std::min(smallest_margin, lls[0] - lls[1]);
    const int answer = int(rows[q].at("answer").number());
    EXPECT_EQ(rows[q].at("chosen").number() == answer, their_qs[q].at("acc").number() == 1.0) << "question " << q;
    EXPECT_EQ(rows[q].at("chosen_norm").number() == answer, their_qs[q].at("acc_norm").number() == 1.0)
        << "question " << q;
  }
  // The choices are apart by more than the tolerance, so that agreeing on them means something.
  EXPECT_GT(smallest_margin, 1e-2);
  EXPECT_DOUBLE_EQ(summary.at("acc").number(), theirs.at("acc").number());
  EXPECT_DOUBLE_EQ(summary.at("acc_norm").number(), theirs.at("acc_norm").number());
  EXPECT_NEAR(summary.at("acc_se").number(), theirs.at("acc_stderr").number(), 1e-12);
  EXPECT_NEAR(summary.at("acc_norm_se").number(), theirs.at("acc_norm_stderr").number(), 1e-12);
  EXPECT_EQ(summary.at("questions").number(), 10);

  // A bad question file stops the evaluation with exit 2, naming the file and line.
  auto bad = write_questions(dir, "bad.jsonl", harness_questions() + "{\"question\": \"q\", \"choices\": [\"a\"], \"answer\": 0}\n");
  EXPECT_EQ(test::run_undo("eval --model " + dir + "/model.ckpt --data.dir " + test::tiny_data_dir() + " --mcq " + bad, &out),
            2) << out;
  EXPECT_NE(out.find(bad + ":11"), std::string::npos) << out;
}

}  // namespace
}  // namespace undo
