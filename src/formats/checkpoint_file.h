// The checkpoint file's container, apart from what it contains: the header,
// the meta (key=value lines) and the checksum. Torch-free, so that the part of
// a checkpoint that is parsed before anything is trusted can be fuzzed alone
// (fuzz/checkpoint_fuzz.cpp); train/checkpoint.h fills the payload.
//
// Layout (little-endian), versioned like llm.c's headers:
//   char[8] "UNDOCKPT", u32 version, u32 meta_bytes, u64 payload_bytes,
//   u8[32] sha256(meta + payload), meta, payload
// Version 2's payload is a tensor table (formats/tensor_table.h), written as
// a stream and read in slices; version 1's was one torch archive, which is
// still read.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>

#include "core/fs.h"

#include "core/config.h"
#include "core/sha256.h"

namespace undo {

struct CheckpointMeta {
  ModelConfig model;
  int64_t step = 0;
  std::string stage;  // pretrain, unlearn, distill, ...
  // The LibTorch version that wrote the payload (empty when saving: this
  // build's; "" on load for files from before it was recorded).
  std::string libtorch;
  std::map<std::string, std::string> extra;
};

// The meta keys that say where a model came from outside undo (an import's
// "hf." keys: its config.json and generation_config.json, its model type): a
// stage that trains from a model carries them into the model it writes, so
// that an export of an unlearned or distilled import writes back the files it
// came in with.
void carry_origin(const CheckpointMeta& from, CheckpointMeta& to);

// The meta as stored; `libtorch` is written when meta.libtorch is empty.
std::string checkpoint_meta_text(const CheckpointMeta& meta, const std::string& libtorch);
// Parses and range-checks the meta of the file `path` (named in every error).
CheckpointMeta parse_checkpoint_meta(const std::string& text, const std::string& path);

constexpr uint32_t kCheckpointTorchArchive = 1;  // the payload is one torch archive (read only)
constexpr uint32_t kCheckpointTensorTable = 2;   // the payload is a tensor table (written now)

// Header + meta + payload, with the checksum.
std::string frame_checkpoint(const std::string& meta_text, const std::string& payload,
                             uint32_t version = kCheckpointTensorTable);

// A file's parts, after checking magic, version, sizes and checksum (views
// into the bytes given).
struct CheckpointFrame {
  uint32_t version = 0;
  std::string_view meta;
  const uint8_t* payload = nullptr;
  uint64_t payload_bytes = 0;
};
// Throws naming `path` and what is wrong.
CheckpointFrame check_checkpoint_frame(const uint8_t* file, size_t size, const std::string& path);
// The meta text and payload of a whole file's bytes, copied.
std::pair<std::string, std::string> unframe_checkpoint(const std::string& file, const std::string& path);

// Writes a checkpoint whose payload is too large to build in memory: the
// payload's size is known up front, its bytes come in pieces, and the
// checksum is filled in at commit. The meta is padded so that the payload
// starts 64-byte aligned in the file. Atomic (core/fs.h's AtomicFileWriter):
// the file appears whole at commit or not at all.
class CheckpointFileWriter {
 public:
  CheckpointFileWriter(const std::string& path, const std::string& meta_text, uint64_t payload_bytes);
  void write(const void* data, size_t n);
  void commit();  // throws unless exactly payload_bytes were written

 private:
  std::string path_;
  AtomicFileWriter out_;
  Sha256 hash_;
  uint64_t meta_bytes_ = 0, payload_bytes_ = 0, written_ = 0;
};

}  // namespace undo
