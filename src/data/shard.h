// Token shards: one binary file per stream and split, with a versioned header
// (llm.c style) and a checksum of the payload, memory-mapped for reading.
//
// Layout (little-endian): 64-byte header, then `count` tokens of `dtype_bytes`.
//   0  char[8]  magic "UNDOTOK\0"
//   8  u32      version (1)
//   12 u32      dtype_bytes (2 = uint16, 4 = uint32)
//   16 u64      count
//   24 u8[32]   sha256 of the payload
//   56 u32      vocab_size
//   60 u32      reserved (0)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace undo {

constexpr uint32_t kShardVersion = 1;

void write_shard(const std::string& path, const std::vector<uint32_t>& tokens, uint32_t vocab_size);

class Shard {
 public:
  // Maps the file and verifies header and checksum; throws naming the file.
  explicit Shard(const std::string& path);
  ~Shard();
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  uint64_t size() const { return count_; }
  uint32_t vocab_size() const { return vocab_; }
  uint32_t operator[](uint64_t i) const {
    return dtype_ == 2 ? reinterpret_cast<const uint16_t*>(data_)[i] : reinterpret_cast<const uint32_t*>(data_)[i];
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t map_len_ = 0;
  const uint8_t* data_ = nullptr;
  uint64_t count_ = 0;
  uint32_t dtype_ = 2, vocab_ = 0;
};

}  // namespace undo
