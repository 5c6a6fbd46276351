// The checkpoint file's container, apart from what it contains: the header,
// the meta (key=value lines) and the checksum. Torch-free, so that the part of
// a checkpoint that is parsed before anything is trusted can be fuzzed alone
// (fuzz/checkpoint_fuzz.cpp); train/checkpoint.h fills the payload.
//
// Layout (little-endian), versioned like llm.c's headers:
//   char[8] "UNDOCKPT", u32 version, u32 meta_bytes, u64 payload_bytes,
//   u8[32] sha256(meta + payload), meta, payload
#pragma once
#include <map>
#include <string>
#include <utility>

#include "core/config.h"

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

// The meta as stored; `libtorch` is written when meta.libtorch is empty.
std::string checkpoint_meta_text(const CheckpointMeta& meta, const std::string& libtorch);
// Parses and range-checks the meta of the file `path` (named in every error).
CheckpointMeta parse_checkpoint_meta(const std::string& text, const std::string& path);

// Header + meta + payload, with the checksum.
std::string frame_checkpoint(const std::string& meta_text, const std::string& payload);
// The meta text and payload of a whole file's bytes, after checking magic,
// version, sizes and checksum; throws naming `path` and what is wrong.
std::pair<std::string, std::string> unframe_checkpoint(const std::string& file, const std::string& path);

}  // namespace undo
