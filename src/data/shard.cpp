#include "data/shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "core/error.h"
#include "core/fs.h"
#include "core/sha256.h"

namespace undo {
namespace {
constexpr char kMagic[8] = {'U', 'N', 'D', 'O', 'T', 'O', 'K', '\0'};
constexpr size_t kHeader = 64;
}  // namespace

void write_shard(const std::string& path, const std::vector<uint32_t>& tokens, uint32_t vocab_size) {
  uint32_t dtype = vocab_size <= 65536 ? 2 : 4;
  std::string payload(tokens.size() * dtype, '\0');
  for (size_t i = 0; i < tokens.size(); ++i) {
    UNDO_CHECK(tokens[i] < vocab_size, "token ", tokens[i], " outside vocab ", vocab_size);
    if (dtype == 2) {
      uint16_t t = uint16_t(tokens[i]);
      std::memcpy(&payload[i * 2], &t, 2);
    } else {
      std::memcpy(&payload[i * 4], &tokens[i], 4);
    }
  }
  std::string file(kHeader, '\0');
  std::memcpy(&file[0], kMagic, 8);
  std::memcpy(&file[8], &kShardVersion, 4);
  std::memcpy(&file[12], &dtype, 4);
  uint64_t count = tokens.size();
  std::memcpy(&file[16], &count, 8);
  Sha256 h;
  h.update(payload);
  auto d = h.digest();
  std::memcpy(&file[24], d.data(), 32);
  std::memcpy(&file[56], &vocab_size, 4);
  file += payload;
  write_file_atomic(path, file);
}

Shard::Shard(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  UNDO_INPUT_CHECK(fd >= 0, "cannot open token shard '", path, "'");
  struct stat st;
  ::fstat(fd, &st);
  map_len_ = size_t(st.st_size);
  if (map_len_ < kHeader) {
    ::close(fd);
    UNDO_FAIL("token shard '", path, "' is truncated (", map_len_, " bytes)");
  }
  map_ = ::mmap(nullptr, map_len_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  UNDO_CHECK(map_ != MAP_FAILED, "mmap of ", path, " failed");
  auto* p = static_cast<const uint8_t*>(map_);
  uint32_t version;
  std::memcpy(&version, p + 8, 4);
  std::memcpy(&dtype_, p + 12, 4);
  std::memcpy(&count_, p + 16, 8);
  std::memcpy(&vocab_, p + 56, 4);
  UNDO_CHECK(std::memcmp(p, kMagic, 8) == 0, "'", path, "' is not a token shard (bad magic)");
  UNDO_CHECK(version == kShardVersion, "token shard '", path, "' has version ", version, ", expected ",
             kShardVersion);
  UNDO_CHECK(dtype_ == 2 || dtype_ == 4, "token shard '", path, "' has bad dtype ", dtype_);
  // Divides instead of multiplying: a count near 2^64 / dtype_bytes would wrap the product
  // back to the file's real size and let every read run past the mapping.
  const uint64_t payload = map_len_ - kHeader;
  UNDO_CHECK(payload % dtype_ == 0 && count_ == payload / dtype_, "token shard '", path, "' is truncated: ",
             map_len_, " bytes for ", count_, " tokens");
  data_ = p + kHeader;
  Sha256 h;
  h.update(data_, count_ * dtype_);
  auto d = h.digest();
  UNDO_CHECK(std::memcmp(d.data(), p + 24, 32) == 0, "token shard '", path, "' fails its checksum");
}

Shard::~Shard() {
  if (map_ && map_ != MAP_FAILED) ::munmap(map_, map_len_);
}

}  // namespace undo
