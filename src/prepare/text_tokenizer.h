// What `undo data prepare` needs of a tokenizer: text to ids, the id that
// separates packed documents, and the decoding table (data/vocabulary.h) the
// LibTorch processes use in its place. Two kinds: sentencepiece (undo's own,
// trained on the corpus, or a model's tokenizer.model) and a model's
// byte-level BPE tokenizer.json. `open_text_tokenizer` picks by file.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/vocabulary.h"

namespace undo {

class TextTokenizer {
 public:
  virtual ~TextTokenizer() = default;
  virtual std::vector<int> encode(const std::string& text) const = 0;
  virtual int vocab_size() const = 0;
  virtual int eos_id() const = 0;
  // The id -> bytes table that Vocabulary decodes with.
  virtual std::vector<VocabPiece> pieces() const = 0;
  // The token transformers puts before a text when it adds special tokens
  // (Gemma's and Llama 2's <bos>), which `undo data prepare` puts before each
  // document as the model was trained; -1 where none is.
  virtual int bos_id() const { return -1; }
  // Whether decoding drops the first piece's leading space (sentencepiece's dummy prefix).
  virtual bool strips_leading_space() const = 0;
  // The name its file takes in a prepared directory: tokenizer.model or tokenizer.json.
  virtual const char* file_name() const = 0;
};

// The tokenizer file `data.tokenizer` names: a tokenizer.json, a sentencepiece
// tokenizer.model, or a Hugging Face model directory holding one
// (tokenizer.model preferred: where a model has both, as Gemma does, its
// tokenizer.json is the sentencepiece model spelled for the tokenizers
// library). InputError naming what is missing.
std::string find_tokenizer_file(const std::string& spec);

// Opens `file`: sentencepiece for a .model, byte-level BPE for a .json, whose
// end-of-text token comes from tokenizer_config.json (eos_token) or
// config.json / generation_config.json (eos_token_id) beside it. Where a
// config.json is beside it, its eos_token_id, bos_token_id and vocab_size must
// agree with the tokenizer (InputError naming config.json and the key).
std::unique_ptr<TextTokenizer> open_text_tokenizer(const std::string& file);

}  // namespace undo
