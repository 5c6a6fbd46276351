// A model's own byte-level BPE tokenizer, read from Hugging Face's
// tokenizer.json (the GPT-2 family: Llama 3, Qwen2, SmolLM), so that
// `undo data prepare` tokenizes with an imported model's vocabulary. It does
// what the `tokenizers` library does for these files, tested against it on
// English and Korean text (tests/data_tool/bpe_tokenizer_test.cpp): added
// tokens split out first, the normalizer (none or NFC), the pre-tokenizer
// (ByteLevel, Split by regex, or a Sequence of them; regexes through PCRE2,
// with Unicode properties), then BPE merges by rank on the byte-level
// alphabet. Anything else in the file (another model type, a normalizer or
// pre-tokenizer it does not do) is refused naming the file and key, rather
// than tokenized differently. Like sentencepiece, it lives in undo-data only.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "prepare/text_tokenizer.h"

namespace undo {

class BpeTokenizer : public TextTokenizer {
 public:
  // The token that separates packed documents: its text (`eos_token`, as
  // tokenizer_config.json names it) or, where that is "", its id (`eos_id`,
  // as config.json gives it); neither is refused.
  BpeTokenizer(const std::string& tokenizer_json_path, const std::string& eos_token, int eos_id);
  ~BpeTokenizer() override;
  std::vector<int> encode(const std::string& text) const override;
  int vocab_size() const override;
  int eos_id() const override;
  std::vector<VocabPiece> pieces() const override;
  bool strips_leading_space() const override { return false; }
  const char* file_name() const override { return "tokenizer.json"; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace undo
