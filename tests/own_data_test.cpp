// A researcher's own corpora and benchmark (docs/DATA.md): the corpora that
// examples/make-corpora makes from this machine's package database (a JSONL
// file, a plain-text directory and multiple-choice questions rendered for
// training, with held-out questions as the forget and retain metrics) go
// through a tiny sweep end to end, robustness computed on question accuracy;
// and each kind of bad corpus is refused by `undo data prepare` by file and
// line, with exit 2, before anything is written.
#include <gtest/gtest.h>

#include <fstream>

#include "core/fs.h"
#include "test_util.h"

namespace undo {
namespace {

std::string make_corpora(const std::string& dir) {
  std::string out;
  EXPECT_EQ(test::run_command(std::string(UNDO_SOURCE_DIR) + "/examples/make-corpora " + dir + "/corpora 2>&1", &out), 0)
      << out;
  return dir + "/corpora";
}

// The [data] section of configs/own-corpora.ini, with the corpora under `c`.
std::string data_section(const std::string& c, const std::string& prepared) {
  return "[data]\ndir = " + prepared + "\nsetting = lang\nsources = " + c + "/no-packages\n" +
         "forget_language = libraries\nforget_sources =\n" + "english_dirs = " + c + "/retain.jsonl," + c +
         "/licenses\nforget_dirs = " + c + "/forget.jsonl,mcq:" + c + "/forget-train-questions.jsonl\n" +
         "forget_mcq = " + c + "/forget-questions.jsonl\nretain_mcq = " + c + "/retain-questions.jsonl\n" +
         "tokenizer_vocab = 512\nbase_mix = english:0.5,libraries:0.5\noracle_mix = english:1\n" +
         "forget_mix = libraries:1\nretain_eval = english\nforget_eval = libraries\n";
}

TEST(OwnData, CorporaOfEveryKindAndQuestionMetricsRunThroughASweep) {
  auto dir = test::temp_dir("own_sweep");
  const std::string c = make_corpora(dir);
  const std::string spec = dir + "/spec.ini";
  std::ofstream(spec) << "[sweep]\nconfig = " << UNDO_SOURCE_DIR << "/configs/tiny.ini\nprepare_data = 1\n"
                      << "threads = 1\nmethods = maxent\nalphas = 1\nreplicates = 1\ncontrols = none\n"
                      << "attack_lrs = 3e-3,1e-3\nattack_steps = 10\nattack_eval_every = 5\n"
                      << "metric = forget_mcq_acc\n"
                      << data_section(c, dir + "/prepared")
                      << "[train]\nsteps = 30\n[unlearn]\nsteps = 5\nlr = 1e-3\n[distill]\nsteps = 10\n"
                      << "check_every = 5\n[eval]\narith_per_op = 0\nbatches = 1\n"
                      << "[model]\nseq_len = 64\n";  // the longest choice is about 40 tokens
  std::string out;
  ASSERT_EQ(test::run_undo("sweep run --spec " + spec + " --out " + dir + "/out --jobs 2", &out), 0) << out;
  // Every stream came from the corpora: the retained text from the JSONL file and the
  // licences, the forgotten one from the JSONL file and the rendered questions.
  const std::string manifest = read_file(dir + "/prepared/manifest.json");
  for (const char* stream : {"\"libraries.train\"", "\"libraries.test\"", "\"english.train\"", "\"english.val\""})
    EXPECT_NE(manifest.find(stream), std::string::npos) << stream << " in " << manifest;
  for (const char* f : {"mcq_forget.val.jsonl", "mcq_forget.test.jsonl", "mcq_retain.val.jsonl", "mcq_retain.test.jsonl"})
    EXPECT_TRUE(file_exists(dir + "/prepared/" + f)) << f;
  const std::string csv = read_file(dir + "/out/results.csv");
  EXPECT_NE(csv.find(",forget_mcq_acc,"), std::string::npos) << csv;
  EXPECT_EQ(csv.find(",forget_ce,"), std::string::npos) << csv;
  ASSERT_EQ(test::run_undo("report " + dir + "/out", &out), 0) << out;
  EXPECT_TRUE(file_exists(dir + "/out/report/report.md"));
  // A model's evaluation carries the question figures, validation and test apart.
  std::string eval;
  ASSERT_EQ(test::run_command("grep -rl --include=metrics.jsonl val_forget_mcq_acc " + dir + "/out/jobs | head -1", &eval), 0);
  ASSERT_FALSE(eval.empty());
  const std::string one = read_file(eval.substr(0, eval.find('\n')));
  for (const char* k : {"\"forget_mcq_acc\"", "\"val_forget_mcq_acc\"", "\"se_forget_mcq_acc\"", "\"retain_mcq_acc\"",
                        "\"forget_mcq_acc_norm\""})
    EXPECT_NE(one.find(k), std::string::npos) << k << " in " << eval;
}

TEST(OwnData, BadCorporaAreRefusedByFileAndLineBeforeAnythingIsWritten) {
  auto dir = test::temp_dir("own_bad");
  const std::string c = make_corpora(dir);
  write_file_atomic(dir + "/no-text.jsonl", "{\"text\": \"fine\"}\n{\"body\": \"no text field\"}\n");
  write_file_atomic(dir + "/not-json.jsonl", "{\"text\": \"fine\"}\n\n{\"text\": oops}\n");
  write_file_atomic(dir + "/empty.jsonl", "\n");
  write_file_atomic(dir + "/bad-answer.jsonl", "{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 5}\n");
  const std::string prepared = dir + "/prepared";
  const std::string base = "data prepare --data.dir " + prepared + " --data.setting lang --data.sources " + c +
                           "/no-packages --data.forget_language libraries --data.forget_sources '' "
                           "--data.english_dirs " + c + "/retain.jsonl";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {" --data.forget_dirs " + dir + "/no-text.jsonl", dir + "/no-text.jsonl:2: no \"text\" field"},
      {" --data.forget_dirs " + dir + "/not-json.jsonl", dir + "/not-json.jsonl:3"},
      {" --data.forget_dirs " + dir + "/empty.jsonl", "corpus '" + dir + "/empty.jsonl' holds no text"},
      {" --data.forget_dirs mcq:" + dir + "/bad-answer.jsonl", dir + "/bad-answer.jsonl:1: \"answer\" = 5"},
      {" --data.forget_dirs " + dir + "/missing.jsonl", "no file '" + dir + "/missing.jsonl'"},
      {" --data.forget_dirs " + c + "/forget.jsonl --data.forget_mcq " + dir + "/bad-answer.jsonl",
       dir + "/bad-answer.jsonl:1"},
      {" --data.forget_dirs mcq:" + c + "/forget-questions.jsonl --data.forget_mcq " + c + "/forget-questions.jsonl",
       "is also the training corpus"},
      // Many more distinct characters than tokens: the user's setting, named.
      {" --data.forget_dirs " + c + "/forget.jsonl --data.tokenizer_vocab 300", "data.tokenizer_vocab = 300 is too small"},
  };
  for (auto& [args, says] : cases) {
    std::string out;
    const std::string vocab = args.find("tokenizer_vocab") == std::string::npos ? " --data.tokenizer_vocab 512" : "";
    EXPECT_EQ(test::run_undo(base + args + vocab, &out), 2) << args << "\n" << out;
    EXPECT_NE(out.find(says), std::string::npos) << args << "\n" << out;
    EXPECT_FALSE(file_exists(prepared)) << args;
  }
}

}  // namespace
}  // namespace undo
