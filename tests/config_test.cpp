#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/config.h"
#include "core/spelling.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/stage_settings.h"
#include "test_util.h"

using namespace undo;

namespace {
Config parse(std::vector<std::string> args) {
  args.insert(args.begin(), "undo");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  Config cfg;
  parse_config(int(argv.size()), argv.data(), "test", cfg);
  return cfg;
}
std::string error_of(std::vector<std::string> args) {
  try {
    parse(args);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}
std::string write_ini(const std::string& text) {
  auto path = test::temp_dir("ini") + "/c.ini";
  std::ofstream(path) << text;
  return path;
}
}  // namespace

TEST(Config, FileValuesAndCommandLineOverrides) {
  auto ini = write_ini("[model]\nd_model = 128\nn_heads = 8\n[optim]\nlr = 0.002\n");
  Config c = parse({"--config", ini, "--optim.lr", "5e-4"});
  EXPECT_EQ(c.model.d_model, 128);
  EXPECT_EQ(c.model.n_heads, 8);
  EXPECT_DOUBLE_EQ(c.optim.lr, 5e-4);  // the command line wins over the file
}

TEST(Config, UnknownKeyInFileNamesKeyAndFile) {
  auto ini = write_ini("[model]\nd_modle = 128\n");
  auto err = error_of({"--config", ini});
  EXPECT_NE(err.find("d_modle"), std::string::npos) << err;
  EXPECT_NE(err.find(ini), std::string::npos) << err;
}

// Config edges from the hostile-user review: a directory as --config was read
// as empty; a newline in a value went raw into config.ini (which then no longer
// reproduced the run); binary garbage was echoed to the terminal.
TEST(Config, DirectoriesControlCharactersAndGarbageAreRefusedPrintably) {
  auto dir = test::temp_dir("edges");
  EXPECT_NE(error_of({"--config", dir}).find("is a directory"), std::string::npos);
  auto err = error_of({"--run.dir", "runs/a\n[optim]\nlr = 1"});
  EXPECT_NE(err.find("run.dir"), std::string::npos) << err;
  EXPECT_NE(err.find("control character"), std::string::npos) << err;
  EXPECT_EQ(err.find('\n'), std::string::npos) << err;
  auto garbage = write_ini("[model]\n\x01\x1b[31m\xff\xfe = 3\n");
  err = error_of({"--config", garbage});
  EXPECT_FALSE(err.empty());
  for (char c : err) EXPECT_TRUE(static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f) << err;
}

// Boost's message template loops for ever on a name or value that holds one
// of its %tokens% (found by fuzz/config_fuzz.cpp): such errors still come
// back at once, naming the key.
TEST(Config, PercentTokensInTheInputDoNotHangTheErrorMessage) {
  auto ini = write_ini("[run]\nthreads = %value%x\n");
  auto err = error_of({"--config", ini});
  EXPECT_NE(err.find(ini), std::string::npos) << err;
  EXPECT_NE(err.find("run.threads"), std::string::npos) << err;
  err = error_of({"--train.steps", "%value%x"});
  EXPECT_NE(err.find("train.steps"), std::string::npos) << err;
  err = error_of({"--no.such%value%", "1"});
  EXPECT_NE(err.find("unknown key"), std::string::npos) << err;
}

TEST(Config, UnknownKeyOnCommandLine) {
  EXPECT_NE(error_of({"--train.stepz", "3"}).find("train.stepz"), std::string::npos);
}

// Issue 28: an unknown key is answered with the known key it is nearest to,
// on the command line and in a config file; a name near none gets no guess.
TEST(Config, AnUnknownKeyGetsTheNearestKnownOne) {
  auto err = error_of({"--train.stepz", "3"});
  EXPECT_NE(err.find("(did you mean 'train.steps'?)"), std::string::npos) << err;
  err = error_of({"--optim.lrr", "0.1"});
  EXPECT_NE(err.find("did you mean 'optim.lr'?"), std::string::npos) << err;
  err = error_of({"--trian.batch_size", "3"});
  EXPECT_NE(err.find("did you mean 'train.batch_size'?"), std::string::npos) << err;
  auto ini = write_ini("[model]\nd_modle = 32\n");
  err = error_of({"--config", ini});
  EXPECT_NE(err.find("did you mean 'model.d_model'?"), std::string::npos) << err;
  err = error_of({"--completely.different", "1"});
  EXPECT_EQ(err.find("did you mean"), std::string::npos) << err;
  EXPECT_EQ(nearest_name("steps", {"train.steps", "relearn.seeds"}), "train.steps");
  EXPECT_EQ(nearest_name("pretrian", {"pretrain", "relearn"}), "pretrain");
  EXPECT_EQ(nearest_name("xyz", {"pretrain", "relearn"}), "");
}

TEST(Config, WrongType) {
  auto err = error_of({"--model.d_model", "wide"});
  EXPECT_NE(err.find("wide"), std::string::npos) << err;
  EXPECT_NE(err.find("d_model"), std::string::npos) << err;
}

TEST(Config, OutOfRangeValues) {
  EXPECT_NE(error_of({"--optim.lr", "-0.1"}).find("optim.lr = '-0.1'"), std::string::npos);
  EXPECT_NE(error_of({"--train.batch_size", "0"}).find("train.batch_size"), std::string::npos);
  EXPECT_NE(error_of({"--train.precision", "fp8"}).find("must be one of"), std::string::npos);
  EXPECT_NE(error_of({"--data.base_mix", "english:-1"}).find("data.base_mix"), std::string::npos);
  EXPECT_NE(error_of({"--model.n_heads", "3"}).find("model.d_model"), std::string::npos);
  auto ini = write_ini("[optim]\nmin_lr = 0.5\nlr = 0.1\n");
  EXPECT_NE(error_of({"--config", ini}).find("min_lr"), std::string::npos);
}

TEST(Config, MissingConfigFile) {
  EXPECT_NE(error_of({"--config", "/nonexistent/x.ini"}).find("/nonexistent/x.ini"), std::string::npos);
}

TEST(Config, ResolvedIniReproducesTheConfig) {
  Config a = parse({"--optim.lr", "0.00123", "--model.d_model", "96", "--data.base_mix", "a:1,b:3"});
  auto path = write_ini(to_ini(a));
  Config b = parse({"--config", path});
  EXPECT_EQ(to_ini(a), to_ini(b));
  EXPECT_DOUBLE_EQ(b.optim.lr, 0.00123);
}

TEST(Config, MixParsingNormalisesWeights) {
  auto mix = parse_mix("k", "a:1, b:3");
  ASSERT_EQ(mix.size(), 2u);
  EXPECT_DOUBLE_EQ(mix[1].second, 0.75);
  EXPECT_THROW(parse_mix("k", "a"), InputError);
}

TEST(Config, CliRejectsBadValueWithExitCode2) {
  std::string out;
  EXPECT_EQ(test::run_undo("pretrain --optim.lr -1 --run-dir " + test::temp_dir("run"), &out), 2);
  EXPECT_NE(out.find("optim.lr"), std::string::npos) << out;
  EXPECT_EQ(test::run_undo("pretrain --data.dir /nonexistent --run-dir " + test::temp_dir("run2"), &out), 2);
  EXPECT_NE(out.find("/nonexistent"), std::string::npos) << out;
}

// Numbers given as command-line flags (not config keys) are checked whole: "3x" is not 3.
TEST(Config, FlagNumbersAreCheckedWhole) {
  EXPECT_EQ(parse_integer("--jobs", "3", 0), 3);
  EXPECT_EQ(parse_integer("--jobs", "0", 0), 0);
  for (auto bad : {"3x", "1.5", "-1", "", "two"}) EXPECT_THROW(parse_integer("--jobs", bad, 0), InputError) << bad;
  EXPECT_EQ(parse_integer("--jobs", "7", 0, 7), 7);
  EXPECT_THROW(parse_integer("--jobs", "8", 0, 7), InputError);
  EXPECT_DOUBLE_EQ(parse_real("--wait-timeout", "2.5", 0), 2.5);
  for (auto bad : {"2.5s", "-1", "nan", "inf"}) EXPECT_THROW(parse_real("--wait-timeout", bad, 0), InputError) << bad;
  std::string out;
  EXPECT_EQ(test::run_undo("sweep run --spec none.ini --out " + test::temp_dir("jobs") + " --jobs two", &out), 2);
  EXPECT_NE(out.find("--jobs = 'two'"), std::string::npos) << out;
}

// A stage's own budget replaces the general optim/train keys; a command-line
// flag it would silently replace is refused, naming the key to use instead.
TEST(StageSettings, ACommandLineKeyAStageWouldReplaceIsRefusedByName) {
  auto refusal = [](std::vector<std::string> args, TrainingStage stage) -> std::string {
    Config cfg = parse(args);
    try {
      apply_stage_settings(cfg, stage, 1e-4);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  };
  std::string e = refusal({"--optim.weight_decay", "0.1"}, TrainingStage::Unlearn);
  EXPECT_NE(e.find("optim.weight_decay"), std::string::npos) << e;
  EXPECT_NE(e.find("undo unlearn"), std::string::npos) << e;
  e = refusal({"--optim.lr", "1e-3"}, TrainingStage::Unlearn);
  EXPECT_NE(e.find("unlearn.lr"), std::string::npos) << e;
  e = refusal({"--train.steps", "7"}, TrainingStage::Distill);
  EXPECT_NE(e.find("distill.steps"), std::string::npos) << e;
  e = refusal({"--train.eval_every", "3"}, TrainingStage::Relearn);
  EXPECT_NE(e.find("relearn.eval_every"), std::string::npos) << e;
  e = refusal({"--optim.grad_clip", "0"}, TrainingStage::Relearn);
  EXPECT_NE(e.find("clip 1.0"), std::string::npos) << e;
  // The same value as the stage's, a key the stage does not set, or one from a
  // config file (the shared config's pretraining budget) is fine.
  EXPECT_EQ(refusal({"--optim.weight_decay", "0"}, TrainingStage::Unlearn), "");
  EXPECT_EQ(refusal({"--optim.weight_decay", "0.1"}, TrainingStage::Distill), "");
  EXPECT_EQ(refusal({"--unlearn.lr", "1e-3", "--train.batch_size", "4"}, TrainingStage::Unlearn), "");
  auto ini = write_ini("[optim]\nlr = 3e-3\nweight_decay = 0.1\n[train]\nsteps = 3000\n");
  EXPECT_EQ(refusal({"--config", ini}, TrainingStage::Unlearn), "");
  // What each stage then trains with.
  Config cfg = parse({"--config", ini, "--unlearn.steps", "9", "--unlearn.lr", "2e-5"});
  apply_stage_settings(cfg, TrainingStage::Unlearn);
  EXPECT_EQ(cfg.train.steps, 9);
  EXPECT_EQ(cfg.optim.lr, 2e-5);
  EXPECT_EQ(cfg.optim.weight_decay, 0.0);
  EXPECT_EQ(cfg.optim.schedule, "constant");
  cfg = parse({"--config", ini, "--relearn.steps", "11"});
  apply_stage_settings(cfg, TrainingStage::Relearn, 4e-4);
  EXPECT_EQ(cfg.train.steps, 11);
  EXPECT_EQ(cfg.optim.lr, 4e-4);
  EXPECT_EQ(cfg.optim.warmup, 1);
}

// Issue 28: `undo STAGE --help` lists the stage's own keys first, then the
// general keys it reads; the keys it does not read only under --help-all. An
// unknown stage lists the stages, with the nearest one.
TEST(Cli, HelpListsTheStagesOwnKeysFirstAndTheRestBehindHelpAll) {
  std::string out;
  ASSERT_EQ(test::run_undo("distill --help", &out), 0) << out;
  const auto own = out.find("Keys of `undo distill` (distill.*)"), general = out.find("General keys `undo distill` reads");
  ASSERT_NE(own, std::string::npos) << out;
  ASSERT_NE(general, std::string::npos) << out;
  EXPECT_LT(own, general);
  EXPECT_GT(out.find("--distill.alpha"), own);
  EXPECT_LT(out.find("--distill.alpha"), general);
  EXPECT_GT(out.find("--model.d_model"), general);
  EXPECT_EQ(out.find("--unlearn.method"), std::string::npos) << "another stage's key in the short help";
  EXPECT_EQ(out.find("--optim.lr "), std::string::npos) << "a key distillation sets itself in the short help";
  EXPECT_NE(out.find("--help-all` lists them"), std::string::npos) << out;
  ASSERT_EQ(test::run_undo("distill --help-all", &out), 0) << out;
  EXPECT_NE(out.find("--unlearn.method"), std::string::npos) << out;
  EXPECT_NE(out.find("Keys `undo distill` does not read"), std::string::npos) << out;
  EXPECT_EQ(test::run_undo("distil --help", &out), 2) << out;
  EXPECT_NE(out.find("unknown stage 'distil' (did you mean 'distill'?)"), std::string::npos) << out;
  EXPECT_NE(out.find("cache-logits"), std::string::npos) << "the stages are listed: " << out;
  // A user error is one line with no source location.
  EXPECT_EQ(test::run_undo("distill --distill.alpah 0.5 --teacher x", &out), 2) << out;
  EXPECT_NE(out.find("did you mean 'distill.alpha'?"), std::string::npos) << out;
  EXPECT_EQ(out.find(".cpp:"), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
}

// Issue 28: nothing is written in the current directory unless a path says
// so. A stage given no run directory (no --run-dir, no [run] dir) is refused
// by key and the directory it ran in stays empty (run.dir used to default to
// runs/default there).
TEST(Cli, AStageWithNoRunDirectoryIsRefusedAndWritesNothingWhereItRuns) {
  auto dir = test::temp_dir("no_run_dir");
  std::string ini = read_file(std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini");
  ini.erase(ini.find("dir = runs/tiny\n"), std::string("dir = runs/tiny\n").size());
  write_file_atomic(dir + "/no-run-dir.ini", ini);
  make_dirs(dir + "/cwd");
  std::string out;
  EXPECT_EQ(test::run_command("cd " + dir + "/cwd && " + UNDO_BINARY + " pretrain --config " + dir +
                                  "/no-run-dir.ini --data.dir " + test::tiny_data_dir() + " --train.steps 2 2>&1",
                              &out), 2) << out;
  EXPECT_NE(out.find("run.dir is not set: give --run-dir DIR"), std::string::npos) << out;
  EXPECT_TRUE(std::filesystem::is_empty(dir + "/cwd")) << "something was written where it ran";
}
