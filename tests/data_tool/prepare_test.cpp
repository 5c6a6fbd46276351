// Tests of the data-preparation side (undo-data): the sentencepiece tokenizer,
// the decoding table it hands to the LibTorch processes, text extraction and
// a whole preparation. This binary links sentencepiece and never LibTorch.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

#include "core/error.h"
#include "core/fs.h"
#include "data/eval_prompts.h"
#include "data/prepared_check.h"
#include "data/shard.h"
#include "data/stream.h"
#include "data/vocabulary.h"
#include "prepare/spm_tokenizer.h"
#include "prepare/text_extract.h"
#include "test_util.h"

using namespace undo;

TEST(Tokenizer, RoundTripEnglishKoreanDigits) {
  auto dir = test::temp_dir("tok");
  std::string korean = "안녕하세요. 이 문서는 도움말 페이지입니다.\n파일을 저장하려면 메뉴를 선택하십시오.\n";
  {
    std::ofstream corpus(dir + "/corpus.txt");
    corpus << test::generated_english(400, 1);
    for (int i = 0; i < 30; ++i) corpus << korean << i * 37 << " + " << i << " = " << i * 38 << "\n";
  }
  SpmTokenizer::train(dir + "/corpus.txt", dir + "/tok", 400, 1);
  SpmTokenizer tok(dir + "/tok.model");
  EXPECT_LE(tok.vocab_size(), 400);
  Vocabulary vocab(tok.pieces(), tok.eos_id(), true);
  for (std::string s : {std::string("The farmer walked to the river."), korean,
                        std::string("12345 + 678 = 13023"), std::string("낯선 글자 뷁 and ünïcödé ☃"),
                        std::string("  two leading spaces"), std::string(" 7 * 8 = 56\n\nend ")}) {
    auto ids = tok.encode(s);
    EXPECT_EQ(tok.decode(ids), s);  // exact, newlines included
    EXPECT_EQ(vocab.decode(ids), s) << "the LibTorch side decodes like sentencepiece";
    // A model's continuation starts anywhere: every suffix decodes alike too.
    for (size_t from = 1; from < ids.size(); ++from) {
      std::vector<int> tail(ids.begin() + long(from), ids.end());
      if (vocab.pieces()[size_t(tail[0])].kind == PieceKind::Byte) continue;  // a cut UTF-8 sequence: spm writes U+FFFD
      EXPECT_EQ(vocab.decode(tail), tok.decode(tail)) << s << " from token " << from;
    }
  }
  // Every single text or control piece, and the separator inside a sequence.
  for (int id = 0; id < tok.vocab_size(); ++id) {
    if (vocab.pieces()[size_t(id)].kind != PieceKind::Byte) {
      EXPECT_EQ(vocab.decode({id}), tok.decode({id})) << id;
    }
  }
  auto two = tok.encode("one two");
  two.insert(two.begin() + 1, tok.eos_id());
  EXPECT_EQ(vocab.decode(two), tok.decode(two));
  // Digits are single tokens: "12345" needs at least five pieces.
  EXPECT_GE(tok.encode("12345").size(), 5u);
  EXPECT_THROW(SpmTokenizer(dir + "/missing.model"), InputError);
}

