// A token shard from disk: opened, its size and its tokens read.
#include <exception>

#include "data/shard.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    undo::Shard shard(undo::fuzz::scratch_file(undo::fuzz::text(data, size), ".bin"));
    uint64_t sum = 0;
    for (uint64_t i = 0; i < shard.size(); ++i) sum += shard[i];
    if (shard.size() > 0 && sum == ~0ull) __builtin_trap();  // keeps the reads
  } catch (const std::exception&) {
  }
  return 0;
}
