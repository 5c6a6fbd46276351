#include "data/stream.h"

#include "core/error.h"
#include "core/fs.h"

namespace undo {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

StreamMix::StreamMix(const std::string& dir, const std::vector<std::pair<std::string, double>>& mix,
                     const std::string& split, int window)
    : window_(window) {
  double total = 0;
  for (auto& [stream, weight] : mix) {
    auto path = join_path(dir, stream + "." + split + ".bin");
    UNDO_INPUT_CHECK(file_exists(path), "stream '", stream, "' has no ", split, " shard: '", path,
                     "' is missing (run `undo data prepare` or fix the mix)");
    shards_.push_back(std::make_unique<Shard>(path));
    UNDO_INPUT_CHECK(shards_.back()->size() > uint64_t(window) + 1, "shard '", path, "' has only ",
                     shards_.back()->size(), " tokens, fewer than a window of ", window + 1);
    names_.push_back(stream);
    total += weight;
    cumulative_.push_back(total);
  }
  for (auto& c : cumulative_) c /= total;
}

int StreamMix::sample(uint64_t seed, uint64_t step, uint64_t index, int64_t* out) const {
  uint64_t h = splitmix64(splitmix64(splitmix64(seed) ^ step) ^ index);
  double u = double(h >> 11) * 0x1.0p-53;
  int s = 0;
  while (s + 1 < int(cumulative_.size()) && u >= cumulative_[s]) ++s;
  const Shard& shard = *shards_[s];
  uint64_t start = splitmix64(h) % (shard.size() - uint64_t(window_));
  for (int i = 0; i <= window_; ++i) out[i] = shard[start + uint64_t(i)];
  return s;
}

std::vector<int64_t> StreamMix::batch(uint64_t seed, uint64_t step, int begin, int end) const {
  std::vector<int64_t> out(size_t(end - begin) * size_t(window_ + 1));
  for (int i = begin; i < end; ++i) sample(seed, step, uint64_t(i), &out[size_t(i - begin) * (window_ + 1)]);
  return out;
}

std::pair<int, int> rank_slice(int global, int rank, int world) {
  UNDO_INPUT_CHECK(global % world == 0, "global batch ", global, " is not divisible by world size ", world);
  int per = global / world;
  return {rank * per, (rank + 1) * per};
}

}  // namespace undo
