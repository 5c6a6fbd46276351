#include "core/sha256.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/error.h"
#include "core/fs.h"

namespace undo {

// OpenSSL's implementations (SHA-NI or AVX2 where the CPU has them): several
// times faster than the hand-written one they replaced, on every checkpoint,
// shard and cache checksum.
Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  UNDO_CHECK(ctx_ && EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) == 1, "OpenSSL: cannot start a SHA-256");
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

Sha256::Sha256(Sha256&& other) noexcept : ctx_(other.ctx_) { other.ctx_ = nullptr; }

void Sha256::update(const void* data, size_t n) {
  UNDO_CHECK(ctx_ && EVP_DigestUpdate(ctx_, data, n) == 1, "OpenSSL: SHA-256 update failed");
}

std::array<uint8_t, 32> Sha256::digest() {
  std::array<uint8_t, 32> d{};
  unsigned int length = 0;
  UNDO_CHECK(ctx_ && EVP_DigestFinal_ex(ctx_, d.data(), &length) == 1 && length == d.size(),
             "OpenSSL: SHA-256 final failed");
  return d;
}

std::string to_hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (size_t i = 0; i < n; ++i) { s[2 * i] = d[p[i] >> 4]; s[2 * i + 1] = d[p[i] & 15]; }
  return s;
}

std::string Sha256::hex() { auto d = digest(); return to_hex(d.data(), d.size()); }

std::string sha256_hex(const void* data, size_t n) { Sha256 h; h.update(data, n); return h.hex(); }

std::string sha256_file(const std::string& path) {
  const int fd = open_regular_file(path);  // a FIFO would never end
  Sha256 h;
  std::vector<char> buf(1 << 20);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      UNDO_CHECK(n == 0, "reading '", path, "' failed: ", std::strerror(err));
      return h.hex();
    }
    h.update(buf.data(), size_t(n));
  }
}

}  // namespace undo

namespace undo {

std::array<uint8_t, 32> hmac_sha256(std::string_view key, std::string_view message) {
  std::array<uint8_t, 32> mac{};
  unsigned int length = 0;
  UNDO_CHECK(HMAC(EVP_sha256(), key.data(), int(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
                  message.size(), mac.data(), &length) && length == mac.size(),
             "OpenSSL: HMAC-SHA256 failed");
  return mac;
}

}  // namespace undo
