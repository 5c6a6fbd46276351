// Checkpoints: model weights, optimizer state, RNG state and the step (the
// data position: batches are a pure function of seed and step), written
// atomically with a checksum and refused on load when anything is off.
//
// The file is formats/checkpoint_file.h's container (header, key=value meta,
// checksum) around a torch archive payload.
// The meta names the LibTorch version that wrote the archive; a payload that
// this LibTorch cannot read is refused with both versions and the file named.
#pragma once
#include <torch/torch.h>

#include <map>
#include <optional>
#include <string>

#include "formats/checkpoint_file.h"
#include "model/transformer.h"
#include "train/optimizer_state.h"

namespace undo {

void save_checkpoint(const std::string& path, const CheckpointMeta& meta, Transformer& model,
                     OptimizerState* optimizer);
// The two halves of save_checkpoint, for distributed runs: every rank must
// build the bytes (a sharded optimizer gathers its state), one rank writes them.
std::string checkpoint_bytes(const CheckpointMeta& meta, Transformer& model, OptimizerState* optimizer);
void write_checkpoint_bytes(const std::string& path, const std::string& bytes);

// Reads only the header and meta (verifying the whole file's checksum).
CheckpointMeta read_checkpoint_meta(const std::string& path);

// Loads weights into `model` (whose config must match) and, when given, the
// optimizer state; restores the RNG. Throws on a corrupted or foreign file.
CheckpointMeta load_checkpoint(const std::string& path, Transformer& model, OptimizerState* optimizer);

// Builds a model from a checkpoint file's own config and loads its weights.
Transformer load_model(const std::string& path, CheckpointMeta* meta = nullptr);

// DIR/ckpt/step_XXXXXXXX.ckpt: the newest one that verifies, if any.
std::optional<std::string> latest_valid_checkpoint(const std::string& run_dir);
std::string step_checkpoint_path(const std::string& run_dir, int64_t step);
// Keeps the `keep` newest step checkpoints.
void prune_checkpoints(const std::string& run_dir, int keep);

}  // namespace undo
