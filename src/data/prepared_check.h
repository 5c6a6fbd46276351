// Whether a prepared data directory is what its manifest says it is: the
// manifest names the tokenizer and the decoding table by sha256, and every
// token shard carries its own checksum. Training refuses a directory where
// they disagree (a swapped tokenizer would silently change every text), and
// `undo data prepare` prepares again over a damaged preparation instead of
// calling it "already prepared".
#pragma once
#include <string>

namespace undo {

// "" when the directory holds a manifest whose tokenizer (tokenizer.model, or
// a model's tokenizer.json) and vocab.bin match their recorded sha256 (and,
// with `shards`, whose every *.bin token shard verifies); else what is wrong,
// naming the file.
std::string prepared_data_problem(const std::string& dir, bool shards);

// The tokenizer file the directory's manifest names (its path); InputError
// when the manifest is missing or names none undo reads.
std::string prepared_tokenizer(const std::string& dir);

}  // namespace undo
