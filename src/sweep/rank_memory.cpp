#include "sweep/rank_memory.h"

#include <algorithm>
#include <iomanip>
#include <numeric>
#include <sstream>

#include "core/error.h"

namespace undo {

namespace {
constexpr int64_t kFloat = 4;  // bytes of an fp32 value

std::string gib(int64_t bytes) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(bytes < (int64_t(1) << 30) ? 3 : 1) << double(bytes) / double(1 << 30)
     << " GiB";
  return os.str();
}
}  // namespace

std::vector<int64_t> unit_parameter_counts(const ModelConfig& m, int64_t vocab) {
  const int64_t v = m.vocab_size > 0 ? m.vocab_size : vocab, d = m.d_model, f = m.d_ff;
  UNDO_CHECK(v > 0 && d > 0 && m.n_layers > 0, "rank memory: the model's vocabulary and shape must be known");
  // The units zero 3 cuts the model into, as model/transformer builds them.
  const int64_t q = int64_t(m.n_heads) * m.head_size(), kv = int64_t(m.kv_heads()) * m.head_size();
  const int64_t norms = (m.post_norms ? 4 : 2) * d, biases = m.qkv_bias ? q + 2 * kv : 0;
  std::vector<int64_t> units{v * d};
  for (int i = 0; i < m.n_layers; ++i)
    units.push_back(norms + d * q + 2 * d * kv + biases + q * d + 3 * d * f);  // norms, attention, MLP
  units.push_back(d);
  if (!m.tied_embeddings) units.push_back(d * v);  // the head, a unit of its own
  return units;
}

RankMemory rank_memory(const ModelConfig& model, int64_t vocab, int world, int zero) {
  UNDO_CHECK(world >= 1 && (zero == 0 || zero == 1 || zero == 3), "rank memory: world ", world, ", zero ", zero);
  const auto units = unit_parameter_counts(model, vocab);
  const int64_t all = std::accumulate(units.begin(), units.end(), int64_t(0));
  RankMemory r;
  if (zero == 3) {
    int64_t shard = 0, largest = 0;
    for (int64_t u : units) shard += (u + world - 1) / world, largest = std::max(largest, u);
    r.weights = r.gradients = kFloat * shard;
    r.optimizer = 2 * kFloat * shard;
    // In backward: the unit, autograd's gradients of it, the flat buffer reduce-scattered, and the next
    // unit gathered ahead. Under bf16 the unit's matrices have a bf16 copy, but autograd's gradients
    // of them are bf16 too: the same 16 bytes a parameter.
    r.transient = 4 * kFloat * largest;
  } else {
    r.weights = r.gradients = kFloat * all;
    r.optimizer = 2 * kFloat * (zero == 1 ? (all + world - 1) / world : all);
  }
  return r;
}

std::string rank_memory_table(const ModelConfig& model, int64_t vocab, const std::vector<int>& worlds) {
  const auto units = unit_parameter_counts(model, vocab);
  std::ostringstream os;
  os << "training state per rank (fp32 weights, gradients, AdamW moments; zero 3 with its gathered units; "
        "activations not included), model of "
     << std::accumulate(units.begin(), units.end(), int64_t(0)) << " parameters:\n"
     << std::left << std::setw(8) << "ranks" << std::right << std::setw(14) << "zero 0" << std::setw(14) << "zero 1"
     << std::setw(14) << "zero 3" << "\n";
  for (int w : worlds) {
    os << std::left << std::setw(8) << w << std::right;
    for (int zero : {0, 1, 3}) os << std::setw(14) << gib(rank_memory(model, vocab, w, zero).total());
    os << "\n";
  }
  return os.str();
}

}  // namespace undo
