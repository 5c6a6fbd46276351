// Crafted files, one field at a time: the safetensors header, the checkpoint
// container and the sweep's CSV tables. Each bad field is refused with an
// InputError or RuntimeError that names the file and the field, never read
// past, never a crash (the fuzz harnesses of fuzz/ search the same readers).
#include <gtest/gtest.h>

#include <cstring>
#include <functional>

#include "core/error.h"
#include "core/fs.h"
#include "formats/checkpoint_file.h"
#include "formats/tensor_table.h"
#include "formats/safetensors_file.h"
#include "model/safetensors.h"
#include "results/attack_curve.h"
#include "results/csv_table.h"
#include "test_util.h"

using namespace undo;

namespace {

// A safetensors file with the given JSON header (padded as the library pads) and data.
std::string safetensors(const std::string& header, const std::string& data) {
  std::string h = header;
  h.append((8 - h.size() % 8) % 8, ' ');
  uint64_t n = h.size();
  std::string file(8, '\0');
  std::memcpy(&file[0], &n, 8);
  return file + h + data;
}

using test::error_of;

const std::string kFloats(16, '\1');  // 4 float32 values

}  // namespace

// The layout the Python library writes: no spaces, fields in any order, metadata.
TEST(CraftedFiles, SafetensorsAsThePythonLibraryWritesIt) {
  auto file = safetensors(R"({"__metadata__":{"format":"pt"},"b":{"shape":[2],"dtype":"F32","data_offsets":[8,16]},)"
                          R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                          kFloats);
  auto index = parse_safetensors_header(file, file.size(), "x.safetensors");
  ASSERT_EQ(index.tensors.size(), 2u);
  EXPECT_EQ(index.tensors[0].name, "a");  // in offset order
  EXPECT_EQ(index.tensors[1].shape, std::vector<int64_t>{2});
  EXPECT_EQ(index.metadata.at("format"), "pt");
  // And through the tensor reader.
  auto dir = test::temp_dir("st_python");
  write_file_atomic(dir + "/x.safetensors", file);
  auto tensors = read_safetensors(dir + "/x.safetensors");
  EXPECT_EQ(tensors.at("b").numel(), 2);
}

TEST(CraftedFiles, SafetensorsHeaderFieldsAreCheckedOneByOne) {
  const std::string ok = R"("dtype":"F32","shape":[2,2],"data_offsets":[0,16])";
  struct Case {
    std::string header, data, expect;
  };
  std::vector<Case> cases = {
      {"{\"t\":{" + ok + "}", kFloats, "not a JSON object"},
      {R"({"t":{"dtype":"F32","shape":[2,2]}})", kFloats, "tensor 't' has no 'data_offsets'"},
      {R"({"t":{"dtype":"Q4","shape":[2,2],"data_offsets":[0,16]}})", kFloats, "dtype 'Q4' is not one undo reads"},
      {R"({"t":{"dtype":"F32","shape":[2,-2],"data_offsets":[0,16]}})", kFloats, "tensor 't' shape"},
      {R"({"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,32]}})", kFloats, "lie outside the 16 data bytes"},
      {R"({"t":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})", kFloats, "16 bytes for a F32 shape needing 24"},
      {R"({"t":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,16]}})", kFloats, "shape overflows"},
      {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[16,8]}})", kFloats, "lie outside"},
      {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"u":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       kFloats, "tensors 't' and 'u' overlap"},
      {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,"8"]}})", kFloats, "data_offsets"},
  };
  for (auto& c : cases) {
    auto file = safetensors(c.header, c.data);
    auto e = error_of([&] { parse_safetensors_header(file, file.size(), "x.safetensors"); });
    EXPECT_NE(e.find("x.safetensors"), std::string::npos) << c.header << ": " << e;
    EXPECT_NE(e.find(c.expect), std::string::npos) << c.header << ": " << e;
  }
  // The header length itself: past the file, over the format's limit, or the file too short to hold it.
  auto file = safetensors("{}", "");
  uint64_t n = 1000;
  std::memcpy(&file[0], &n, 8);
  EXPECT_NE(error_of([&] { parse_safetensors_header(file, file.size(), "x"); }).find("past the end of the file"),
            std::string::npos);
  n = uint64_t(1) << 40;
  std::memcpy(&file[0], &n, 8);
  EXPECT_NE(error_of([&] { parse_safetensors_header(file, file.size(), "x"); }).find("over the format's 100 MiB"),
            std::string::npos);
  EXPECT_NE(error_of([&] { parse_safetensors_header("abc", 3, "x"); }).find("truncated"), std::string::npos);
}

