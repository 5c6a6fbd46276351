// SHA-256 (FIPS 180-4), used for checkpoint/shard checksums and cache keys,
// and HMAC-SHA256 for the rendezvous' proof of the job's secret: OpenSSL's
// (libcrypto), behind the interface every caller uses.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX

namespace undo {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&& other) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::array<uint8_t, 32> digest();  // finalises; the object is spent afterwards
  std::string hex();                 // finalises and returns lowercase hex

 private:
  evp_md_ctx_st* ctx_;
};

std::string sha256_hex(const void* data, size_t n);
std::string sha256_file(const std::string& path);
std::string to_hex(const uint8_t* p, size_t n);
// HMAC-SHA256 (RFC 2104): how a rank proves it holds the job's secret.
std::array<uint8_t, 32> hmac_sha256(std::string_view key, std::string_view message);

}  // namespace undo
