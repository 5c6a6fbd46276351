#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/sha256.h"
#include "data/arithmetic.h"
#include "data/shard.h"
#include "data/stream.h"
#include "data/eval_prompts.h"
#include "data/vocabulary.h"
#include "eval/evaluator.h"
#include "fixtures.h"
#include "numerics.h"
#include "test_util.h"

using namespace undo;

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  std::string abc = "abc";
  EXPECT_EQ(sha256_hex(abc.data(), 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::string m(1000, 'a');  // spans several blocks and an unaligned tail
  Sha256 h;
  h.update(m.substr(0, 333));
  h.update(m.substr(333));
  EXPECT_EQ(h.hex(), sha256_hex(m.data(), m.size()));
  // A million 'a's (FIPS 180-2, appendix B.3).
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a').data(), 1000000),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// HMAC-SHA256 against RFC 4231's test cases 1, 2 and 6 (a key longer than a block).
TEST(Sha256, HmacMatchesRfc4231) {
  auto hex = [](const std::array<uint8_t, 32>& mac) { return to_hex(mac.data(), mac.size()); };
  EXPECT_EQ(hex(hmac_sha256(std::string(20, '\x0b'), "Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(hex(hmac_sha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(hex(hmac_sha256(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(Arithmetic, OperandRangesAndExactness) {
  for (Op op : {Op::Add, Op::Sub, Op::Mul, Op::Div}) {
    auto ps = training_problems(op, 400, 11);
    for (auto& p : ps) {
      switch (op) {
        case Op::Add: EXPECT_EQ(p.answer, p.a + p.b); EXPECT_LE(p.a, 50); EXPECT_GE(p.b, 1); break;
        case Op::Sub: EXPECT_EQ(p.answer, p.a - p.b); EXPECT_GE(p.answer, 0); EXPECT_LE(p.a, 50); break;
        case Op::Mul: EXPECT_EQ(p.answer, p.a * p.b); EXPECT_LE(p.a, 20); EXPECT_LE(p.b, 20); break;
        case Op::Div: EXPECT_EQ(p.a, p.answer * p.b); EXPECT_LE(p.b, 20); EXPECT_LE(p.answer, 20); break;
      }
    }
  }
}

TEST(Arithmetic, DeterministicAndHeldOutTemplates) {
  auto a = training_problems(Op::Mul, 50, 3), b = training_problems(Op::Mul, 50, 3);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].text(), b[i].text());
  EXPECT_EQ(a[0].prompt.back(), '=');  // first problem is an equation
  // Word-problem templates of the evaluation set never occur in training.
  auto stem = [](const std::string& s) { return s.substr(0, s.find_first_of("0123456789")); };
  std::set<std::string> train_stems, eval_stems;
  for (auto& p : training_problems(Op::Add, 2000, 5))
    if (p.format == Format::Word) train_stems.insert(stem(p.prompt));
  for (ProblemSet set : kScoredSets)
    for (auto& p : eval_problems(Op::Add, set, 100, 5))
      if (p.format == Format::Word) eval_stems.insert(stem(p.prompt));
  EXPECT_GE(train_stems.size(), 5u);
  EXPECT_FALSE(eval_stems.empty());
  for (auto& s : eval_stems) EXPECT_EQ(train_stems.count(s), 0u) << s;
  EXPECT_EQ(eval_problems(Op::Div, ProblemSet::Test, 100, 9).size(), 200u);
}

// Equations too are scored only in renderings never trained on: the operands
// of a test problem were trained on (the paper's protocol), its string was not.
TEST(Arithmetic, ScoredEquationsUseHeldOutRenderings) {
  auto shape = [](std::string s) {  // the rendering: digits replaced by '#'
    std::string out;
    for (char c : s)
      if (!std::isdigit(static_cast<unsigned char>(c))) out += c;
      else if (out.empty() || out.back() != '#') out += '#';
    return out;
  };
  for (Op op : {Op::Add, Op::Sub, Op::Mul, Op::Div}) {
    std::set<std::string> trained, scored;
    for (auto& p : training_problems(op, 4000, 5))
      if (p.format == Format::Equation) trained.insert(shape(p.prompt));
    for (ProblemSet set : kScoredSets)
      for (auto& p : eval_problems(op, set, kEvalMaxPerFormat, kEvalProblemSeed))
        if (p.format == Format::Equation) scored.insert(shape(p.prompt));
    EXPECT_EQ(trained.size(), 1u) << op_name(op);
    EXPECT_EQ(scored.size(), 2u) << op_name(op);
    for (auto& s : scored) EXPECT_EQ(trained.count(s), 0u) << s;
  }
}

TEST(Arithmetic, HeldOutOperandsAreNeverTrainedOn) {
  std::map<Op, size_t> pool{{Op::Add, 625}, {Op::Sub, 319}, {Op::Mul, 100}, {Op::Div, 100}};
  for (Op op : {Op::Add, Op::Sub, Op::Mul, Op::Div}) {
    EXPECT_EQ(held_out_operands(op).size(), pool[op]) << op_name(op);
    std::set<std::pair<int, int>> trained;
    for (auto& p : training_problems(op, 20000, 1234)) {
      EXPECT_FALSE(is_held_out(op, p.a, p.b)) << p.text();
      trained.insert({p.a, p.b});
    }
    // 20000 draws reach every training problem: the split, not chance, keeps the held-out ones out.
    EXPECT_EQ(trained.size() + pool[op], op == Op::Add ? 2500u : op == Op::Sub ? 1275u : 400u) << op_name(op);
    // Generalisation scores held-out operands; validation and test the training pool's, split in two halves.
    for (auto& p : drawn_problems(op, ProblemSet::Generalisation, 500, 99)) EXPECT_TRUE(is_held_out(op, p.a, p.b));
    const auto &val = operands_of(op, ProblemSet::Validation), &test = operands_of(op, ProblemSet::Test);
    std::set<std::pair<int, int>> val_set(val.begin(), val.end()), test_set(test.begin(), test.end());
    EXPECT_EQ(val_set.size() + test_set.size(), trained.size()) << op_name(op);
    for (auto& ab : val) EXPECT_TRUE(trained.count(ab) && !test_set.count(ab)) << ab.first << "," << ab.second;
    for (auto& ab : test) EXPECT_TRUE(trained.count(ab)) << ab.first << "," << ab.second;
    for (ProblemSet set : kScoredSets) {
      auto eval = eval_problems(op, set, kEvalMaxPerFormat, kEvalProblemSeed);
      std::set<std::string> equations;
      for (auto& p : eval) {
        const bool general = set == ProblemSet::Generalisation;
        EXPECT_EQ(is_held_out(op, p.a, p.b), general) << p.text();
        if (!general) {
          EXPECT_EQ((set == ProblemSet::Test ? test_set : val_set).count({p.a, p.b}), 1u) << p.text();
        }
        if (p.format == Format::Equation) equations.insert(p.prompt);
      }
      EXPECT_EQ(equations.size(), size_t(kEvalMaxPerFormat)) << "distinct evaluation equations";
      // A smaller evaluation set is a prefix of the larger one, per format.
      auto small = eval_problems(op, set, 7, kEvalProblemSeed);
      for (int i = 0; i < 7; ++i) {
        EXPECT_EQ(small[size_t(i)].text(), eval[size_t(i)].text());
        EXPECT_EQ(small[size_t(7 + i)].text(), eval[size_t(kEvalMaxPerFormat + i)].text());
      }
    }
  }
  EXPECT_THROW(eval_problems(Op::Mul, ProblemSet::Test, kEvalMaxPerFormat + 1, 1), RuntimeError);
  EXPECT_THROW(eval_problems(Op::Mul, ProblemSet::Training, 1, 1), RuntimeError);
}

TEST(Arithmetic, ScorerCases) {
  long v = 0;
  EXPECT_TRUE(parse_first_number(" 42 and 7", &v));
  EXPECT_EQ(v, 42);
  EXPECT_TRUE(parse_first_number("x-5", &v));
  EXPECT_EQ(v, -5);
  EXPECT_FALSE(parse_first_number(" no digits here", &v));  // unparsable
}

TEST(Arithmetic, AnswerScorer) {
  EXPECT_TRUE(answer_correct(" 19\n7 + 1", 19));   // right: the first number counts
  EXPECT_FALSE(answer_correct(" 18", 19));          // wrong
  EXPECT_FALSE(answer_correct(" 190", 19));         // a longer number is not a match
  EXPECT_FALSE(answer_correct(" nineteen", 19));    // unparsable
  EXPECT_FALSE(answer_correct("", 19));
}

// A window the model scores NaN (it diverged on some text) makes its stream's
// CE NaN, never the mean of the windows left: the attack's divergence check
// reads it (a mean over the rest would hide the divergence).
TEST(Evaluator, ANaNWindowMakesTheStreamCeNaN) {
  Config cfg = test::tiny_config(test::temp_dir("nan_window"));
  Shard shard(test::tiny_data_dir() + "/muldiv.test.bin");
  const int window = cfg.model.seq_len, n = cfg.eval.batches * cfg.train.batch_size;
  auto in_window = [&](int w, uint32_t t) {
    for (int i = 0; i <= window; ++i)
      if (shard[uint64_t(w) * uint64_t(window) + uint64_t(i)] == t) return true;
    return false;
  };
  // A token of the first window that some other scored window lacks.
  int64_t token = -1;
  for (int i = 1; i <= window && token < 0; ++i)
    for (int w = 1; w < n && token < 0; ++w)
      if (!in_window(w, shard[uint64_t(i)])) token = shard[uint64_t(i)];
  ASSERT_GE(token, 0);
  // Its own output head, so that a NaN input embedding reaches only the windows that hold the token.
  cfg.model.tied_embeddings = false;
  torch::manual_seed(1);
  Transformer model(cfg.model);
  Evaluator evaluator(cfg);
  evaluator.run(model);
  ASSERT_TRUE(std::isfinite(evaluator.last().at("forget_ce")));
  {
    torch::NoGradGuard no_grad;
    model->embed->weight[token].fill_(NAN);
  }
  auto ces = window_ces(model, shard, window, n, cfg.train.batch_size, false);
  const auto nan = std::count_if(ces.begin(), ces.end(), [](double v) { return std::isnan(v); });
  ASSERT_GT(nan, 0);
  ASSERT_LT(nan, n) << "some windows are still scored";
  evaluator.run(model);
  EXPECT_TRUE(std::isnan(evaluator.last().at("forget_ce")));
  EXPECT_TRUE(std::isnan(evaluator.last().at("ce_muldiv")));
}

// Issue 28: `undo eval` of text and arithmetic prints one progress line, in
// parts (each stream's test and validation windows, each operation's problems
// in every scored set), whose last count is the whole; the evaluations inside
// training print none.
TEST(Evaluator, AProgressLineCountsEveryPartOnlyWhenAsked) {
  Config cfg = test::tiny_config(test::temp_dir("eval_progress"));
  torch::manual_seed(1);
  Transformer model(cfg.model);
  Evaluator evaluator(cfg);
  testing::internal::CaptureStderr();
  evaluator.run(model);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  evaluator.show_progress(/*quiet_s=*/0);
  testing::internal::CaptureStderr();
  const auto scores = evaluator.run(model).str();
  const std::string err = testing::internal::GetCapturedStderr();
  // Three streams (english, addsub, muldiv) twice (test, validation), and four operations in three problem sets.
  EXPECT_NE(err.find("eval: scoring: 18/18 parts, "), std::string::npos) << err;
  EXPECT_NE(err.find("eval: scoring: 1/18 parts, "), std::string::npos) << err;
  EXPECT_NE(scores.find("forget_acc"), std::string::npos) << scores;
}

// Answer CE: -log p(answer | separator, prompt), by one teacher-forced pass per
// batch of equal shapes, equals the sum over the answer's tokens scored alone.
TEST(Evaluator, AnswerNllIsTheTeacherForcedLogLikelihoodOfTheAnswer) {
  Vocabulary vocab(test::tiny_data_dir() + "/vocab.bin");
  auto prompts =
      read_eval_prompts(test::tiny_data_dir() + "/eval_prompts.jsonl", 3, vocab.size()).at(ProblemSet::Test).at(Op::Mul);
  Transformer model = test::trained_tiny_model();
  auto nll = answer_nll(model, vocab.eos_id(), prompts, false);
  ASSERT_EQ(nll.size(), prompts.size());
  torch::NoGradGuard no_grad;
  int scored = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    // A problem longer than the window is not scored.
    if (prompts[i].ids.size() + prompts[i].answer_ids.size() > size_t(model->cfg.seq_len)) {
      EXPECT_TRUE(std::isnan(nll[i])) << prompts[i].problem.prompt;
      continue;
    }
    ++scored;
    std::vector<int64_t> seq = {vocab.eos_id()};
    seq.insert(seq.end(), prompts[i].ids.begin(), prompts[i].ids.end());
    double expected = 0;
    for (int id : prompts[i].answer_ids) {
      auto logits = model->forward(torch::tensor(seq, torch::kLong).unsqueeze(0));
      expected -= torch::log_softmax(logits[0][-1].to(torch::kDouble), -1)[id].item<double>();
      seq.push_back(id);
    }
    // One batched forward against one per token: products of other shapes, the log-softmax over the
    // 320 classes in fp32 against double, summed over the answer's tokens.
    test::expect_value_near(expected, nll[i], test::fp32_reordered(320, 2, 1), prompts[i].problem.prompt);
    EXPECT_GT(nll[i], 0);
  }
  EXPECT_GE(scored, 3);  // the equations fit
}

TEST(Shard, RoundTripAndCorruption) {
  auto dir = test::temp_dir("shard");
  std::vector<uint32_t> tokens;
  for (uint32_t i = 0; i < 5000; ++i) tokens.push_back((i * 7919) % 1000);
  auto path = dir + "/s.bin";
  write_shard(path, tokens, 1000);
  {
    Shard s(path);
    ASSERT_EQ(s.size(), tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) ASSERT_EQ(s[i], tokens[i]);
  }
  // uint32 shards for large vocabularies.
  write_shard(dir + "/big.bin", {70000, 3}, 80000);
  EXPECT_EQ(Shard(dir + "/big.bin")[0], 70000u);
  // A flipped payload bit and a truncated file are both refused, naming the file.
  std::string bytes = read_file(path);
  bytes[100] ^= 1;
  write_file_atomic(dir + "/flipped.bin", bytes);
  try {
    Shard s(dir + "/flipped.bin");
    FAIL() << "corrupted shard was accepted";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("flipped.bin"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("checksum"), std::string::npos);
  }
  write_file_atomic(dir + "/short.bin", read_file(path).substr(0, 1000));
  EXPECT_THROW(Shard(dir + "/short.bin"), RuntimeError);
  // A token count whose byte size wraps 64 bits (2^62 uint32 tokens "fill" an empty payload,
  // whose checksum is right) is refused, not read past the file: the fuzz check found it.
  std::string wrapped = read_file(dir + "/big.bin").substr(0, 64);
  const uint64_t count = uint64_t(1) << 62;
  std::memcpy(&wrapped[16], &count, 8);
  Sha256 empty;
  auto digest = empty.digest();
  std::memcpy(&wrapped[24], digest.data(), 32);
  write_file_atomic(dir + "/wrapped.bin", wrapped);
  try {
    Shard s(dir + "/wrapped.bin");
    FAIL() << "a shard claiming 2^62 tokens in 64 bytes was accepted";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
}

TEST(Stream, DeterministicMixAndRankSlices) {
  const std::string& data = test::tiny_data_dir();
  StreamMix mix(data, parse_mix("m", "english:0.5,addsub:0.25,muldiv:0.25"), "train", 16);
  auto a = mix.batch(42, 3, 0, 8), b = mix.batch(42, 3, 0, 8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, mix.batch(42, 4, 0, 8));  // the step moves the data
  EXPECT_NE(a, mix.batch(43, 3, 0, 8));  // and so does the seed
  // Two ranks' slices of a global batch are disjoint and together equal world size 1.
  auto [b0, e0] = rank_slice(8, 0, 2);
  auto [b1, e1] = rank_slice(8, 1, 2);
  EXPECT_EQ(e0, b1);
  auto r0 = mix.batch(42, 3, b0, e0), r1 = mix.batch(42, 3, b1, e1);
  r0.insert(r0.end(), r1.begin(), r1.end());
  EXPECT_EQ(r0, a);
  EXPECT_THROW(rank_slice(7, 0, 2), InputError);
  // Stream choice follows the weights.
  std::vector<int64_t> w(17);
  std::map<std::string, int> counts;
  for (int i = 0; i < 4000; ++i) counts[mix.name(mix.sample(1, 0, uint64_t(i), w.data()))]++;
  EXPECT_NEAR(counts["english"] / 4000.0, 0.5, 0.04);
  EXPECT_NEAR(counts["muldiv"] / 4000.0, 0.25, 0.04);
}

