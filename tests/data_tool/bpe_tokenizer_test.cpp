// undo's byte-level BPE tokenizer against the tokenizers library: tokenizers
// trains a tokenizer.json on English and Korean text (tests/hf/hf_tokenizers.py)
// in two styles (Llama 3's: NFC, a split regex, ignore_merges; GPT-2's:
// ByteLevel's own regex and a prefix space), and undo must give the ids that
// transformers' AutoTokenizer gives, line by line and for the whole text, and
// decode them (through vocab.bin's table) to what it decodes. Skipped, saying
// so, where the Python packages are missing (CI installs them).
#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/json_value.h"
#include "core/utf8.h"
#include "data/vocabulary.h"
#include "prepare/text_tokenizer.h"
#include "test_util.h"

using namespace undo;

namespace {

const std::string kScript = std::string(UNDO_SOURCE_DIR) + "/tests/hf/hf_tokenizers.py";
const std::string kText = std::string(UNDO_SOURCE_DIR) + "/tests/hf/multilingual.txt";

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) out.push_back(text.substr(start, nl - start));
  if (start < text.size()) out.push_back(text.substr(start));
  return out;
}

}  // namespace

class BpeStyles : public ::testing::TestWithParam<std::string> {};

TEST_P(BpeStyles, IdsAndDecodingEqualTheTokenizersLibrary) {
  if (test::run_command(std::string(UNDO_PYTHON) + " -c 'import tokenizers, transformers' 2>/dev/null") != 0)
    GTEST_SKIP() << "tokenizers or transformers is missing from " << UNDO_PYTHON
                 << ": skipped (launch/setup installs them; CI runs this test)";
  const std::string style = GetParam();
  auto dir = test::temp_dir("bpe_" + style);
  ASSERT_EQ(test::run_command(std::string(UNDO_PYTHON) + " " + kScript + " train " + style + " " + kText + " " + dir +
                              "/tok 2>&1"), 0);
  ASSERT_EQ(test::run_command(std::string(UNDO_PYTHON) + " " + kScript + " encode " + dir + "/tok " + kText + " " +
                              dir + "/ids.jsonl 2>&1"), 0);
  const std::string file = find_tokenizer_file(dir + "/tok");
  EXPECT_EQ(file, dir + "/tok/tokenizer.json");
  auto tok = open_text_tokenizer(file);
  EXPECT_EQ(tok->eos_id(), 1);  // <|end_of_text|>, as tokenizer_config.json names it
  Vocabulary vocab(tok->pieces(), tok->eos_id(), tok->strips_leading_space());
  const std::string text = read_file(kText);
  auto inputs = lines_of(text);
  inputs.push_back(text);
  const std::string expected = read_file(dir + "/ids.jsonl");
  auto want = lines_of(expected);
  ASSERT_EQ(want.size(), inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    JsonValue w = parse_json(want[i], "ids.jsonl line " + std::to_string(i + 1));
    std::vector<int> want_ids;
    for (auto& id : w.at("ids").array()) want_ids.push_back(int(id.integer(0, 1 << 20)));
    auto ids = tok->encode(inputs[i]);
    EXPECT_EQ(ids, want_ids) << style << ": input " << i << ": '" << inputs[i] << "'";
    EXPECT_EQ(vocab.decode(ids), w.at("text").string()) << style << ": input " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Styles, BpeStyles, ::testing::Values("llama3", "gpt2"),
                         [](const auto& info) { return info.param; });

// What is not a byte-level BPE tokenizer undo reproduces is refused by key.
TEST(BpeTokenizer, UnsupportedFilesAreRefusedByKey) {
  auto dir = test::temp_dir("bpe_refused");
  auto refused = [&](const std::string& json, const std::string& key) {
    write_file_atomic(dir + "/tokenizer.json", json);
    write_file_atomic(dir + "/tokenizer_config.json", R"({"eos_token": "</s>"})");
    try {
      open_text_tokenizer(find_tokenizer_file(dir));
      ADD_FAILURE() << "accepted: " << json;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
    }
  };
  const std::string vocab = R"("vocab": {"a": 0, "b": 1, "</s>": 2}, "merges": [])";
  refused(R"({"model": {"type": "Unigram", "vocab": []}})", "model.type");
  refused(R"({"model": {"type": "BPE", "byte_fallback": true, )" + vocab + "}}", "model.byte_fallback");
  refused(R"({"model": {"type": "BPE", "continuing_subword_prefix": "##", )" + vocab + "}}",
          "model.continuing_subword_prefix");
  refused(R"({"normalizer": {"type": "Lowercase"}, "model": {"type": "BPE", )" + vocab + "}}", "normalizer.type");
  refused(R"({"pre_tokenizer": {"type": "Metaspace"}, "model": {"type": "BPE", )" + vocab + "}}",
          "pre_tokenizer.type");
  refused(R"({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(["}, "behavior": "Isolated"},
             "model": {"type": "BPE", )" + vocab + "}}", "pre_tokenizer.pattern");
  refused(R"({"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}})", "model.vocab.a");
  refused(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})", "end-of-text token");
  refused(R"({"model": {"type": "BPE", )", "not valid JSON");
  // Issue 26, class 3: a tokenizer that is not internally consistent is
  // refused (a vocabulary of 1 trained to loss 0, an id of a million made a
  // vocabulary of a million, both with exit 0).
  refused(R"({"model": {"type": "BPE", )" + vocab + "}}", "no token for the byte 0x0");
  std::string alphabet;  // GPT-2's byte-level alphabet, as ids 0..255
  for (int b = 0, next = 256; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    std::string symbol;
    append_utf8(symbol, printable ? uint32_t(b) : uint32_t(next++));
    alphabet += (b ? ", " : "") + std::string("\"") + (symbol == "\"" || symbol == "\\" ? "\\" : "") + symbol +
                "\": " + std::to_string(b);
  }
  auto bpe = [&](const std::string& extra_vocab, const std::string& merges, const std::string& added) {
    return R"({"added_tokens": [)" + added + R"(], "model": {"type": "BPE", "vocab": {)" + alphabet + extra_vocab +
           R"(}, "merges": [)" + merges + "]}}";
  };
  refused(bpe(R"(, "</s>": 256)", "", R"({"id": 1000000, "content": "<pad>"})"), "the ids run to 1000000");
  refused(bpe(R"(, "</s>": 0)", "", ""), "gives the id 0 to both");
  refused(bpe(R"(, "</s>": 256)", "", R"({"id": 256, "content": "<pad>"})"), "added_tokens gives the id 256");
  refused(bpe(R"(, "</s>": 257)", "", ""), "the ids run to 257 but only 257");
  refused(bpe(R"(, "</s>": 256)", R"("a b")", ""), "model.merges[0] = \"a b\"");
  write_file_atomic(dir + "/tokenizer.json", bpe(R"(, "</s>": 256, "ab": 257)", R"("a b")", R"({"id": 256, "content": "</s>"})"));
  auto tok = open_text_tokenizer(find_tokenizer_file(dir));
  EXPECT_EQ(tok->vocab_size(), 258);
  EXPECT_EQ(tok->encode("ab"), std::vector<int>{257});
}

