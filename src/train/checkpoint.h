// Checkpoints: model weights, optimizer state, RNG state and the step (the
// data position: batches are a pure function of seed and step), written
// atomically with a checksum and refused on load when anything is off.
//
// The file is formats/checkpoint_file.h's container (header, key=value meta,
// checksum) around a tensor table (formats/tensor_table.h): every tensor is
// named and placed before the first is written, then the tensors stream in
// one at a time, so that a sharded model (dist.zero = 3, whose runner keeps
// the parameters: model/unit_runner.h) is saved one gathered unit at a time
// and loaded by each rank reading its own slices of the mapped file. The
// file is the same whatever the zero level and world size that wrote it.
// Each block of the payload has its own checksum (format version 3), so a
// reader verifies the bytes it reads, once, and no others: resuming at zero 3
// on N ranks, each rank reads and verifies about 1/N of the file.
// Files of format version 2 (one checksum for the file, verified whole on
// opening) and version 1 (one torch archive) are still read; the meta names
// the LibTorch that wrote such an archive, and one that this LibTorch cannot
// read is refused with both versions and the file named.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "core/fs.h"
#include "formats/checkpoint_file.h"
#include "formats/tensor_table.h"
#include "model/transformer.h"
#include "train/optimizer_state.h"

namespace undo {

// An entry of a checkpoint's table for a tensor of this dtype and shape.
void add_tensor_entry(std::vector<TensorEntry>& entries, const std::string& name, torch::ScalarType dtype,
                      const std::vector<int64_t>& shape);

// Writes the tensors of `plan` in its order. `path` empty: a rank that takes
// part in what gathers the tensors but writes nothing (its puts are still
// checked against the plan, so ranks that disagree fail alike).
class CheckpointWriter {
 public:
  CheckpointWriter(const std::string& path, const CheckpointMeta& meta, const std::vector<TensorEntry>& plan);
  // The next tensor of the plan: same name, dtype and shape (any device).
  void put(const std::string& name, const torch::Tensor& t);
  void commit();  // throws unless every tensor of the plan was put

 private:
  std::string path_;
  TensorTable table_;
  std::unique_ptr<CheckpointFileWriter> file_;  // null on a rank that does not write
  size_t next_ = 0;
  uint64_t written_ = 0;  // data bytes so far
};

// A checkpoint file, mapped: tensors are read whole or in slices, and each
// block of the file is verified the first time it is read (a block that fails
// throws CorruptBlock naming the file and the tensor). Open a file once and
// hand the reader along: a second reader verifies the same bytes again.
class CheckpointReader {
 public:
  explicit CheckpointReader(const std::string& path);  // checks the container, meta, index and table
  ~CheckpointReader();
  const CheckpointMeta& meta() const { return meta_; }
  const std::string& path() const { return path_; }
  bool has(const std::string& name) const;
  // Whole, on the CPU, in its stored dtype.
  torch::Tensor read(const std::string& name) const;
  // Elements [start, start + dst.numel()) of the tensor flattened, into `dst`
  // (converted to its dtype and device), after checking the stored shape is
  // `shape`. Throws InputError naming the file and tensor.
  void read_into(const std::string& name, const std::vector<int64_t>& shape, int64_t start,
                 const torch::Tensor& dst) const;
  // The file's bytes verified so far, of file_bytes() (all of them, from the
  // start, for versions 1 and 2).
  uint64_t bytes_verified() const { return blocks_ ? blocks_->bytes_verified() : file_bytes_; }
  uint64_t file_bytes() const { return file_bytes_; }

 private:
  struct Legacy;  // a version-1 file's torch archive
  const TensorEntry& entry(const std::string& name) const;
  // The bytes of `e` from element `first`, `count` elements, verified.
  const uint8_t* verified(const TensorEntry& e, uint64_t first, uint64_t count) const;
  std::string path_;
  CheckpointMeta meta_;
  std::unique_ptr<MappedFile> file_;
  TensorTable table_;
  const uint8_t* data_ = nullptr;  // the first tensor's bytes
  std::unique_ptr<PayloadBlocks> blocks_;  // versions 2 and 3
  uint64_t file_bytes_ = 0;
  std::unique_ptr<Legacy> legacy_;
};

// Saves `model` (whole, or sharded through its runner: collective then, and
// every rank calls it, with `path` empty on those that do not write), the
// optimizer's state when given (collective where it is sharded) and the RNG.
void save_checkpoint(const std::string& path, const CheckpointMeta& meta, Transformer& model,
                     OptimizerState* optimizer);

// The meta, after checking the file's head (header, meta, index and tensor
// table; version 2: the whole file's checksum). Tensor bytes are not read.
CheckpointMeta read_checkpoint_meta(const std::string& path);

// Loads weights into `model` (whose config must match; sharded, each rank
// reads its part) and, when given, the optimizer state; restores the RNG.
// Throws on a foreign file, and CorruptBlock where what it reads is corrupted.
CheckpointMeta load_checkpoint(const CheckpointReader& in, Transformer& model, OptimizerState* optimizer);
CheckpointMeta load_checkpoint(const std::string& path, Transformer& model, OptimizerState* optimizer);

// The weights of a verified file into `model` (whose config must match):
// whole, or each rank's part of a sharded one (its runner's read_parameters).
void load_weights(const CheckpointReader& in, Transformer& model);

// Builds a model from a checkpoint file's own config and loads its weights.
Transformer load_model(const std::string& path, CheckpointMeta* meta = nullptr);
Transformer load_model(const CheckpointReader& in);  // a file already open and verified


// DIR/ckpt/step_XXXXXXXX.ckpt, newest first.
std::vector<std::string> step_checkpoints_newest_first(const std::string& run_dir);
// `path` opened, or null after saying on stderr why it is skipped (a resume
// goes on to an older checkpoint).
std::unique_ptr<CheckpointReader> open_checkpoint_or_skip(const std::string& path);
// The newest step checkpoint whose head verifies, opened; null if none.
std::unique_ptr<CheckpointReader> open_latest_checkpoint(const std::string& run_dir);
std::optional<std::string> latest_valid_checkpoint(const std::string& run_dir);  // its path
std::string step_checkpoint_path(const std::string& run_dir, int64_t step);
// Keeps the `keep` newest step checkpoints.
void prune_checkpoints(const std::string& run_dir, int keep);

}  // namespace undo