TEST(TextExtract, HtmlAndHangulFilter) {
  std::string html =
      "<html><head><title>T</title><script>var x=1;</script></head><body><h1>Title &amp; more</h1>"
      "<p>First  paragraph.</p><style>p{}</style><p>한국어 문장입니다</p></body></html>";
  std::string text = html_to_text(html);
  EXPECT_NE(text.find("Title & more\n"), std::string::npos) << text;
  EXPECT_NE(text.find("First paragraph."), std::string::npos);
  EXPECT_EQ(text.find("var x"), std::string::npos);
  EXPECT_EQ(text.find("p{}"), std::string::npos);
  auto hangul = parse_code_point_ranges("data.forget_script", "AC00-D7A3");
  EXPECT_GT(script_share("한국어 문장입니다", hangul), 0.99);
  EXPECT_LT(script_share("LibreOffice 도움말", hangul), 0.3);  // 3 Hangul of 14 letters
  EXPECT_EQ(script_share("1234 !!", hangul), 0.0);
  auto cyrillic = parse_code_point_ranges("data.forget_script", "0400-04FF,0500-052F");
  EXPECT_GT(script_share("Привет, мир", cyrillic), 0.99);
  EXPECT_EQ(script_share("한국어", cyrillic), 0.0);
  for (auto bad : {"", "zz", "D7A3-AC00", "110000", "AC00-"})
    EXPECT_THROW(parse_code_point_ranges("data.forget_script", bad), InputError) << bad;
  std::string mallard = "<page xmlns='http://projectmallard.org/1.0/'><info><credit>x</credit></info>"
                        "<title>제목</title><p>본문 내용</p></page>";
  EXPECT_EQ(xml_to_text(mallard), "제목\n\n본문 내용\n");  // one blank line between blocks
}

TEST(Prepare, ManifestAndStreams) {
  const std::string& data = test::tiny_data_dir();
  std::string manifest = read_file(data + "/manifest.json");
  for (auto key : {"\"tokenizer_sha256\"", "\"vocab_sha256\"", "\"english.train\"", "\"addsub.val\"", "\"muldiv.train\"",
                   "\"tokens\"", "\"bytes\"", "\"prepare_key\""})
    EXPECT_NE(manifest.find(key), std::string::npos) << key;
  EXPECT_EQ(manifest.find("\"korean"), std::string::npos);
  // Arithmetic validation problems decode back to text with the answers in it.
  SpmTokenizer tok(data + "/tokenizer.model");
  Shard val(data + "/muldiv.val.bin");
  std::vector<int> ids;
  for (uint64_t i = 0; i < 60; ++i) ids.push_back(int(val[i]));
  std::string text = tok.decode(ids);
  EXPECT_TRUE(text.find('*') != std::string::npos || text.find('/') != std::string::npos ||
              text.find("Answer:") != std::string::npos)
      << text;
}

TEST(Vocabulary, FileRoundTripAndCorruptionIsRefusedByName) {
  auto dir = test::temp_dir("vocab");
  Vocabulary v({{PieceKind::Control, ""}, {PieceKind::Text, " the"}, {PieceKind::Byte, "\xC3"}, {PieceKind::Text, "x"}},
               0, true);
  v.write(dir + "/vocab.bin");
  Vocabulary back(dir + "/vocab.bin");
  EXPECT_EQ(back.size(), 4);
  EXPECT_EQ(back.eos_id(), 0);
  EXPECT_EQ(back.decode({1, 0, 1, 3}), "the thex");
  std::string bytes = read_file(dir + "/vocab.bin");
  auto refused = [&](std::string content, const char* why) {
    write_file_atomic(dir + "/bad.bin", content);
    try {
      Vocabulary bad(dir + "/bad.bin");
      ADD_FAILURE() << "accepted: " << why;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(dir + "/bad.bin"), std::string::npos) << e.what();
    }
  };
  std::string flipped = bytes;
  flipped.back() ^= 1;
  refused(flipped, "a flipped byte");
  refused(bytes.substr(0, bytes.size() - 1), "truncated");
  refused(bytes.substr(0, 20), "a cut header");
  refused("UNDOCKPT" + bytes.substr(8), "another file's magic");
  std::string huge = bytes;
  huge[12] = '\xff', huge[13] = '\xff', huge[14] = '\xff', huge[15] = '\x7f';  // n_pieces = 2^31 - 1
  refused(huge, "an absurd piece count");
  EXPECT_THROW(Vocabulary(dir + "/missing.bin"), InputError);
}

