// SHA-256 (FIPS 180-4), used for checkpoint/shard checksums and cache keys,
// and HMAC-SHA256 for the rendezvous' proof of the job's secret.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace undo {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::array<uint8_t, 32> digest();  // finalises; the object is spent afterwards
  std::string hex();                 // finalises and returns lowercase hex

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(const void* data, size_t n);
std::string sha256_file(const std::string& path);
std::string to_hex(const uint8_t* p, size_t n);
// HMAC-SHA256 (RFC 2104): how a rank proves it holds the job's secret.
std::array<uint8_t, 32> hmac_sha256(std::string_view key, std::string_view message);

}  // namespace undo
