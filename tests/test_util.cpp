#include "test_util.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/fs.h"
#include "data/stream.h"

namespace fs = std::filesystem;

namespace undo::test {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

unsigned current_umask() {
  const mode_t mask = ::umask(0);
  ::umask(mask);
  return mask;
}

std::string temp_dir(const std::string& name) {
  auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string test = info ? std::string(info->test_suite_name()) + "." + info->name() : "global";
  auto dir = fs::current_path() / "test_tmp" / (test + "." + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

std::string generated_english(int sentences, uint64_t seed) {
  static const std::vector<std::string> subjects = {"The farmer", "A teacher", "My sister", "The old man",
                                                    "Our neighbour", "The children", "A doctor", "The captain"};
  static const std::vector<std::string> verbs = {"walked to", "looked at", "wrote about", "talked with",
                                                 "waited for", "painted", "visited", "remembered"};
  static const std::vector<std::string> objects = {"the river", "a small house", "the market", "the green hills",
                                                   "an open window", "the morning train", "the quiet library",
                                                   "the city hall"};
  static const std::vector<std::string> tails = {"in the spring.", "after dinner.", "with great care.",
                                                 "before the rain came.", "every Sunday.", "without a word."};
  std::string text;
  uint64_t h = seed;
  auto pick = [&](const std::vector<std::string>& v) {
    h = splitmix64(h);
    return v[h % v.size()];
  };
  for (int i = 0; i < sentences; ++i) {
    text += pick(subjects) + " " + pick(verbs) + " " + pick(objects) + " " + pick(tails);
    text += (i % 5 == 4) ? "\n" : " ";
  }
  return text;
}

int run_command(const std::string& cmd, std::string* output) {
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = ::pclose(p);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void start_requeued_now(const std::string& client, const std::string& task) {
  std::string out;
  for (int i = 0; i < 600; ++i) {
    run_command(client + "squeue -h -j " + task + " -o %T 2>&1", &out);
    if (out.find("PENDING") != std::string::npos) break;
    ::usleep(100000);
  }
  EXPECT_NE(out.find("PENDING"), std::string::npos) << "task " << task << " was not requeued: " << out;
  ::sleep(2);
  EXPECT_EQ(run_command(client + "scontrol update JobId=" + task + " StartTime=now 2>&1", &out), 0) << out;
}

const std::string& tiny_data_dir() {
  static const std::string dir = [] {
    auto root = fs::current_path() / "test_tmp" / "tiny_data";
    auto english = root / "english_txt";
    fs::create_directories(english);
    // Written only when missing or different, and atomically: test processes run side by side
    // (launch/test's variants run ctest -j2), and one must never read another's half-written file.
    for (int i = 0; i < 40; ++i) {
      const std::string doc = (english / ("doc" + std::to_string(i) + ".txt")).string();
      const std::string text = generated_english(60, uint64_t(i) + 1);
      if (!fs::exists(doc) || read_file(doc) != text) write_file_atomic(doc, text);
    }
    // Prepared by the real program, as users run it: tokenizing happens only there.
    std::string prepared = (root / "prepared").string(), out;
    int rc = run_command(std::string(UNDO_DATA_BINARY) + " prepare --data.dir " + prepared +
                             " --data.setting arith --data.sources " + (root / "no_packages").string() +
                             " --data.english_dirs " + english.string() +
                             " --data.tokenizer_vocab 320 --data.arith_problems 1500 --data.val_fraction 0.1"
                             " --run.seed 7 2>&1",
                         &out);
    if (rc != 0) throw std::runtime_error("undo-data prepare failed for the test data:\n" + out);
    return prepared;
  }();
  return dir;
}

Config tiny_config(const std::string& run_dir) {
  Config cfg;
  std::string ini = std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini";
  std::string data = tiny_data_dir();
  std::vector<std::string> args = {"test", "--config", ini, "--data.dir", data, "--run.dir", run_dir};
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  parse_config(int(argv.size()), argv.data(), "test", cfg);
  cfg.model.vocab_size = 320;
  if (const char* n = std::getenv("UNDO_TEST_THREADS"); n && *n) cfg.run.threads = std::atoi(n);
  return cfg;
}


// UNDO_TEST_THREADS=N (launch/test's thread variants) runs every stage with N
// intra-op threads: it replaces the pin "--run.threads K" that the tests' runs
// carry (the option may be given once), or adds one.
std::string with_test_threads(const std::string& args) {
  const char* n = std::getenv("UNDO_TEST_THREADS");
  if (!n || !*n) return args;
  const std::string pin = " --run.threads ";
  auto at = args.find(pin);
  if (at == std::string::npos) return args + pin + n;
  auto end = args.find(' ', at + pin.size());
  return args.substr(0, at) + pin + n + (end == std::string::npos ? "" : args.substr(end));
}

int run_undo(const std::string& args, std::string* output) {
  return run_command(std::string(UNDO_BINARY) + " " + with_test_threads(args) + " 2>&1", output);
}

int run_undo_mpi(int np, const std::string& args, std::string* output, const std::string& env) {
  std::string cmd = "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " + env + " mpirun -np " +
                    std::to_string(np) + " --oversubscribe --bind-to none " + UNDO_BINARY + " " + with_test_threads(args) +
                    " 2>&1";
  return run_command(cmd, output);
}

bool python_has(const std::string& modules) {
  return run_command(std::string(UNDO_PYTHON) + " -c 'import " + modules + "' 2>/dev/null") == 0;
}

std::string without_wall_clock(const std::string& line) {
  const auto cut = std::min(line.find(", \"tokens_per_s\""), line.find(", \"time\""));
  return cut == std::string::npos ? line : line.substr(0, cut);
}

std::string lines_without_wall_clock(const std::string& path) {
  std::ifstream in(path);
  std::string out;
  for (std::string line; std::getline(in, line);) out += without_wall_clock(line) + "\n";
  return out;
}

std::vector<double> losses_of(const std::string& metrics_path) {
  std::vector<double> out;
  std::ifstream in(metrics_path);
  std::string line;
  while (std::getline(in, line)) {
    auto p = line.find("\"loss\": ");
    if (p == std::string::npos) continue;
    // A skipped step's loss is not finite: JSON null (train/nonfinite_steps.h).
    out.push_back(line.compare(p + 8, 4, "null") == 0 ? std::nan("") : std::stod(line.substr(p + 8)));
  }
  return out;
}

}  // namespace undo::test