// A checkpoint whose sizes add up only after wrapping around 2^64 is refused as truncated.
TEST(CraftedFiles, CheckpointSizesThatWrapAreRefused) {
  std::string file = frame_checkpoint("stage=x\n", "payload");
  uint64_t wrap = ~uint64_t(0) - 7;  // meta 8 bytes + this = 2^64 + 0
  std::memcpy(&file[16], &wrap, 8);
  auto e = error_of([&] { unframe_checkpoint(file, "w.ckpt"); });
  EXPECT_NE(e.find("checkpoint 'w.ckpt' is truncated"), std::string::npos) << e;
  uint32_t meta = 1u << 30;
  file = frame_checkpoint("stage=x\n", "payload");
  std::memcpy(&file[12], &meta, 4);
  e = error_of([&] { unframe_checkpoint(file, "w.ckpt"); });
  EXPECT_NE(e.find("is truncated"), std::string::npos) << e;
  // Untouched, it reads back.
  EXPECT_EQ(unframe_checkpoint(frame_checkpoint("m", "p"), "ok").second, "p");
}

// A version-2 or 3 payload's tensor table, one field at a time: every size is
// checked against the payload before any tensor is read, products of
// dimensions included (one that wraps around 2^64 must not pass as small).
TEST(CraftedFiles, TensorTableFieldsAreCheckedOneByOne) {
  auto payload = [](const std::string& text, size_t data_bytes) {
    std::string p(8, '\0');
    uint64_t n = text.size();
    std::memcpy(&p[0], &n, 8);
    return p + text + std::string(data_bytes, '\0');
  };
  auto parse = [](const std::string& p) {
    return parse_tensor_table(reinterpret_cast<const uint8_t*>(p.data()), p.size(), "t.ckpt");
  };
  const std::string good = "a\tf32\t2,3\t0\t24\nb\ti64\t\t64\t8\n";
  auto table = parse(payload(good, 72));
  ASSERT_EQ(table.entries.size(), 2u);
  EXPECT_EQ(table.find("a")->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(table.find("b")->offset, 64u);
  EXPECT_EQ(table.data_at, 8 + good.size());
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"a\tf32\t2,3\t0\n", "expected 5 tab-separated fields"},
      {"a\tf64\t2\t0\t16\n", "unknown dtype 'f64'"},
      {"a\tf32\t-2\t0\t8\n", "bad dimension '-2'"},
      {"a\tf32\t2,,3\t0\t24\n", "bad dimension ''"},
      {"a\tf32\t4611686018427387904,4\t0\t0\n", "its shape overflows"},
      {"a\tf32\t2,3\t0\t20\n", "20 bytes for 6 elements of f32"},
      {"a\tf32\t2\t3\t8\n", "offset out of order or unaligned"},
      {"a\tf32\t2\t64\t8\nb\tf32\t2\t0\t8\n", "offset out of order or unaligned"},
      {"a\tf32\t64\t0\t256\n", "runs past the payload's end"},
      {"a\tf32\t2\t0\t8\na\tf32\t2\t64\t8\n", "empty or repeated name"},
      {"a\tf32\t2\t18446744073709551616\t8\n", "bad offset or byte count"},
  };
  for (auto& [text, expected] : cases) {
    auto e = error_of([&] { parse(payload(text, 72)); });
    EXPECT_NE(e.find(expected), std::string::npos) << text << ": " << e;
    EXPECT_NE(e.find("checkpoint 't.ckpt'"), std::string::npos) << e;
  }
  // A table longer than the payload, and no table at all.
  std::string p = payload(good, 72);
  uint64_t huge = ~uint64_t(0) - 4;
  std::memcpy(&p[0], &huge, 8);
  EXPECT_NE(error_of([&] { parse(p); }).find("claims"), std::string::npos);
  EXPECT_NE(error_of([&] { parse("abc"); }).find("is missing"), std::string::npos);
}

