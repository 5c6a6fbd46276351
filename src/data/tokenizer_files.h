// The files that make a model's tokenizer, named in one place: the tokenizer
// itself, in the order undo prefers them (a sentencepiece tokenizer.model
// before a tokenizer.json: where a model ships both, as Gemma and Llama 2 do,
// the tokenizer.json is the same model spelt for the tokenizers library), and
// the files that go with it wherever it is copied. Data preparation, import
// and export all ask here.
#pragma once
#include <array>
#include <string>

#include "core/fs.h"

namespace undo {

inline constexpr std::array<const char*, 2> kTokenizerFiles = {"tokenizer.model", "tokenizer.json"};
inline constexpr std::array<const char*, 2> kTokenizerCompanions = {"tokenizer_config.json", "special_tokens_map.json"};

// The name of the tokenizer file in `dir` that undo uses: the first of
// kTokenizerFiles there, "" when none is.
inline std::string tokenizer_file_in(const std::string& dir) {
  for (const char* name : kTokenizerFiles)
    if (file_exists(join_path(dir, name))) return name;
  return "";
}

}  // namespace undo