TEST(Prepare, EvalPromptsAreTokenizedHeldOutProblems) {
  const std::string& data = test::tiny_data_dir();
  SpmTokenizer tok(data + "/tokenizer.model");
  auto sets = read_eval_prompts(data + "/eval_prompts.jsonl", kEvalPromptsPerFormat, tok.vocab_size());
  ASSERT_EQ(sets.size(), 3u);
  for (auto& [set, by_op] : sets) {
    ASSERT_EQ(by_op.size(), 4u);
    for (auto& [op, prompts] : by_op) {
      auto expected = eval_problems(op, set, kEvalPromptsPerFormat, kEvalProblemSeed);
      ASSERT_EQ(prompts.size(), expected.size());
      for (size_t i = 0; i < prompts.size(); ++i) {
        EXPECT_EQ(prompts[i].problem.prompt, expected[i].prompt);
        EXPECT_EQ(prompts[i].problem.answer, expected[i].answer);
        EXPECT_EQ(prompts[i].ids, tok.encode(expected[i].prompt));
        // Prompt then answer tokens are the whole training text's, and the answer decodes to its number.
        auto whole = prompts[i].ids;
        whole.insert(whole.end(), prompts[i].answer_ids.begin(), prompts[i].answer_ids.end());
        EXPECT_EQ(whole, tok.encode(expected[i].text()));
        EXPECT_EQ(std::stol(tok.decode(prompts[i].answer_ids)), expected[i].answer);
      }
    }
  }
  // The evaluator asks for the first N of each format; more than were prepared is refused by name.
  EXPECT_EQ(read_eval_prompts(data + "/eval_prompts.jsonl", 3, tok.vocab_size()).at(ProblemSet::Test).at(Op::Mul).size(),
            6u);
  try {
    read_eval_prompts(data + "/eval_prompts.jsonl", kEvalPromptsPerFormat + 1, tok.vocab_size());
    ADD_FAILURE() << "accepted more prompts than were prepared";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("eval.arith_per_op"), std::string::npos) << e.what();
  }
}

namespace {

// The documents of a shard, decoded (the separator splits them).
std::vector<std::string> documents(const std::string& shard_path, const Vocabulary& vocab) {
  Shard shard(shard_path);
  std::vector<std::string> docs;
  std::vector<int> ids;
  for (uint64_t i = 0; i < shard.size(); ++i) {
    int id = int(shard[i]);
    if (id == vocab.eos_id()) {
      if (!ids.empty()) docs.push_back(vocab.decode(ids));
      ids.clear();
    } else {
      ids.push_back(id);
    }
  }
  if (!ids.empty()) docs.push_back(vocab.decode(ids));
  return docs;
}

// Every validation document and every evaluation prompt is absent from every
// training stream of a prepared directory (the attack trains on those too).
void expect_held_out(const std::string& data, const std::vector<std::string>& streams) {
  Vocabulary vocab(data + "/vocab.bin");
  std::set<std::string> trained;
  for (auto& s : streams)
    for (auto& d : documents(data + "/" + s + ".train.bin", vocab)) trained.insert(d);
  ASSERT_FALSE(trained.empty());
  // Validation and test documents: never trained on, and never each other.
  for (auto& s : streams) {
    auto val = documents(data + "/" + s + ".val.bin", vocab), test = documents(data + "/" + s + ".test.bin", vocab);
    ASSERT_FALSE(val.empty()) << s;
    ASSERT_FALSE(test.empty()) << s;
    std::set<std::string> test_docs(test.begin(), test.end());
    for (auto& d : val) EXPECT_EQ(trained.count(d), 0u) << s << ".val document also trained on: " << d.substr(0, 80);
    for (auto& d : test) EXPECT_EQ(trained.count(d), 0u) << s << ".test document also trained on: " << d.substr(0, 80);
    for (auto& d : val) EXPECT_EQ(test_docs.count(d), 0u) << s << ": a validation document is also a test one";
  }
  if (!file_exists(data + "/eval_prompts.jsonl")) return;
  auto prompts = read_eval_prompts(data + "/eval_prompts.jsonl", kEvalPromptsPerFormat, vocab.size());
  std::set<std::string> trained_prompts;  // a trained problem's text up to its answer
  for (auto& d : trained)
    if (auto at = d.rfind(' '); at != std::string::npos) trained_prompts.insert(d.substr(0, at));
  // No scored string was trained on; validation and test problems are disjoint;
  // the paper's sets (validation, test) score the training pool's operands
  // (data_test checks that training draws every one of them), generalisation
  // only held-out ones.
  size_t checked = 0;
  std::set<std::tuple<Op, int, int>> val_problems;
  for (auto& [op, ps] : prompts.at(ProblemSet::Validation))
    for (auto& p : ps) val_problems.insert({op, p.problem.a, p.problem.b});
  for (auto& [set, by_op] : prompts)
    for (auto& [op, ps] : by_op)
      for (auto& p : ps) {
        EXPECT_EQ(trained_prompts.count(p.problem.prompt), 0u) << "evaluation problem trained on: " << p.problem.prompt;
        EXPECT_EQ(trained.count(p.problem.text()), 0u) << p.problem.text();
        EXPECT_EQ(is_held_out(op, p.problem.a, p.problem.b), set == ProblemSet::Generalisation) << p.problem.text();
        if (set == ProblemSet::Test) {
          EXPECT_EQ(val_problems.count({op, p.problem.a, p.problem.b}), 0u) << p.problem.text();
        }
        ++checked;
      }
  EXPECT_EQ(checked, size_t(3 * 4 * 2 * kEvalPromptsPerFormat));
  // Equations in the training streams never use held-out operands.
  for (auto& d : trained) {
    int a, b;
    char sym;
    if (std::sscanf(d.c_str(), "%d %c %d =", &a, &sym, &b) != 3) continue;
    Op op = sym == '+' ? Op::Add : sym == '-' ? Op::Sub : sym == '*' ? Op::Mul : Op::Div;
    EXPECT_FALSE(is_held_out(op, a, b)) << d;
  }
}

}  // namespace