// Text taken apart by hand: invalid UTF-8 becomes U+FFFD as a lossy Rust
// conversion makes it (what the tokenizers library is given), valid text is
// kept, and code points round-trip.
TEST(Utf8, InvalidSequencesBecomeReplacementCharactersAndValidTextIsKept) {
  const std::string ok = "a\xC3\xA9\xED\x95\x9C\xF0\x9F\x99\x82";  // a é 한 🙂
  EXPECT_EQ(valid_utf8(ok), ok);
  std::string round;
  for (uint32_t cp : code_points(ok)) append_utf8(round, cp);
  EXPECT_EQ(round, ok);
  EXPECT_EQ(code_points(ok), (std::vector<uint32_t>{0x61, 0xE9, 0xD55C, 0x1F642}));
  const std::string bad = "\xFF" "a\xC3" "b\xE0\x80\x80\xED\xA0\x80\xF4\x90\x80\x80";
  // A stray byte, a cut sequence, an overlong form, a surrogate, past U+10FFFF.
  std::string fffd = "\xEF\xBF\xBD";
  std::string ten;
  for (int i = 0; i < 10; ++i) ten += fffd;  // 3 + 3 + 4: each lead byte that starts no valid sequence, and each stray byte
  EXPECT_EQ(valid_utf8(bad), fffd + "a" + fffd + "b" + ten);
}

// Other programs' JSON: escapes and surrogate pairs decoded, and every error
// names the file and where in it.
TEST(JsonValue, EscapesSurrogatesAndErrorsNameFileAndPath) {
  JsonValue v = parse_json(R"({"a": ["x\u00e9\ud83d\ude42\n", 2.5e1, true, null, 2.5], "b": {"c": -3}})", "f.json");
  EXPECT_EQ(v.at("a").array()[0].string(), "x\xC3\xA9\xF0\x9F\x99\x82\n");
  EXPECT_EQ(v.at("a").array()[1].number(), 25.0);
  EXPECT_EQ(v.at("b").at("c").integer(-10, 10), -3);
  auto error_of = [](auto fn) {
    try {
      fn();
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error_of([&] { v.at("b").at("c").string(); }), "f.json: b.c is a number, expected a string");
  EXPECT_EQ(v.at("a").array()[1].integer(0, 100), 25);
  EXPECT_EQ(error_of([&] { v.at("a").array()[4].integer(0, 100); }),
            "f.json: a[4] = 2.5: expected a whole number in [0, 100]");
  EXPECT_EQ(error_of([&] { v.at("z"); }), "f.json: the document lacks the key \"z\"");
  EXPECT_NE(error_of([] { parse_json(R"({"a": "\ud83d"})", "g.json"); }).find("g.json: not valid JSON at byte"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_json(std::string(600, '['), "deep.json"); }).find("nested deeper than 512"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_json("{} x", "t.json"); }).find("text after the document"), std::string::npos);
}
