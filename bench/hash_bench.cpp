// Checksum throughput: undo's SHA-256 (OpenSSL's libcrypto, core/sha256.h),
// which every checkpoint, shard and logit cache is hashed with as it is
// written and read, and HMAC-SHA256 (the rendezvous' proof), one table:
//   build/undo_hash_bench [MB]     (default 512 MB of data, best of 3)
// A line for coreutils' sha256sum on the same bytes is printed beside it, as
// a reference measured in the same run.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "core/fs.h"
#include "core/sha256.h"

namespace {

double seconds_of(const std::function<void()>& work) {
  double best = 1e30;
  for (int i = 0; i < 3; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    work();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const size_t mb = argc > 1 ? size_t(std::atol(argv[1])) : 512;
  std::vector<char> data(mb << 20);
  for (size_t i = 0; i < data.size(); ++i) data[i] = char(i * 2654435761u >> 24);
  std::string digest;
  const double sha = seconds_of([&] { digest = undo::sha256_hex(data.data(), data.size()); });
  const std::string message(64, 'm');
  const int macs = 200000;
  const double hmac = seconds_of([&] {
    for (int i = 0; i < macs; ++i) undo::hmac_sha256("the job's secret", message);
  });
  const std::string path = "/tmp/undo-hash-bench.bin";
  undo::write_file_atomic(path, std::string(data.begin(), data.end()));
  const double sum = seconds_of([&] {
    if (std::system(("sha256sum " + path + " > /dev/null").c_str()) != 0) std::fprintf(stderr, "sha256sum failed\n");
  });
  const double read = seconds_of([&] { digest = undo::sha256_file(path); });
  std::remove(path.c_str());
  std::printf("%-34s %12s\n", "what", "throughput");
  std::printf("%-34s %9.0f MB/s\n", "undo SHA-256 (OpenSSL), in memory", double(mb) / sha);
  std::printf("%-34s %9.0f MB/s\n", "undo sha256_file (OpenSSL)", double(mb) / read);
  std::printf("%-34s %9.0f MB/s\n", "coreutils sha256sum, same file", double(mb) / sum);
  std::printf("%-34s %9.0f /s\n", "undo HMAC-SHA256 of 64 bytes", macs / hmac);
  return 0;
}
