// undo's BPE tokenizer against the tokenizers library: tokenizers trains a
// tokenizer.json on English and Korean text (tests/hf/hf_tokenizers.py) in the
// styles of each family (byte-level: Llama 3's NFC, split regex and
// ignore_merges, GPT-2's own regex and prefix space; sentencepiece-style:
// Llama 2's Prepend + Replace, the Metaspace form transformers now writes,
// Gemma's Replace; byte fallback, <bos>), and undo must give the ids that it
// gives on a few hundred strings (Unicode, whitespace runs, digits, the
// special tokens' text, Korean), decode them (through vocab.bin's table) to
// what it decodes, and put the <bos> first that it puts. Skipped, saying so,
// where the Python packages are missing (CI installs them).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/json_value.h"
#include "core/utf8.h"
#include "data/shard.h"
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
  if (!test::python_has("tokenizers, transformers"))
    GTEST_SKIP() << "tokenizers or transformers is missing from " << UNDO_PYTHON
                 << ": skipped (launch/setup installs them; CI runs this test)";
  const std::string style = GetParam();
  auto dir = test::temp_dir("bpe_" + style);
  ASSERT_EQ(test::run_command(std::string(UNDO_PYTHON) + " " + kScript + " train " + style + " " + kText + " " + dir +
                              "/tok 2>&1"), 0);
  ASSERT_EQ(test::run_command(std::string(UNDO_PYTHON) + " " + kScript + " cases " + dir + "/tok " + kText + " " +
                              dir + "/cases.jsonl 2>&1"), 0);
  const std::string file = find_tokenizer_file(dir + "/tok");
  EXPECT_EQ(file, dir + "/tok/tokenizer.json");
  auto tok = open_text_tokenizer(file);
  // The end-of-text token as tokenizer_config.json names it; the <bos> the
  // family's post-processor puts first (the byte-level files here have none).
  const bool spm_style = style == "llama2" || style == "llama2-metaspace" || style == "gemma";
  EXPECT_EQ(tok->eos_id(), style == "gemma" ? 1 : spm_style ? 2 : 1);
  EXPECT_EQ(tok->bos_id(), style == "gemma" ? 2 : spm_style ? 1 : -1);
  Vocabulary vocab(tok->pieces(), tok->eos_id(), tok->strips_leading_space());
  const auto cases = lines_of(read_file(dir + "/cases.jsonl"));
  ASSERT_GE(cases.size(), 300u);
  int byte_fallbacks = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    JsonValue c = parse_json(cases[i], "cases.jsonl line " + std::to_string(i + 1));
    const std::string& text = c.at("text").string();
    std::vector<int> want;
    for (auto& id : c.at("ids").array()) want.push_back(int(id.integer(0, 1 << 20)));
    auto ids = tok->encode(text);
    EXPECT_EQ(ids, want) << style << ": case " << i << ": '" << text << "'";
    EXPECT_EQ(vocab.decode(ids), c.at("decoded").string()) << style << ": case " << i << ": '" << text << "'";
    // With special tokens, transformers starts the text with <bos> where the family has one.
    if (!c.at("first").is_null()) {
      EXPECT_EQ(tok->bos_id() >= 0 ? tok->bos_id() : ids.at(0), c.at("first").integer(0, 1 << 20)) << style << ": case " << i;
    }
    for (int id : ids) byte_fallbacks += vocab.pieces().at(size_t(id)).kind == PieceKind::Byte;
  }
  // The sentencepiece-style cases reach the byte fallback (characters outside the vocabulary).
  if (spm_style) {
    EXPECT_GT(byte_fallbacks, 100) << style;
  }

  // Prepared with it, every document starts as transformers starts it (<bos>, where the family has one)
  // and ends with the end-of-text token.
  std::filesystem::create_directories(dir + "/en");
  std::filesystem::create_directories(dir + "/ko");
  const auto lines = lines_of(read_file(kText));
  for (size_t i = 0; i < 40; ++i) {
    write_file_atomic(dir + "/en/" + std::to_string(i) + ".txt", test::generated_english(6, i));
    write_file_atomic(dir + "/ko/" + std::to_string(i) + ".txt", lines[i % lines.size()] + "\n" + lines[(i + 3) % lines.size()]);
  }
  std::string out;
  ASSERT_EQ(test::run_command(std::string(UNDO_DATA_BINARY) + " prepare --data.dir " + dir + "/prepared --data.setting lang" +
                                  " --data.sources " + dir + "/none --data.english_dirs " + dir + "/en --data.forget_dirs " +
                                  dir + "/ko --data.tokenizer " + dir + "/tok 2>&1", &out), 0) << out;
  EXPECT_NE(read_file(dir + "/prepared/manifest.json").find("\"bos_id\": " + std::to_string(tok->bos_id())),
            std::string::npos);
  Shard shard(dir + "/prepared/english.train.bin");
  ASSERT_GT(shard.size(), 2u);
  int documents = 0;
  for (uint64_t i = 0; i < shard.size(); ++i) {
    const bool starts = i == 0 || int(shard[i - 1]) == tok->eos_id();
    if (starts) ++documents;
    if (tok->bos_id() >= 0) {
      EXPECT_EQ(int(shard[i]) == tok->bos_id(), starts) << style << ": token " << i;
    }
  }
  EXPECT_EQ(int(shard[shard.size() - 1]), tok->eos_id());
  EXPECT_GT(documents, 10);

  // Beside a model's config.json, the tokenizer must start texts with the model's <bos>.
  if (tok->bos_id() >= 0) {
    write_file_atomic(dir + "/tok/config.json", "{\"bos_token_id\": " + std::to_string(tok->bos_id() + 1) + "}");
    try {
      open_text_tokenizer(file);
      ADD_FAILURE() << style << ": a config.json with another bos_token_id was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("config.json: bos_token_id is " + std::to_string(tok->bos_id() + 1)),
                std::string::npos) << e.what();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Styles, BpeStyles, ::testing::Values("llama3", "gpt2", "llama2", "llama2-metaspace", "gemma"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// What is not a byte-level BPE tokenizer undo reproduces is refused by key.
TEST(BpeTokenizer, UnsupportedFilesAreRefusedByKey) {
  auto dir = test::temp_dir("bpe_refused");
  // Opening the directory's tokenizer is refused naming `file` and `key`.
  auto expect_refused = [&](const std::string& file, const std::string& contents, const std::string& key) {
    try {
      open_text_tokenizer(find_tokenizer_file(dir));
      ADD_FAILURE() << "accepted: " << contents;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
    }
  };
  auto refused = [&](const std::string& json, const std::string& key) {
    write_file_atomic(dir + "/tokenizer.json", json);
    write_file_atomic(dir + "/tokenizer_config.json", R"({"eos_token": "</s>"})");
    expect_refused("tokenizer.json", json, key);
  };
  const std::string vocab = R"("vocab": {"a": 0, "b": 1, "</s>": 2}, "merges": [])";
  refused(R"({"model": {"type": "Unigram", "vocab": []}})", "model.type");
  // A sentencepiece-style file must have every byte's token for its fallback, or an unknown token.
  refused(R"({"model": {"type": "BPE", "byte_fallback": true, )" + vocab + "}}", "model.byte_fallback = true, but model.vocab has no <0x00>");
  refused(R"({"model": {"type": "BPE", )" + vocab + R"(}, "decoder": {"type": "WordPiece"}})", "decoder.type");
  refused(R"({"model": {"type": "BPE", )" + vocab + R"(}, "normalizer": {"type": "Replace", "pattern": {"Regex": " "}, "content": "x"}})",
          "normalizer.pattern");
  refused(R"({"model": {"type": "BPE", )" + vocab + R"(}, "pre_tokenizer": {"type": "Metaspace", "replacement": "_", "prepend_scheme": "sometimes"}})",
          "pre_tokenizer.prepend_scheme");
  refused(R"({"model": {"type": "BPE", "continuing_subword_prefix": "##", )" + vocab + "}}",
          "model.continuing_subword_prefix");
  refused(R"({"normalizer": {"type": "Lowercase"}, "model": {"type": "BPE", )" + vocab + "}}", "normalizer.type");
  refused(R"({"pre_tokenizer": {"type": "Whitespace"}, "model": {"type": "BPE", )" + vocab + "}}",
          "pre_tokenizer.type");
  refused(R"({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(["}, "behavior": "Isolated"},
             "model": {"type": "BPE", )" + vocab + "}}", "pre_tokenizer.pattern");
  refused(R"({"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}})", "model.vocab.a");
  refused(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})", "end-of-text token");
  refused(R"({"model": {"type": "BPE", )", "not valid JSON");
  // Issue 26, class 3: a tokenizer that is not internally consistent is
  // refused (a vocabulary of 1 trained to loss 0, an id of a million made a
  // vocabulary of a million, both with exit 0).
  refused(R"({"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", )" + vocab + "}}", "no token for the byte 0x0");
  refused(R"({"model": {"type": "BPE", )" + vocab + "}}", "neither model.byte_fallback nor model.unk_token");
  std::string alphabet;  // GPT-2's byte-level alphabet, as ids 0..255
  for (int b = 0, next = 256; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    std::string symbol;
    append_utf8(symbol, printable ? uint32_t(b) : uint32_t(next++));
    alphabet += (b ? ", " : "") + std::string("\"") + (symbol == "\"" || symbol == "\\" ? "\\" : "") + symbol +
                "\": " + std::to_string(b);
  }
  auto bpe = [&](const std::string& extra_vocab, const std::string& merges, const std::string& added) {
    return R"({"added_tokens": [)" + added + R"(], "pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {)" + alphabet + extra_vocab +
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
  // Issue 27: a tokenizer that cannot reproduce the model's special tokens
  // (config.json beside it) is refused by key; one that can is accepted.
  auto config_refused = [&](const std::string& config, const std::string& key) {
    write_file_atomic(dir + "/config.json", config);
    expect_refused("config.json", config, key);
  };
  config_refused(R"({"eos_token_id": 5})", "eos_token_id is 5 but the tokenizer beside it ends a text with the id 256");
  config_refused(R"({"eos_token_id": [3, 9]})", "eos_token_id is [3, 9]");
  config_refused(R"({"eos_token_id": 256, "vocab_size": 200})", "vocab_size is 200 but the tokenizer beside it has 258");
  config_refused(R"({"eos_token_id": "x"})", "eos_token_id");
  write_file_atomic(dir + "/config.json", R"({"eos_token_id": [9, 256], "bos_token_id": 300, "vocab_size": 300})");
  EXPECT_EQ(open_text_tokenizer(find_tokenizer_file(dir))->eos_id(), 256);  // this tokenizer adds no <bos>
  std::remove((dir + "/config.json").c_str());
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
  EXPECT_NE(error_of([] { parse_json(R"({"a": "\ud83d"})", "g.json"); }).find("g.json: not valid JSON at line 1, column 14: syntax error"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_json(std::string(600, '['), "deep.json"); }).find("nested deeper than 512"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_json("{} x", "t.json"); }).find("t.json: not valid JSON at line 1, column 4: syntax error"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_json("{} x", "t.json"); }).find("expected end of input"), std::string::npos);
  // Bytes that are not UTF-8 inside a string: refused, naming the file (the library checks them).
  EXPECT_NE(error_of([] { parse_json("[\"a\xFF\"]", "u.json"); }).find("u.json: not valid JSON at line 1, column 4: syntax error"),
            std::string::npos);
  // Past double's range: refused as it is read, naming the file and the number.
  EXPECT_EQ(error_of([] { parse_json(R"({"x": 1e400})", "r.json"); }),
            "r.json: not valid JSON at byte 11: number overflow parsing '1e400'");
}
