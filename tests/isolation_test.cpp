// LibTorch 2.x and sentencepiece each carry a protobuf; a process holding both
// dies at start (../shared/docs/gpu-notes.md). These tests fail if any program
// with LibTorch links or loads sentencepiece or protobuf, and if the data tool,
// which must tokenize, links LibTorch.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/fs.h"
#include "test_util.h"

using namespace undo;

namespace {

std::string ldd(const std::string& binary) {
  std::string out;
  EXPECT_EQ(test::run_command("ldd " + binary + " 2>&1", &out), 0) << out;
  return out;
}

bool mentions_tokenizer_libraries(const std::string& text) {
  return text.find("sentencepiece") != std::string::npos || text.find("protobuf") != std::string::npos;
}

}  // namespace

TEST(Isolation, NoLibTorchBinaryLinksSentencepieceOrProtobuf) {
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();  // this test binary
  for (std::string bin : {std::string(UNDO_BINARY), std::string(UNDO_BENCH_BINARY), std::string(UNDO_MULTIRANK_BINARY), self}) {
    std::string libs = ldd(bin);
    EXPECT_NE(libs.find("libtorch_cpu"), std::string::npos) << bin << " should be a LibTorch program:\n" << libs;
    EXPECT_FALSE(mentions_tokenizer_libraries(libs)) << bin << ":\n" << libs;
  }
  std::string data_tool = ldd(UNDO_DATA_BINARY);
  EXPECT_NE(data_tool.find("libsentencepiece"), std::string::npos) << data_tool;
  EXPECT_EQ(data_tool.find("libtorch"), std::string::npos) << "undo-data must not load LibTorch:\n" << data_tool;
}

TEST(Isolation, TrainingAndEvaluationNeverLoadSentencepieceOrProtobuf) {
  // LD_DEBUG=libs logs every library the dynamic loader opens, dlopen included.
  auto dir = test::temp_dir("run");
  std::string out;
  std::string common = " --config " + std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini --data.dir " +
                       test::tiny_data_dir() + " --run.threads 1 --eval.arith_per_op 2";
  ASSERT_EQ(test::run_command("LD_DEBUG=libs " + std::string(UNDO_BINARY) + " pretrain" + common +
                                  " --train.steps 2 --train.eval_every 2 --run-dir " + dir + " 2>&1",
                              &out),
            0)
      << out.substr(out.size() > 4000 ? out.size() - 4000 : 0);
  EXPECT_NE(out.find("libtorch_cpu"), std::string::npos) << "LD_DEBUG did not log the loads";
  EXPECT_FALSE(mentions_tokenizer_libraries(out));
  EXPECT_NE(read_file(dir + "/metrics.jsonl").find("retain_acc"), std::string::npos)
      << "the arithmetic evaluation ran (from the prepared prompts and vocabulary)";
  ASSERT_EQ(test::run_command("LD_DEBUG=libs " + std::string(UNDO_BINARY) + " eval" + common + " --model " + dir +
                                  "/model.ckpt --run-dir " + dir + "/eval 2>&1",
                              &out),
            0);
  EXPECT_FALSE(mentions_tokenizer_libraries(out));
}

// The wheel's libtorch.so exports a copy of std::filesystem that crashes on a
// non-empty directory; the build puts libstdc++ first so that calls bind there.
TEST(Isolation, StdFilesystemOfLibstdcxxServesLibTorchPrograms) {
  auto dir = test::temp_dir("tree");
  std::filesystem::create_directories(dir + "/a/b/c");
  write_file_atomic(dir + "/a/b/c/file", "x");
  write_file_atomic(dir + "/a/file", "y");
  EXPECT_EQ(std::filesystem::remove_all(dir + "/a"), 5u);
  EXPECT_FALSE(std::filesystem::exists(dir + "/a"));
  for (std::string bin : {std::string(UNDO_BINARY), std::string(UNDO_BENCH_BINARY)}) {
    std::string needed;
    test::run_command("readelf -d " + bin + " | grep NEEDED", &needed);
    auto stdcxx = needed.find("libstdc++"), torch = needed.find("libtorch");
    ASSERT_NE(torch, std::string::npos) << needed;
    EXPECT_LT(stdcxx, torch) << bin << " must name libstdc++ before LibTorch:\n" << needed;
  }
}
