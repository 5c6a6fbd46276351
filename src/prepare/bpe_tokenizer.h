// A model's own BPE tokenizer, read from Hugging Face's tokenizer.json, so
// that `undo data prepare` tokenizes with an imported model's vocabulary: the
// byte-level kind (GPT-2, Llama 3, Qwen2, SmolLM) and the sentencepiece-style
// kind (Llama 2, Gemma: "▁" for a space, byte fallback, fused unknowns). It
// does what the `tokenizers` library does for these files, tested against it
// on a few hundred strings per kind (tests/data_tool/bpe_tokenizer_test.cpp):
// added tokens split out first, the normalizer and pre-tokenizer
// (prepare/pre_tokenize.h), then BPE merges by rank. Anything else in the file
// (another model type, a step it does not do) is refused naming the file and
// key, rather than tokenized differently. Like sentencepiece, it lives in
// undo-data only.
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
  bool strips_leading_space() const override;
  int bos_id() const override;
  const char* file_name() const override { return "tokenizer.json"; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace undo
