// Distillation: the KL objectives, and the HDF5 teacher-logit cache that lets
// one teacher pass serve many students.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <variant>

#include "cache/h5.h"
#include "cache/logit_cache.h"
#include "core/error.h"
#include "core/fs.h"
#include "fixtures.h"
#include "train/checkpoint.h"
#include "model/noise.h"
#include "numerics.h"
#include "test_util.h"
#include "train/objectives/distill.h"
#include "train/teacher_targets.h"

using namespace undo;

namespace {

DistillStream tiny_stream(int64_t global_batch = 8) {
  return DistillStream{test::tiny_mix("english:0.5,muldiv:0.5"), 7, 0, global_batch};
}

LogitCacheKey test_key(int vocab, int k, const std::string& dtype, int samples = 0) {
  LogitCacheKey key;
  key.teacher_sha256 = std::string(64, 'a');
  key.tokenizer_sha256 = std::string(64, 'b');
  key.stream = "english:1|train|4";
  key.seed = 3;
  key.k = k;
  key.samples = samples;
  key.dtype = dtype;
  key.vocab = vocab;
  key.window = 4;
  return key;
}

// Random rows with the key's shapes, through the same conversion a build
// uses (cache_rows_of); ids in [0, vocab), draws ascending.
LogitRows random_rows(const LogitCacheKey& key, uint64_t first, uint64_t count, uint64_t seed) {
  torch::manual_seed(seed);
  const int64_t n = int64_t(count), T = key.window;
  TeacherTargets t;
  if (key.k > 0) {
    t.ids = torch::randint(key.vocab, {n, T, key.k}, torch::kLong);
    t.logp = -torch::rand({n, T, key.k}) * 15;
    t.rest_logp = -torch::rand({n, T}) * 5;
    t.rest_logp[0][0] = -std::numeric_limits<float>::infinity();  // k = vocab leaves no mass
  }
  if (key.samples > 0) {
    t.tail_ids = std::get<0>(torch::randint(key.vocab, {n, T, key.samples}, torch::kLong).sort(-1));
    t.tail_logp = -torch::rand({n, T, key.samples}) * 15;
  }
  auto rows = cache_rows_of(t, torch::randint(key.vocab, {n, T}, torch::kLong), key);
  rows.first = first;
  return rows;
}

// A cache at `path` of `rows` rows written as `parts` parts (rank shares), then joined.
void write_cache(const std::string& path, const LogitCacheKey& key, uint64_t rows, int parts, int64_t tokens,
                 uint64_t seed = 1) {
  std::vector<CachePart> joined;
  for (int r = 0; r < parts; ++r) {
    const uint64_t b = rows * uint64_t(r) / uint64_t(parts), e = rows * uint64_t(r + 1) / uint64_t(parts);
    const std::string part = path + ".part" + std::to_string(r) + "-of-" + std::to_string(parts);
    LogitCachePartWriter w(part, key, e - b, r == 0 ? 4 : 0);  // deflated and plain parts mix
    for (uint64_t at = b; at < e; at += 3) {
      auto rows_here = random_rows(key, at, std::min<uint64_t>(3, e - at), seed + at);
      rows_here.first = at - b;
      w.write(rows_here);
    }
    w.close(e - b);
    joined.push_back({std::filesystem::path(part).filename().string(), b, e - b});
  }
  join_cache_parts(path, key, joined, tokens);
}

std::string tiny_ini() { return std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini"; }

// A teacher checkpoint: the trained tiny model, saved as an unlearning stage would.
std::string save_teacher(const std::string& dir, Transformer m) {
  CheckpointMeta meta;
  meta.model = m->cfg;
  meta.stage = "unlearn-maxent";
  save_checkpoint(dir + "/teacher.ckpt", meta, m, nullptr);
  return dir + "/teacher.ckpt";
}

}  // namespace

TEST(Distill, ForwardKlEqualsItsFormula) {
  auto t = torch::tensor({{1.0f, 0.0f, -2.0f}}), s = torch::tensor({{0.0f, 0.5f, 0.5f}});
  auto pt = torch::softmax(t.to(torch::kDouble), -1), ps = torch::softmax(s.to(torch::kDouble), -1);
  double kl = (pt * (pt.log() - ps.log())).sum().item<double>();
  // A KL of 3 terms, each of size up to |log p| ~ 2.5: it errs as they do.
  test::expect_value_near(kl, forward_kl(t, s).item<double>(), test::fp32_reordered(3, 1, 2.5), "3 classes");
  test::expect_value_near(0.0, forward_kl(t, t).item<double>(), test::fp32_reordered(3, 1, 2.5), "itself");
  // Its gradient (one fused node, no stored log-softmax) equals autograd's through the formula, on the
  // same inputs (the student's logits are fp32 values, so that only the arithmetic differs).
  torch::manual_seed(6);
  auto teacher = torch::randn({2, 5, 40}) * 3, student = (torch::randn({2, 5, 40}) * 2).to(torch::kDouble);
  auto x = student.clone().requires_grad_(true);
  auto log_t = torch::log_softmax(teacher.to(torch::kDouble), -1);
  auto expected = (log_t.exp() * (log_t - torch::log_softmax(x, -1))).sum(-1).mean();
  (expected * 3).backward();
  auto y = student.to(torch::kFloat).requires_grad_(true);
  auto fused = forward_kl(teacher, y);
  (fused * 3).backward();
  // fp32 against double: sums over the 40 classes and the 10 positions.
  test::expect_value_near(expected.item<double>(), fused.item<double>(), test::fp32_reordered(40, 1, 1), "loss");
  // The gradient, 3 (q - p) / 10 over the 10 positions, is a difference of probabilities of at most 1;
  // each exp(x - max x) errs by |x - max x| u, so the logits' spreads add to the 40-term sum.
  const int64_t spread = int64_t(std::ceil(2 * (teacher.abs().max().item<double>() + student.abs().max().item<double>())));
  test::expect_tensors_close(x.grad(), y.grad(), test::fp32_reordered(40 + spread, 1, 3.0 / 10), "gradient");
}

TEST(Distill, StudentEqualToTeacherHasZeroLossAndTheTeacherGetsNoGradient) {
  Transformer teacher = test::trained_tiny_model(), student = test::trained_tiny_model();
  DistillObjective obj(tiny_stream(), teacher);
  auto loss = obj.loss(student, MicroBatch{3, 0, 0, 4}, nullptr);
  // The same model twice: the same kernels give the same logits, bit for bit, so the KL is exactly 0.
  EXPECT_EQ(loss.item<double>(), 0.0);
  EXPECT_EQ(obj.teacher_tokens(), 4 * 32);
  apply_undo_noise(student, 0.5, 0.1, 1);
  auto noised = obj.loss(student, MicroBatch{3, 0, 0, 4}, nullptr);
  EXPECT_GT(noised.item<double>(), 0.01);
  noised.backward();
  for (auto& p : teacher->parameters()) EXPECT_FALSE(p.grad().defined());
  EXPECT_TRUE(student->embed->weight.grad().defined());
}

TEST(Distill, TheOnlineTeachersChunkedKlEqualsTheKlOnWholeLogits) {
  Transformer teacher = test::trained_tiny_model(), student = test::trained_tiny_model();
  apply_undo_noise(student, 0.5, 0.1, 1);
  DistillObjective obj(tiny_stream(), teacher);
  auto kl_and_grads = [&](bool chunked) {
    student->zero_grad();
    student->head_loss = {chunked, 9};
    auto kl = obj.loss(student, MicroBatch{3, 0, 0, 4}, nullptr);
    kl.backward();
    std::vector<torch::Tensor> grads;
    for (auto& p : student->parameters()) grads.push_back(p.grad().clone());
    return std::make_pair(kl.item<double>(), grads);
  };
  auto [whole, whole_grads] = kl_and_grads(false);
  auto [chunked, chunked_grads] = kl_and_grads(true);
  // The teacher's logits made chunk by chunk from its hidden state are its forward's, row for row;
  // the KL sums 128 positions of 320 classes, and the gradients sum over the positions through the tiny
  // model's blocks, in chunks of 9.
  test::expect_value_near(whole, chunked, test::fp32_reordered(test::kTinyLongestSum + 320, 1, test::kTinyCeScale),
                          "KL");
  for (size_t i = 0; i < whole_grads.size(); ++i)
    test::expect_tensors_close(whole_grads[i], chunked_grads[i],
                               test::fp32_reordered(test::kTinyLongestSum + 320, 3, whole_grads[i].abs().max().item<double>()),
                               "gradient " + std::to_string(i));
}

TEST(Distill, StreamRowsDependOnTheGlobalRowOnly) {
  auto stream = tiny_stream(8);
  // Step 1, rows 4..7 (rank 1 of 2) are sequences 12..15, as one process reading them directly.
  EXPECT_TRUE(torch::equal(stream.inputs(MicroBatch{99, 1, 4, 8}), stream.inputs(12, 4)));
  EXPECT_FALSE(torch::equal(stream.inputs(12, 4), stream.inputs(13, 4)));
}

TEST(Distill, TopKLossWithTheWholeVocabEqualsTheFullKl) {
  Transformer teacher = test::trained_tiny_model(), student = test::tiny_model(5);
  auto inputs = tiny_stream().inputs(0, 4);
  torch::NoGradGuard g;
  auto t = teacher->forward(inputs), s = student->forward(inputs);
  double full = forward_kl(t, s).item<double>();
  test::expect_value_near(full, cached_forward_kl(teacher_targets(t, 320), s).item<double>(),
                          test::fp32_reordered(320, 1, test::kTinyCeScale), "k = V");
  // Fewer buckets can only lose information: the bucketed KL is a lower bound.
  double k32 = cached_forward_kl(teacher_targets(t, 32), s).item<double>();
  EXPECT_LE(k32, full + test::fp32_reordered(320, 1, test::kTinyCeScale).rel * test::kTinyCeScale);
  EXPECT_GT(k32, 0.5 * full);
}

// The fused loss and its hand-derived gradient against autograd on the plain formula, in double.
TEST(Distill, TopKLossAndGradientMatchTheFormula) {
  torch::manual_seed(4);
  auto teacher = torch::randn({6, 50}) * 3, student = (torch::randn({6, 50}) * 2).to(torch::kDouble);
  for (int k : {1, 7, 50}) {
    auto t = teacher_targets(teacher, k);
    auto x = student.clone().requires_grad_(true);
    auto log_s = torch::log_softmax(x, -1);
    auto log_s_top = log_s.gather(-1, t.ids);
    auto left = 1 - log_s_top.exp().sum(-1);
    auto lt = t.logp.to(torch::kDouble), rest = t.rest_logp.to(torch::kDouble);
    auto expected = (lt.exp() * (lt - log_s_top)).sum(-1);
    if (k < 50) expected = expected + rest.exp() * (rest - left.log());
    expected.mean().backward();
    auto y = student.to(torch::kFloat).requires_grad_(true);
    auto fused = cached_forward_kl(t, y);
    fused.backward();
    // fp32 against double, sums over the 50 classes.
    test::expect_value_near(expected.mean().item<double>(), fused.item<double>(), test::fp32_reordered(50, 1, 1),
                            "loss, k=" + std::to_string(k));
    // Each exp(x - max x) errs by |x - max x| u: the logits' spreads add to the 50-term sum.
    const int64_t spread =
        int64_t(std::ceil(2 * (teacher.abs().max().item<double>() + student.abs().max().item<double>())));
    test::expect_tensors_close(x.grad(), y.grad(), test::fp32_reordered(50 + spread),
                               "gradient, k=" + std::to_string(k));
  }
}

// The draws come from the leftover mass only, carry the teacher's own
// log-probs, and depend on the seed alone.
TEST(Distill, TailDrawsComeFromOutsideTheTopKWithTheTeachersLogProbs) {
  torch::manual_seed(5);
  auto logits = torch::randn({3, 7, 40}) * 2;
  auto t = teacher_targets(logits, 6, 16, 99);
  ASSERT_EQ(t.tail_ids.sizes(), (std::vector<int64_t>{3, 7, 16}));
  auto in_top = (t.tail_ids.unsqueeze(-1) == t.ids.unsqueeze(-2)).any(-1);
  EXPECT_FALSE(in_top.any().item<bool>());
  auto logp = torch::log_softmax(logits, -1);
  // log of the softmax's p at each draw: the log-softmax to float rounding.
  test::expect_tensors_close(logp.gather(-1, t.tail_ids), t.tail_logp, test::fp32_reordered(40), "draw log-probs");
  test::expect_tensors_close(logp.gather(-1, t.ids), t.logp, test::fp32_reordered(40), "top-k log-probs");
  EXPECT_TRUE(torch::equal(std::get<0>(t.tail_ids.sort(-1)), t.tail_ids));  // ascending: a repeat is a count
  EXPECT_TRUE(torch::equal(teacher_targets(logits, 6, 16, 99).tail_ids, t.tail_ids));
  EXPECT_FALSE(torch::equal(teacher_targets(logits, 6, 16, 100).tail_ids, t.tail_ids));
}

// Exact in expectation: averaged over many independent draws, the sampled loss
// and its gradient are the full KL's, which the top-k bound is not. And one
// draw's fused gradient is autograd's on the estimator's formula.
TEST(Distill, SampledLossAndGradientAreUnbiasedForTheFullKl) {
  torch::manual_seed(6);
  const int64_t P = 4, V = 60, N = 20000, k = 5, s = 4;
  auto teacher = torch::randn({P, V}) * 1.5, student = torch::randn({P, V});
  auto x = student.clone().requires_grad_(true);
  auto full = forward_kl(teacher, x);
  full.backward();
  auto full_grad = x.grad().clone();
  // N replicas of the P positions, each with its own draws.
  auto targets = teacher_targets(teacher.expand({N, P, V}).contiguous(), k, s, 1);
  auto y = student.clone().requires_grad_(true);
  auto sampled = cached_forward_kl(targets, y.expand({N, P, V}));
  sampled.backward();
  // The mean of N estimates: its sampling error is about 1e-3 of the KL here, so these are bounds of
  // about 10 standard errors, on the draws (not on rounding, which is far below them).
  EXPECT_NEAR(sampled.item<double>(), full.item<double>(), 0.01 * full.item<double>());
  EXPECT_LT((y.grad() - full_grad).abs().max().item<double>(), 0.02 * full_grad.abs().max().item<double>());
  double bound = cached_forward_kl(teacher_targets(teacher, k), student).item<double>();
  EXPECT_LT(bound, 0.9 * full.item<double>());  // so the check above could fail
  // One draw: the fused node against autograd on sum_t w_t (lt_t - log q_t), in double.
  auto one = teacher_targets(teacher, k, s, 2);
  auto xd = student.to(torch::kDouble).requires_grad_(true);
  auto log_q = torch::log_softmax(xd, -1);
  auto w_tail = (one.rest_logp.to(torch::kDouble).exp() / double(s)).unsqueeze(-1);
  auto expected = (one.logp.to(torch::kDouble).exp() * (one.logp.to(torch::kDouble) - log_q.gather(-1, one.ids))).sum(-1) +
                  (w_tail * (one.tail_logp.to(torch::kDouble) - log_q.gather(-1, one.tail_ids))).sum(-1);
  expected.mean().backward();
  auto z = student.clone().requires_grad_(true);
  auto fused = cached_forward_kl(one, z);
  fused.backward();
  test::expect_value_near(expected.mean().item<double>(), fused.item<double>(), test::fp32_reordered(60, 1, 1),
                          "one draw's loss");
  test::expect_tensors_close(xd.grad(), z.grad(), test::fp32_reordered(60), "one draw's gradient");
  // With k = vocab nothing is left: the draws weigh nothing and the loss is the full KL.
  test::expect_value_near(full.item<double>(),
                          cached_forward_kl(teacher_targets(teacher, int(V), s, 3), student).item<double>(),
                          test::fp32_reordered(60, 1, 1), "k = V");
}

// Pure sampling (k = 0, the draws are the whole target, each of weight 1/s):
// the mean over replicas of the loss and gradient is the full KL's, and the
// stratified draws vary less than independent ones would.
TEST(Distill, PureSamplingIsUnbiasedForTheFullKl) {
  torch::manual_seed(7);
  const int64_t P = 4, V = 60, N = 20000, s = 8;
  auto teacher = torch::randn({P, V}) * 1.5, student = torch::randn({P, V});
  auto x = student.clone().requires_grad_(true);
  auto full = forward_kl(teacher, x);
  full.backward();
  auto targets = teacher_targets(teacher.expand({N, P, V}).contiguous(), 0, s, 1);
  EXPECT_FALSE(targets.ids.defined());
  auto y = student.clone().requires_grad_(true);
  auto sampled = cached_forward_kl(targets, y.expand({N, P, V}));
  sampled.backward();
  EXPECT_NEAR(sampled.item<double>(), full.item<double>(), 0.01 * full.item<double>());
  EXPECT_LT((y.grad() - x.grad()).abs().max().item<double>(), 0.02 * x.grad().abs().max().item<double>());
  // Each replica's estimate against independent multinomial draws' at the same s.
  auto per_replica = [&](const TeacherTargets& t) {
    auto log_q = torch::log_softmax(student, -1).expand({N, P, V});
    return ((t.tail_logp - log_q.gather(-1, t.tail_ids)).sum(-1) / double(s)).mean(-1);
  };
  TeacherTargets iid;
  auto p = torch::softmax(teacher, -1).expand({N, P, V}).reshape({N * P, V});
  iid.tail_ids = torch::multinomial(p, s, /*replacement=*/true).reshape({N, P, s});
  iid.tail_logp = torch::log_softmax(teacher, -1).expand({N, P, V}).gather(-1, iid.tail_ids);
  EXPECT_LT(per_replica(targets).var().item<double>(), 0.8 * per_replica(iid).var().item<double>());
}

TEST(LogitCache, WritesAndReadsBackExactly) {
  auto dir = test::temp_dir("cache_rw");
  // uint16 and uint32 ids; top-k with and without draws; pure sampling in q8
  for (auto [vocab, k, dtype, samples] :
       {std::tuple{320, 3, "f16", 2}, {70000, 3, "f32", 0}, {320, 0, "q8", 5}}) {
    auto key = test_key(vocab, k, dtype, samples);
    auto path = dir + "/c-" + dtype + ".h5";
    write_cache(path, key, 7, 2, 28);
    LogitCacheReader r(path);
    EXPECT_EQ(r.key().mismatch(key), "");
    EXPECT_EQ(r.rows(), 7u);
    EXPECT_EQ(r.teacher_tokens(), 28);
    EXPECT_EQ(r.part_files().size(), 2u);
    EXPECT_NO_THROW(r.verify(2));  // blocks that straddle the parts
    auto back = r.read(2, 3);      // rows 2..4: across the parts' boundary at 3
    // write_cache's writes: rows 0..2 (seed 1) into the first part, rows 3..5 (seed 4) into the second.
    auto first = random_rows(key, 0, 3, 1), second = random_rows(key, 0, 3, 4);
    const auto cols = cache_columns(key);
    for (size_t c = 0; c < cols.size(); ++c) {
      const size_t b = cols[c].row_bytes();
      ASSERT_EQ(back.columns[c].size(), 3 * b) << cols[c].name;
      EXPECT_EQ(std::memcmp(back.columns[c].data(), first.columns[c].data() + 2 * b, b), 0) << cols[c].name;
      EXPECT_EQ(std::memcmp(back.columns[c].data() + b, second.columns[c].data(), 2 * b), 0) << cols[c].name;
    }
    EXPECT_THROW(r.read(6, 2), RuntimeError);
  }
}

TEST(LogitCache, QuantisedLogProbsRoundTripWithinHalfAStep) {
  auto key = test_key(320, 0, "q8", 6);
  torch::manual_seed(2);
  TeacherTargets t;
  t.tail_ids = std::get<0>(torch::randint(320, {2, 4, 6}, torch::kLong).sort(-1));
  t.tail_logp = -torch::rand({2, 4, 6}) * 15;
  auto back = targets_of(cache_rows_of(t, torch::zeros({2, 4}, torch::kLong), key), key, nullptr);
  EXPECT_TRUE(torch::equal(back.tail_ids, t.tail_ids));
  EXPECT_LE((back.tail_logp - t.tail_logp).abs().max().item<double>(), 1.0 / 32 + 1e-6);
  EXPECT_FALSE(back.ids.defined());
}

TEST(LogitCache, OpensInPythonWithH5py) {
  // The interpreter of launch/setup's environment, where h5py is pinned.
  const std::string python = UNDO_PYTHON;
  if (!test::python_has("h5py"))
    GTEST_SKIP() << "h5py is missing from " << python << ": skipped (launch/setup installs it; CI runs it)";
  auto dir = test::temp_dir("cache_h5py");
  auto key = test_key(320, 3, "f16", 5);
  write_cache(dir + "/c.h5", key, 4, 2, 16);
  auto rows = LogitCacheReader(dir + "/c.h5").read(0, 4);
  // docs/LOGIT_CACHE.md's recipe: float16 log-probs, ids, attributes, the
  // virtual datasets read across both parts from another working directory.
  std::string script = dir + "/read.py";
  std::ofstream(script) << "import h5py, numpy as np, sys\n"
                           "f = h5py.File(sys.argv[1], 'r')\n"
                           "lp = f['topk_logp'][...]\n"
                           "assert lp.dtype == np.float16, lp.dtype\n"
                           "assert f['topk_ids'].dtype == np.uint16\n"
                           "assert f['draw_ids'].shape == (4, 4, 5) and f['draw_logp'].dtype == np.float16\n"
                           "assert f['row_sha256'].shape == (4, 32)\n"
                           "assert f.attrs['samples'] == 5 and f.attrs['format_version'] == 3\n"
                           "print(f.attrs['k'], f.attrs['dtype'].decode(), lp.shape, repr(float(lp[3, 2, 0])),\n"
                           "      int(f['topk_ids'][3, 2, 0]), float(f['rest_logp'][0, 0]))\n";
  auto out = test::temp_dir("cache_h5py_out") + "/out.txt";
  ASSERT_EQ(std::system(("cd / && " + python + " " + script + " " + dir + "/c.h5 > " + out).c_str()), 0);
  auto at = column_index(key);
  const uint16_t* lp = reinterpret_cast<const uint16_t*>(rows.columns[size_t(at.topk_logp)].data());
  const uint16_t* ids = reinterpret_cast<const uint16_t*>(rows.columns[size_t(at.topk_ids)].data());
  uint16_t bits = lp[(3 * 4 + 2) * 3];
  float expected = torch::from_blob(&bits, {1}, torch::kHalf).item<float>();
  auto text = read_file(out);
  EXPECT_NE(text.find("3 f16 (4, 4, 3)"), std::string::npos) << text;
  EXPECT_NEAR(std::stod(text.substr(text.find(") ") + 2)), expected, 0.0) << text;
  EXPECT_NE(text.find(" " + std::to_string(ids[(3 * 4 + 2) * 3]) + " -inf"), std::string::npos) << text;
}

// A crafted cache: each key field, the format and the row count rewritten in
// turn (with HDF5 itself, so the file stays valid HDF5). Each is refused by
// the reader naming the file and the field before anything is sized by it.
TEST(LogitCache, CraftedFieldsAreRefusedOneByOne) {
  auto dir = test::temp_dir("cache_crafted");
  auto key = test_key(320, 8, "f32", 4);
  write_cache(dir + "/good.h5", key, 16, 1, 512);
  struct Case {
    std::string attr;
    std::variant<int64_t, std::string> value;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"format", std::string("other"), "not an undo-logit-cache file"},
      {"format_version", int64_t(99), "format version 99"},
      {"format_version", int64_t(2), "format version 2, this build reads only version 3"},
      {"k", int64_t(-1), "k=-1"},
      {"k", int64_t(321), "k=321"},
      {"window", int64_t(0), "window=0"},
      {"vocab", int64_t(0), "vocab=0"},
      {"samples", int64_t(-1), "samples=-1"},
      {"samples", int64_t(1) << 20, "samples=1048576"},
      {"dtype", std::string("f8"), "dtype=f8"},
      {"window", int64_t(64), "wrong shape"},
      {"rows", int64_t(17), "wrong shape"},
      {"seed", int64_t(4), "belongs to another key: seed 3 (expected 4)"},
      {"tokenizer_sha256", std::string(64, 'c'), "belongs to another key: tokenizer_sha256"},
      {"content_sha256", std::string(64, '0'), "not the recorded content_sha256"},
  };
  const std::string good = read_file(dir + "/good.h5");
  int n = 0;
  for (auto& c : cases) {
    const std::string bad = dir + "/bad" + std::to_string(n++) + ".h5";
    write_file_atomic(bad, good);  // the index only: it names the same part, by its name
    std::filesystem::copy_file(dir + "/good.h5.part0-of-1", dir + "/" + std::filesystem::path(bad).filename().string() +
                                                                ".part0-of-1");
    {
      h5::Handle f(H5Fopen(bad.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
      ASSERT_GE(H5Adelete(f, c.attr.c_str()), 0) << c.attr;
      if (auto* i = std::get_if<int64_t>(&c.value)) h5::write_attr(f, c.attr, *i);
      else h5::write_attr(f, c.attr, std::get<std::string>(c.value));
    }
    try {
      LogitCacheReader r(bad);
      r.verify();
      ADD_FAILURE() << c.attr << " crafted was accepted";
    } catch (const RuntimeError& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << c.attr << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find(c.expect), std::string::npos) << c.attr << ": " << e.what();
    }
  }
}

TEST(LogitCache, TruncatedBitFlippedOrMissingPartsAreDetected) {
  auto dir = test::temp_dir("cache_corrupt");
  auto key = test_key(320, 0, "q8", 12);
  write_cache(dir + "/good.h5", key, 64, 2, 256);
  const std::string part = dir + "/good.h5.part1-of-2";
  const auto good = read_file(part);
  // Where row 40's draws lie in the part's bytes (96 distinctive bytes), to flip one of them.
  auto row = LogitCacheReader(dir + "/good.h5").read(40, 1).columns[size_t(column_index(key).draw_ids)];
  const size_t at = good.find(std::string(row.begin(), row.end()));
  ASSERT_NE(at, std::string::npos);
  auto refused = [&](const std::string& what, const std::string& expect) {
    try {
      LogitCacheReader r(dir + "/good.h5");
      r.verify();
      ADD_FAILURE() << "a cache with a " << what << " part was accepted";
    } catch (const RuntimeError& e) {
      EXPECT_NE(std::string(e.what()).find(dir + "/good.h5"), std::string::npos) << what << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << what << ": " << e.what();
    }
  };
  write_file_atomic(part, good.substr(0, good.size() / 2));
  refused("truncated", "part1-of-2");
  // One bit of one row's data: the row is named.
  std::string flipped = good;
  flipped[at + 10] ^= 0x10;
  write_file_atomic(part, flipped);
  refused("bit-flipped", "row 40 does not match its recorded sha256");
  std::filesystem::remove(part);
  refused("missing", "its part '" + part + "' is missing");
  write_file_atomic(part, good);
  EXPECT_NO_THROW(LogitCacheReader(dir + "/good.h5").verify());
}

TEST(Cli, CachedDistillationMatchesOnlineAndOneTeacherPassServesManyStudents) {
  auto dir = test::temp_dir("distill_cache");
  auto teacher = save_teacher(dir, test::trained_tiny_model());
  std::string common = "distill --config " + tiny_ini() + " --data.dir " + test::tiny_data_dir() + " --teacher " +
                       teacher + " --eval.arith_per_op 0 --distill.stop_metric none --distill.lr 1e-2" +
                       " --distill.cache_dir " + dir + "/cache";
  const std::string steps = " --distill.steps 12";
  std::string out;
  ASSERT_EQ(test::run_undo(common + steps + " --distill.cache off --run-dir " + dir + "/online", &out), 0) << out;
  // k = vocab in float32: the cached target is the teacher's whole distribution.
  std::string exact = " --distill.cache_k 320 --distill.cache_dtype f32";
  ASSERT_EQ(test::run_undo(common + steps + exact + " --run-dir " + dir + "/cached", &out), 0) << out;
  auto online = test::losses_of(dir + "/online/metrics.jsonl"), cached = test::losses_of(dir + "/cached/metrics.jsonl");
  ASSERT_EQ(online.size(), cached.size());
  // The cached KL sums the 320 stored log-probabilities in another kernel than the online one: 12 steps.
  test::expect_curves_match(online, cached, test::fp32_reordered(320, 12, test::kTinyCeScale), "cached k = V");
  auto summary = read_file(dir + "/cached/summary.json");
  EXPECT_NE(summary.find("\"cache_built\": 1"), std::string::npos) << summary;
  EXPECT_NE(summary.find("\"teacher_forward_tokens\": 3072"), std::string::npos) << summary;  // 12 x 8 x 32
  // A second student (another seed, noised) reuses the cache; --cache require insists on one.
  ASSERT_EQ(test::run_undo(common + steps + exact + " --distill.cache require --run.seed 7 --distill.init noised"
                                            " --distill.alpha 0.5 --run-dir " + dir + "/second",
                           &out),
            0)
      << out;
  EXPECT_NE(out.find("reusing"), std::string::npos) << out;
  // Issue 28: a summary's numbers are JSON numbers, its names strings.
  const std::string second = read_file(dir + "/second/summary.json");
  EXPECT_NE(second.find("\"cache_built\": 0"), std::string::npos) << second;
  EXPECT_NE(second.find("\"alpha\": 0.5,"), std::string::npos) << second;
  EXPECT_NE(second.find("\"init\": \"noised\""), std::string::npos) << second;
  // More steps than the cache holds: require refuses, naming the file.
  EXPECT_EQ(test::run_undo(common + exact + " --distill.cache require --distill.steps 20 --run-dir " + dir + "/long",
                           &out),
            2);
  EXPECT_NE(out.find("rows"), std::string::npos) << out;
}

TEST(Cli, CacheOfAnotherTeacherIsRefusedAndCorruptionIsReported) {
  auto dir = test::temp_dir("cache_foreign");
  auto teacher_a = save_teacher(dir, test::trained_tiny_model());
  make_dirs(dir + "/b");
  auto teacher_b = save_teacher(dir + "/b", test::tiny_model(9));
  std::string base = " --config " + tiny_ini() + " --data.dir " + test::tiny_data_dir();
  std::string out;
  ASSERT_EQ(test::run_undo("cache-logits" + base + " --teacher " + teacher_a + " --tokens 2000 --out " + dir +
                               "/a.h5 --run-dir " + dir + "/cache_run",
                           &out),
            0)
      << out;
  EXPECT_TRUE(file_exists(dir + "/a.h5.json"));
  std::string distill = "distill" + base + " --eval.arith_per_op 0 --distill.steps 4 --distill.stop_metric none" +
                        " --run-dir " + dir + "/student --cache-file " + dir + "/a.h5";
  EXPECT_EQ(test::run_undo(distill + " --teacher " + teacher_b, &out), 2);
  EXPECT_NE(out.find("another key: teacher_sha256"), std::string::npos) << out;
  // Teacher A's own cache serves it, until a bit flips.
  ASSERT_EQ(test::run_undo(distill + " --teacher " + teacher_a + " --distill.cache require", &out), 0) << out;
  auto bytes = read_file(dir + "/a.h5.part0-of-1");  // the index maps its one part: the data is there
  bytes[bytes.size() * 6 / 10] ^= 0x01;
  write_file_atomic(dir + "/a.h5.part0-of-1", bytes);
  // (A new run directory: the student's own holds its finished run, which a fresh run may not replace.)
  std::string again = distill;
  again.replace(again.find("/student "), 9, "/student-again ");
  EXPECT_EQ(test::run_undo(again + " --teacher " + teacher_a + " --distill.cache require", &out), 2);
  EXPECT_NE(out.find("corrupted"), std::string::npos) << out;
}

TEST(Cli, TwoConcurrentCacheWritersLeaveOneValidCache) {
  auto dir = test::temp_dir("cache_race");
  auto teacher = save_teacher(dir, test::trained_tiny_model());
  std::string cmd = "cache-logits --config " + tiny_ini() + " --data.dir " + test::tiny_data_dir() + " --teacher " +
                    teacher + " --tokens 20000 --distill.cache_dir " + dir + "/cache --run.threads 1";
  // Both start at once; the lock makes one build and the other wait and reuse.
  std::string script = "cd " + dir + " && (" + UNDO_BINARY + " " + cmd + " --run-dir r1 > a.log 2>&1 & " +
                       UNDO_BINARY + " " + cmd + " --run-dir r2 > b.log 2>&1 & wait)";
  ASSERT_EQ(std::system(script.c_str()), 0);
  auto a = read_file(dir + "/a.log"), b = read_file(dir + "/b.log");
  int built = int(a.find("\"built\": true") != std::string::npos) + int(b.find("\"built\": true") != std::string::npos);
  int reused = int(a.find("\"built\": false") != std::string::npos) + int(b.find("\"built\": false") != std::string::npos);
  EXPECT_EQ(built, 1) << a << b;
  EXPECT_EQ(reused, 1) << a << b;
  std::vector<std::string> files;
  for (auto& e : std::filesystem::directory_iterator(dir + "/cache")) files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  ASSERT_EQ(files.size(), 4u) << "expected the cache, its manifest, its lock and its part";  // no temporaries left
  EXPECT_NO_THROW(LogitCacheReader(dir + "/cache/" + files[0]).verify());
  EXPECT_EQ(files[1], files[0] + ".json");
  EXPECT_EQ(files[3], files[0] + ".part0-of-1");
}

// `undo cache ls | verify | gc`: a cache a student read is listed with its
// reader and kept; one nothing read is deleted only when confirmed. And a
// cache without a directory given lives under the run's, never in the cwd.
TEST(Cli, CachesAreListedVerifiedAndCollectedByWhatReadsThem) {
  auto dir = test::temp_dir("cache_cli");
  auto teacher = save_teacher(dir, test::trained_tiny_model());
  const std::string base = " --config " + tiny_ini() + " --data.dir " + test::tiny_data_dir() + " --run.threads 1";
  std::string out;
  const std::string caches = dir + "/sweep/cache";
  ASSERT_EQ(test::run_undo("distill" + base + " --teacher " + teacher + " --eval.arith_per_op 0 --distill.steps 2" +
                               " --distill.stop_metric none --distill.cache_dir " + caches + " --run-dir " + dir +
                               "/sweep/jobs/student",
                           &out),
            0)
      << out;
  ASSERT_EQ(test::run_undo("cache-logits" + base + " --teacher " + teacher + " --tokens 512 --distill.cache_k 4" +
                               " --distill.cache_dir " + caches + " --run-dir " + dir + "/sweep/jobs/unread",
                           &out),
            0)
      << out;
  std::string read_by, unread;
  for (auto& e : std::filesystem::directory_iterator(caches)) {
    const std::string f = e.path().string();
    if (f.size() < 3 || f.compare(f.size() - 3, 3, ".h5") != 0) continue;
    (read_file(dir + "/sweep/jobs/student/summary.json").find(f) != std::string::npos ? read_by : unread) = f;
  }
  ASSERT_FALSE(read_by.empty() || unread.empty()) << read_by << " / " << unread;
  ASSERT_EQ(test::run_undo("cache ls " + dir + "/sweep", &out), 0) << out;
  const auto listed_read = out.find(read_by + "\n"), listed_unread = out.find(unread + "\n");
  ASSERT_NE(listed_read, std::string::npos) << out;
  ASSERT_NE(listed_unread, std::string::npos) << out;
  EXPECT_NE(out.find("read by 1 run(s): " + dir + "/sweep/jobs/student", listed_read), std::string::npos) << out;
  EXPECT_NE(out.find("top4+s12 q8", listed_unread), std::string::npos) << out;
  EXPECT_NE(out.find("positions"), std::string::npos) << out;
  EXPECT_EQ(test::run_undo("cache verify " + read_by, &out), 0) << out;
  EXPECT_NE(out.find(": ok, "), std::string::npos) << out;
  // Asked and refused: nothing goes.
  EXPECT_EQ(test::run_command("echo n | " + std::string(UNDO_BINARY) + " cache gc " + dir + "/sweep --keep-referenced",
                              &out),
            1)
      << out;
  EXPECT_TRUE(file_exists(unread));
  EXPECT_EQ(test::run_undo("cache gc " + dir + "/sweep", &out), 2) << out;  // the policy must be named
  ASSERT_EQ(test::run_undo("cache gc " + dir + "/sweep --keep-referenced --yes", &out), 0) << out;
  EXPECT_FALSE(file_exists(unread));
  EXPECT_FALSE(file_exists(unread + ".part0-of-1"));
  EXPECT_FALSE(file_exists(unread + ".json"));
  EXPECT_NO_THROW(LogitCacheReader(read_by).verify());
  // A corrupted part: verify exits non-zero naming the row.
  auto part = read_by + ".part0-of-1";
  auto row = LogitCacheReader(read_by).read(1, 1).columns[0];  // row 1's tokens
  auto bytes = read_file(part);
  const size_t at = bytes.find(std::string(row.begin(), row.end()));
  ASSERT_NE(at, std::string::npos);
  bytes[at] ^= 0x01;
  write_file_atomic(part, bytes);
  EXPECT_EQ(test::run_undo("cache verify " + read_by, &out), 1) << out;
  EXPECT_NE(out.find("row 1 does not match"), std::string::npos) << out;
  // No cache dir given: under the run's directory.
  ASSERT_EQ(test::run_command("cd " + dir + " && " + UNDO_BINARY + " cache-logits" + base + " --teacher " + teacher +
                                  " --tokens 256 --run-dir " + dir + "/own 2>&1",
                              &out),
            0)
      << out;
  EXPECT_NE(out.find(dir + "/own/logit-cache/logits-"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/cache"));
  // Its progress line and the phases of its build.
  EXPECT_NE(out.find("cache-logits 256/256 positions"), std::string::npos) << out;
  EXPECT_NE(out.find("positions/s elapsed"), std::string::npos) << out;
  EXPECT_NE(out.find(" ETA "), std::string::npos) << out;
  EXPECT_NE(out.find("cache-logits phases (rank 0): forward "), std::string::npos) << out;
  auto summary = read_file(dir + "/own/summary.json");
  for (const char* phase : {"\"forward_s\"", "\"sample_s\"", "\"hash_s\"", "\"write_s\"", "\"join_s\"",
                            "\"teacher_waited_for_writer_s\"", "\"positions_per_s\""})
    EXPECT_NE(summary.find(phase), std::string::npos) << phase << " in " << summary;
}