TEST(Prepare, NoEvaluatedProblemOrDocumentIsTrainedOnInAnySetting) {
  // The arithmetic setting: the tests' data (English, add/sub, mul/div).
  expect_held_out(test::tiny_data_dir(), {"english", "addsub", "muldiv"});
  // The language setting on plain-text directories: English and Korean documents.
  auto dir = test::temp_dir("lang");
  std::filesystem::create_directories(dir + "/en");
  std::filesystem::create_directories(dir + "/ko");
  const std::vector<std::string> ko_words = {"도움말", "문서", "파일을", "저장하려면", "메뉴를", "선택하십시오",
                                             "페이지", "설정", "글꼴", "표"};
  for (int i = 0; i < 30; ++i) {
    std::ofstream(dir + "/en/doc" + std::to_string(i) + ".txt") << test::generated_english(40, uint64_t(i) + 100);
    std::string ko;
    for (int w = 0; w < 200; ++w) ko += ko_words[splitmix64(uint64_t(i * 1000 + w)) % ko_words.size()] + (w % 12 == 11 ? ".\n" : " ");
    std::ofstream(dir + "/ko/doc" + std::to_string(i) + ".txt") << ko;
  }
  std::string out;
  ASSERT_EQ(test::run_command(std::string(UNDO_DATA_BINARY) + " prepare --data.dir " + dir + "/prepared" +
                                  " --data.setting lang --data.sources " + dir + "/none --data.english_dirs " + dir +
                                  "/en --data.forget_dirs " + dir + "/ko --data.tokenizer_vocab 400 2>&1",
                              &out),
            0)
      << out;
  expect_held_out(dir + "/prepared", {"english", "korean"});
}

