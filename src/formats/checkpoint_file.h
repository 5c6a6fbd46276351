// The checkpoint file's container, apart from what it contains: the header,
// the meta (key=value lines) and the checksum. Torch-free, so that the part of
// a checkpoint that is parsed before anything is trusted can be fuzzed alone
// (fuzz/checkpoint_fuzz.cpp); train/checkpoint.h fills the payload.
//
// Layout (little-endian), versioned like llm.c's headers:
//   char[8] "UNDOCKPT", u32 version, u32 meta_bytes, u64 payload_bytes,
//   u8[32] digest, meta, [index,] payload
// Version 3 (written now): the digest is sha256(meta + index), and the index
// holds a sha256 for each block of the payload:
//   u64 block_bytes, u64 block_count, block_count x u8[32], zeros to a
//   multiple of 64 bytes
// so that a reader verifies the blocks it reads and no others: a zero-3 rank
// reads and verifies its shards, about 1/world of the file. Blocks are a
// fixed share of the payload (checkpoint_block_bytes), so that the part of a
// block a rank reads without needing it stays small at any size.
// Versions 1 and 2 (still read) have no index; their digest is
// sha256(meta + payload), checked whole when the file is opened.
// The payload of versions 2 and 3 is a tensor table (formats/tensor_table.h),
// written as a stream and read in slices; version 1's was one torch archive.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/fs.h"

#include "core/config.h"
#include "core/error.h"
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
constexpr uint32_t kCheckpointTensorTable = 2;   // a tensor table, one checksum for the file (read only)
constexpr uint32_t kCheckpointBlockChecked = 3;  // a tensor table, a checksum per block (written now)

// The block size a version-3 payload of this many bytes is written with: a
// power of two near 1/65536 of it, from 4 KiB to 64 MiB (an index of at most
// 2 MiB; a 12 GB file's blocks are 256 KiB).
uint64_t checkpoint_block_bytes(uint64_t payload_bytes);

// Header + meta + [index +] payload, with the checksums.
std::string frame_checkpoint(const std::string& meta_text, const std::string& payload,
                             uint32_t version = kCheckpointBlockChecked);

// A file's parts, after checking magic, version, sizes and the header's
// digest (views into the bytes given). Versions 1 and 2: the payload is
// verified too. Version 3: the meta and the index are; each block of the
// payload is verified when read (PayloadBlocks).
struct CheckpointFrame {
  uint32_t version = 0;
  std::string_view meta;
  const uint8_t* payload = nullptr;
  uint64_t payload_bytes = 0;
  uint64_t file_bytes = 0;
  uint64_t block_bytes = 0, block_count = 0;  // version 3
  const uint8_t* block_digests = nullptr;     // version 3: block_count x 32 bytes
};
// Throws naming `path` and what is wrong.
CheckpointFrame check_checkpoint_frame(const uint8_t* file, size_t size, const std::string& path);
// The meta text and payload of a whole file's bytes (every block verified), copied.
std::pair<std::string, std::string> unframe_checkpoint(const std::string& file, const std::string& path);

// A block of a version-3 payload whose bytes do not match the index: the
// file is corrupted there. `first` and `end` are payload offsets.
struct CorruptBlock : InputError {
  CorruptBlock(const std::string& what, uint64_t first, uint64_t end) : InputError(what), first(first), end(end) {}
  uint64_t first, end;
};

// Which blocks of a frame's payload have been verified. verify() hashes the
// blocks that a byte range touches and that no earlier call verified, so
// that each byte a reader uses is checked once and no byte it does not use
// is read. Versions 1 and 2 were verified whole by check_checkpoint_frame.
// Thread-safe (readers of one file may run in parallel).
class PayloadBlocks {
 public:
  PayloadBlocks(const CheckpointFrame& frame, std::string path);
  // Throws CorruptBlock naming the file and the block's byte range.
  void verify(uint64_t at, uint64_t n);
  // The file's bytes checked so far: header, meta and index, and the
  // payload blocks verified (the whole file for versions 1 and 2).
  uint64_t bytes_verified() const;

 private:
  CheckpointFrame frame_;
  std::string path_;
  mutable std::mutex mutex_;
  std::vector<bool> done_;
  uint64_t verified_ = 0;
};

// The digests of a payload's blocks as its bytes come in: the index of a
// version-3 file, for the streaming writer and frame_checkpoint alike.
class BlockHasher {
 public:
  BlockHasher(uint64_t block_bytes, uint64_t payload_bytes);
  void update(const void* data, size_t n);
  uint64_t index_bytes() const;  // its size, known before any byte comes in
  // The index (block size, count, digests, padding); every byte must be in.
  std::string index();

 private:
  uint64_t block_bytes_, payload_bytes_, in_block_ = 0, seen_ = 0;
  std::optional<Sha256> block_;  // the block being hashed (a Sha256 is spent by its digest)
  std::string digests_;
};

// Writes a checkpoint whose payload is too large to build in memory: the
// payload's size is known up front, its bytes come in pieces, and the
// index and the header's digest are filled in at commit. The meta is padded so that the payload
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
  std::string meta_;
  BlockHasher blocks_;
  uint64_t payload_bytes_ = 0, written_ = 0;
};

}  // namespace undo