// results.csv / curves.csv: a missing or doubled column, a ragged row and a
// word in a number's column are each refused with the file, line and column.
TEST(CraftedFiles, CsvTablesAreCheckedCellByCell) {
  const std::set<std::string> text = {"model"};
  EXPECT_NE(error_of([&] { parse_csv("model,x\na,1\n", "r.csv", {"robustness"}, text); })
                .find("'r.csv' has no column 'robustness'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { parse_csv("model,x,x\na,1,2\n", "r.csv", {}, text); }).find("names column 'x' twice"),
            std::string::npos);
  EXPECT_NE(error_of([&] { parse_csv("model,x\na,1\nb\n", "r.csv", {}, text); }).find("r.csv:3: 1 cells"),
            std::string::npos);
  EXPECT_NE(error_of([&] { parse_csv("model,x\na,0.5abc\n", "r.csv", {}, text); })
                .find("r.csv:2: column 'x' holds '0.5abc', not a number"),
            std::string::npos);
  auto rows = parse_csv("model,x\na b,-1e-3\nc,\n", "r.csv", {"x"}, text);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].at("model"), "a b");
  EXPECT_EQ(rows[1].at("x"), "");  // empty: no value, not garbage
  // `undo report` reading such a file: Sweep.MalformedResultsAreRefusedByFileAndColumn.
}

TEST(CraftedFiles, AttackCurvesAreCheckedFieldByField) {
  // The fuzzer's finding: a step of 3.3e20 was cast to an integer (undefined
  // behaviour). Each coordinate must be whole and in range, each metric a number.
  const std::string curve = test::temp_dir("attack_curve_fields") + "/attack.jsonl";
  auto refusal = [&](const std::string& line) {
    write_file_atomic(curve, "{\"lr\": 0.001, \"seed\": 1, \"step\": 0, \"forget_ce\": 3}\n" + line + "\n");
    return error_of([&] { read_attack_points(curve); });
  };
  const std::string where = "'" + curve + "', evaluation 2: ";
  EXPECT_NE(refusal("{\"step\": 3.3e20}").find(where + "step = '3.3e20'"), std::string::npos);
  EXPECT_NE(refusal("{\"step\": -5}").find("step = '-5'"), std::string::npos);
  EXPECT_NE(refusal("{\"seed\": 1.5}").find("seed = '1.5'"), std::string::npos);
  EXPECT_NE(refusal("{\"lr\": null}").find("lr = 'null'"), std::string::npos);
  EXPECT_NE(refusal("{\"worst_lr\": -1}").find("worst_lr = '-1'"), std::string::npos);
  EXPECT_NE(refusal("{\"forget_ce\": \"low\"}").find("'forget_ce' = 'low' is not a number"), std::string::npos);
  EXPECT_NE(refusal("{\"forget_ce\": \"\"}").find("'forget_ce' = '' is not a number"), std::string::npos);
  write_file_atomic(curve, "{\"lr\": 0.001, \"seed\": 7, \"step\": 40, \"tokens\": 9, \"forget_acc\": 0.25}\n");
  auto pts = read_attack_points(curve);
  ASSERT_EQ(pts.size(), 1u);
  EXPECT_EQ(pts[0].seed, 7);
  EXPECT_EQ(pts[0].step, 40);
  EXPECT_DOUBLE_EQ(pts[0].metrics.at("forget_acc"), 0.25);
  EXPECT_EQ(pts[0].metrics.count("tokens"), 0u);
}