// The forget language is a setting: the same protocol on Russian from a
// package directory, by configuration alone.
TEST(Prepare, AnotherForgetLanguageByConfigurationAlone) {
  auto dir = test::temp_dir("russian");
  std::filesystem::create_directories(dir + "/en");
  std::filesystem::create_directories(dir + "/pkgs/help-ru/usr/share/help/ru");
  for (int i = 0; i < 20; ++i) {
    std::ofstream(dir + "/en/doc" + std::to_string(i) + ".txt") << test::generated_english(40, uint64_t(i) + 300);
    // A help page whose translation falls back to English on some lines, as translated help does.
    std::ofstream(dir + "/pkgs/help-ru/usr/share/help/ru/page" + std::to_string(i) + ".html")
        << "<html><body><h1>Справка номер " << i << "</h1><p>Чтобы сохранить файл, выберите меню Файл.</p>"
        << "<p>Press Ctrl+S to save the file.</p><p>Откройте диалог параметров и нажмите кнопку " << i * 7
        << ".</p></body></html>";
  }
  std::string out;
  std::string args = std::string(UNDO_DATA_BINARY) + " prepare --data.dir " + dir + "/prepared --data.setting lang" +
                     " --data.sources " + dir + "/pkgs --data.english_dirs " + dir + "/en" +
                     " --data.forget_language russian --data.forget_script 0400-04FF" +
                     " --data.forget_sources help-ru/usr/share/help/ru --data.tokenizer_vocab 400 2>&1";
  ASSERT_EQ(test::run_command(args, &out), 0) << out;
  std::string manifest = read_file(dir + "/prepared/manifest.json");
  EXPECT_NE(manifest.find("\"russian.train\""), std::string::npos) << manifest;
  EXPECT_EQ(manifest.find("korean"), std::string::npos) << manifest;
  Vocabulary vocab(dir + "/prepared/vocab.bin");
  auto script = parse_code_point_ranges("data.forget_script", "0400-04FF");
  size_t lines = 0;
  for (auto split : {"train", "val", "test"})
    for (auto& doc : documents(dir + "/prepared/russian." + std::string(split) + ".bin", vocab)) {
      std::istringstream in(doc);
      for (std::string line; std::getline(in, line);) {
        if (line.empty()) continue;
        EXPECT_GE(script_share(line, script), 0.3) << line;  // the English fallback lines are gone
        ++lines;
      }
    }
  EXPECT_GE(lines, 40u);
  expect_held_out(dir + "/prepared", {"english", "russian"});
  // A bad script or stream name is refused by key, before anything is written.
  EXPECT_EQ(test::run_command(args + " --data.forget_script XYZ", &out), 2) << out;
  EXPECT_NE(out.find("data.forget_script"), std::string::npos) << out;
}

