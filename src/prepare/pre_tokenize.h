// What a Hugging Face tokenizer.json does to text before its BPE model sees
// it: the normalizer (NFC; Replace and Prepend, as sentencepiece-converted
// files spell a space "▁") and the pre-tokenizer (ByteLevel, Split, Digits,
// Metaspace, and Sequences of them), for the two kinds of BPE files models
// ship: byte-level (GPT-2, Llama 3, Qwen2: every byte one symbol of GPT-2's
// alphabet) and sentencepiece-style (Llama 2, Gemma: code points, "▁" for a
// space, bytes only as a fallback). Each step does what the tokenizers library
// does (tested against it: tests/data_tool/bpe_tokenizer_test.cpp); a step or
// setting it does not do is refused naming the key.
#pragma once
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/json_value.h"

namespace undo {

// GPT-2's byte-level alphabet: every byte as one printable code point.
// Printable Latin-1 bytes stand for themselves; the others (controls, space,
// ...) take code points from 256 on, in byte order.
struct ByteAlphabet {
  uint32_t to_cp[256];
  std::unordered_map<uint32_t, uint8_t> to_byte;
  ByteAlphabet();
};
const ByteAlphabet& byte_alphabet();

class PreTokenizer {
 public:
  // `normalizer` and `pre_tokenizer`: tokenizer.json's members (null or absent: none).
  PreTokenizer(const JsonValue* normalizer, const JsonValue* pre_tokenizer, const std::string& file);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // A stretch of text between added tokens as the model's words, in the
  // model's alphabet (byte-level symbols, or UTF-8). `at_start`: the stretch
  // begins the text (Metaspace's prepend_scheme "first").
  std::vector<std::string> words(const std::string& text, bool at_start) const;
  // Whether words are spelt in GPT-2's byte alphabet (a ByteLevel step).
  bool byte_level() const { return byte_level_; }

 private:
  struct Step;
  struct Normalization;
  std::vector<Normalization> normalizations_;
  std::vector<std::unique_ptr<Step>> steps_;
  bool byte_level_ = false;
  std::string file_;
  void read_normalizer(const JsonValue& n);
  void read_step(const JsonValue& p);
  std::string normalized(std::string s) const;
};

}  // namespace undo
