// The sentencepiece BPE tokenizer, trained on the prepared corpus: digits split
// into single tokens (so arithmetic is learnable), byte fallback (nothing is
// ever unencodable). Only `undo-data` links it: sentencepiece carries its own
// protobuf, which crashes LibTorch 2.x processes that load it, so every
// process with LibTorch works from token ids and the decoding table
// (data/vocabulary.h) that `undo data prepare` writes next to the shards.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "prepare/text_tokenizer.h"

namespace undo {

class SpmTokenizer : public TextTokenizer {
 public:
  // `add_bos`: documents start with the model's <s> (tokenizer_config.json's
  // add_bos_token, as transformers' sentencepiece tokenizers default it for a
  // model's tokenizer.model; undo's own adds none).
  explicit SpmTokenizer(const std::string& model_path, bool add_bos = false);
  ~SpmTokenizer() override;
  std::vector<int> encode(const std::string& text) const override;
  std::string decode(const std::vector<int>& ids) const;  // sentencepiece's own decoder
  int vocab_size() const override;
  int eos_id() const override;  // separator between packed documents
  int bos_id() const override;

  // The id -> bytes table that Vocabulary decodes with, without sentencepiece.
  std::vector<VocabPiece> pieces() const override;
  // The dummy prefix: sentencepiece adds a space before the text, which decoding drops.
  bool strips_leading_space() const override { return true; }
  const char* file_name() const override { return "tokenizer.model"; }

  // Trains on the lines of `corpus_path` and writes MODEL_PREFIX.model/.vocab.
  static void train(const std::string& corpus_path, const std::string& model_prefix, int vocab_size,
                    uint64_t seed);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace undo
