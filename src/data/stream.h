// Named token streams and weighted mixes of them. Windows are drawn by a pure
// function of (seed, step, sequence index): the data position of a run is its
// step, resume is exact, and a rank's slice of a global batch is the same
// sequences whatever the world size.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/shard.h"

namespace undo {

uint64_t splitmix64(uint64_t x);

class StreamMix {
 public:
  // Opens DIR/<stream>.<split>.bin for each stream of `mix` (weights normalised).
  StreamMix(const std::string& dir, const std::vector<std::pair<std::string, double>>& mix,
            const std::string& split, int window);

  // Window `index` of global step `step`: window+1 tokens (inputs and shifted targets).
  // Returns the stream it came from.
  int sample(uint64_t seed, uint64_t step, uint64_t index, int64_t* out) const;
  // Fills the rows [begin, end) of a global batch of `global` sequences.
  std::vector<int64_t> batch(uint64_t seed, uint64_t step, int begin, int end) const;
  // Sequence `n` of a flat stream (distillation numbers its windows, so that
  // a cache of teacher outputs is indexed by them): independent of batching.
  int sequence(uint64_t seed, uint64_t n, int64_t* out) const { return sample(seed, kFlatStep, n, out); }
  const std::string& name(int stream) const { return names_[stream]; }
  int window() const { return window_; }
  static constexpr uint64_t kFlatStep = ~uint64_t(0);

 private:
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<std::string> names_;
  std::vector<double> cumulative_;
  int window_;
};

// Row range [begin, end) of rank `rank` out of `world` for a global batch.
std::pair<int, int> rank_slice(int global, int rank, int world);

}  // namespace undo
