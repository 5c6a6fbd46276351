// Whether a prepared data directory is what its manifest says it is: the
// manifest names the tokenizer and the decoding table by sha256, and every
// token shard carries its own checksum. Training refuses a directory where
// they disagree (a swapped tokenizer would silently change every text), and
// `undo data prepare` prepares again over a damaged preparation instead of
// calling it "already prepared".
#pragma once
#include <string>

#include "formats/checkpoint_file.h"

namespace undo {

// "" when the directory holds a manifest whose tokenizer (tokenizer.model, or
// a model's tokenizer.json) and vocab.bin match their recorded sha256 (and,
// with `shards`, whose every *.bin token shard verifies); else what is wrong,
// naming the file.
std::string prepared_data_problem(const std::string& dir, bool shards);

// The tokenizer file the directory's manifest names (its path); InputError
// when the manifest is missing or names none undo reads.
std::string prepared_tokenizer(const std::string& dir);

// Refuses (InputError naming data.dir) a directory for which
// prepared_data_problem finds a problem: what every stage that reads
// prepared data calls first.
void check_prepared_data(const std::string& dir);

// The sha256 of the tokenizer DIR was prepared with, as its manifest records
// it (prepared_data_problem checks the file against it); "" without one.
std::string prepared_tokenizer_sha256(const std::string& dir);

// The sha256 of the tokenizer file a checkpoint's model was trained (or
// imported) with, as its meta records it; "" when it records none (a file
// from before, or an import whose directory had no tokenizer).
std::string recorded_tokenizer_sha256(const CheckpointMeta& meta);

// Refuses, with InputError naming the model file, data.dir and both hashes, a
// model that data.dir's tokens would not mean the same to: the checkpoint
// records another tokenizer than the one data.dir was prepared with, or its
// vocabulary is smaller than the tokenizer's (ids past its embedding). The
// preparation itself must have been checked (check_prepared_data). Every stage that
// reads a model together with data, or ships data.dir's tokenizer with a
// model, calls this: it used to be the training stages' own check alone.
void check_model_fits_data(const CheckpointMeta& meta, const std::string& model_file, const std::string& data_dir);

}  // namespace undo
