// Sentencepiece BPE tokenizer trained on the prepared corpus: digits split into
// single tokens (so arithmetic is learnable), byte fallback (nothing is ever
// unencodable). Kept behind a pimpl so that callers need no sentencepiece headers.
#pragma once
#include <memory>
#include <string>
#include <vector>

namespace undo {

class Tokenizer {
 public:
  explicit Tokenizer(const std::string& model_path);
  ~Tokenizer();
  std::vector<int> encode(const std::string& text) const;
  std::string decode(const std::vector<int>& ids) const;
  int vocab_size() const;
  int eos_id() const;  // separator between packed documents

  // Trains on the lines of `corpus_path` and writes MODEL_PREFIX.model/.vocab.
  static void train(const std::string& corpus_path, const std::string& model_prefix, int vocab_size,
                    uint64_t seed);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace undo