// `undo data prepare` replaces only an earlier preparation: a data.dir holding
// anything else (or naming a file) is refused by name and left as it was.
TEST(Prepare, NeverDeletesWhatItDidNotCreate) {
  auto dir = test::temp_dir("user_files");
  std::filesystem::create_directories(dir + "/mine");
  write_file_atomic(dir + "/mine/precious.txt", "keep me");
  write_file_atomic(dir + "/a-file", "keep me too");
  std::string base = std::string(UNDO_DATA_BINARY) + " prepare --data.setting arith --data.arith_problems 50" +
                     " --data.sources " + dir + "/none --data.tokenizer_vocab 400 --data.dir ";
  for (auto target : {dir + "/mine", dir + "/a-file"}) {
    std::string out;
    EXPECT_EQ(test::run_command(base + target + " 2>&1", &out), 2) << out;
    EXPECT_NE(out.find("data.dir = '" + target + "'"), std::string::npos) << out;
  }
  EXPECT_EQ(read_file(dir + "/mine/precious.txt"), "keep me");
  EXPECT_EQ(read_file(dir + "/a-file"), "keep me too");
  // An earlier preparation, or an empty directory, is replaced as before.
  std::filesystem::create_directories(dir + "/empty");
  std::string out;
  ASSERT_EQ(test::run_command(base + dir + "/empty 2>&1", &out), 0) << out;
  ASSERT_EQ(test::run_command(base + dir + "/empty --run.seed 9 2>&1", &out), 0) << out;
  EXPECT_NE(read_file(dir + "/empty/manifest.json").find("\"seed\": 9"), std::string::npos);
  // Issue 26, class 2: the user's files placed in an earlier preparation stay
  // through the next one (they used to be deleted with it), the directory
  // keeps its mode (it used to come back 0700), and a copied manifest does not
  // make a directory a preparation.
  write_file_atomic(dir + "/empty/NOTES.md", "my notes\n");
  std::filesystem::create_directories(dir + "/empty/analysis");
  write_file_atomic(dir + "/empty/analysis/plot.py", "print(1)\n");
  std::filesystem::permissions(dir + "/empty", std::filesystem::perms(0750));
  ASSERT_EQ(test::run_command(base + dir + "/empty --run.seed 10 2>&1", &out), 0) << out;
  EXPECT_NE(read_file(dir + "/empty/manifest.json").find("\"seed\": 10"), std::string::npos);
  EXPECT_EQ(read_file(dir + "/empty/NOTES.md"), "my notes\n");
  EXPECT_EQ(read_file(dir + "/empty/analysis/plot.py"), "print(1)\n");
  EXPECT_EQ(std::filesystem::status(dir + "/empty").permissions(), std::filesystem::perms(0750));
  ASSERT_EQ(test::run_command(base + dir + "/fresh 2>&1", &out), 0) << out;
  const mode_t mask = ::umask(0);
  ::umask(mask);
  EXPECT_EQ(std::filesystem::status(dir + "/fresh").permissions(), std::filesystem::perms(0777 & ~mask));
  std::filesystem::copy_file(dir + "/empty/manifest.json", dir + "/mine/manifest.json");
  EXPECT_EQ(test::run_command(base + dir + "/mine 2>&1", &out), 2) << out;
  EXPECT_EQ(read_file(dir + "/mine/precious.txt"), "keep me");
  // Its inputs are never inside it: a preparation there would move them.
  std::filesystem::create_directories(dir + "/outer/en");
  write_file_atomic(dir + "/outer/en/a.txt", test::generated_english(200, 1));
  EXPECT_EQ(test::run_command(base + dir + "/outer --data.english_dirs " + dir + "/outer/en 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("holds the input '" + dir + "/outer/en'"), std::string::npos) << out;
  for (auto& e : std::filesystem::directory_iterator(dir))  // no staging or set-aside directory is left
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
}

// "Already prepared" means the output is intact: a preparation whose shard or
// decoding table was damaged is made again (it used to be skipped), and a
// garbage manifest is not a preparation.
TEST(Prepare, ADamagedPreparationIsMadeAgain) {
  auto dir = test::temp_dir("damaged");
  std::string cmd = std::string(UNDO_DATA_BINARY) + " prepare --data.setting arith --data.arith_problems 50" +
                    " --data.sources " + dir + "/none --data.tokenizer_vocab 400 --data.dir " + dir + "/data 2>&1";
  std::string out;
  ASSERT_EQ(test::run_command(cmd, &out), 0) << out;
  EXPECT_EQ(prepared_data_problem(dir + "/data", true), "");
  ASSERT_EQ(test::run_command(cmd, &out), 0) << out;
  EXPECT_NE(out.find("already prepared"), std::string::npos) << out;
  for (auto file : {"muldiv.train.bin", "vocab.bin"}) {
    std::string bytes = read_file(dir + "/data/" + file);
    bytes[bytes.size() - 3] ^= 0x5a;
    write_file_atomic(dir + "/data/" + file, bytes);
    EXPECT_NE(prepared_data_problem(dir + "/data", true).find(file), std::string::npos) << file;
    ASSERT_EQ(test::run_command(cmd, &out), 0) << out;
    EXPECT_NE(out.find("is damaged"), std::string::npos) << out;
    EXPECT_EQ(prepared_data_problem(dir + "/data", true), "") << file;
  }
  write_file_atomic(dir + "/data/manifest.json", "{\"garbage\": 1}");
  EXPECT_NE(prepared_data_problem(dir + "/data", false).find("not an undo preparation manifest"), std::string::npos);
}
