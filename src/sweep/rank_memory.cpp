#include "sweep/rank_memory.h"

#include <algorithm>
#include <iomanip>
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

std::vector<UnitParameters> unit_parameters(const ModelConfig& m, int64_t vocab) {
  const int64_t v = m.vocab_size > 0 ? m.vocab_size : vocab, d = m.d_model, f = m.d_ff;
  UNDO_CHECK(v > 0 && d > 0 && m.n_layers > 0, "rank memory: the model's vocabulary and shape must be known");
  // The units zero 3 cuts the model into, as model/transformer builds them.
  const int64_t q = int64_t(m.n_heads) * m.head_size(), kv = int64_t(m.kv_heads()) * m.head_size();
  const int64_t norms = (m.post_norms ? 4 : 2) * d, biases = m.qkv_bias ? q + 2 * kv : 0;
  std::vector<UnitParameters> units{{0, v * d}};  // the embedding is looked up: not a matrix zero 3 casts
  for (int i = 0; i < m.n_layers; ++i)
    units.push_back({d * q + 2 * d * kv + q * d + 3 * d * f, norms + biases});  // attention, MLP; norms, biases
  units.push_back({0, d});
  if (!m.tied_embeddings) units.push_back({d * v, 0});  // the head, a unit of its own
  return units;
}

RankMemory rank_memory(const ModelConfig& model, int64_t vocab, int world, int zero) {
  UNDO_CHECK(world >= 1 && (zero == 0 || zero == 1 || zero == 3), "rank memory: world ", world, ", zero ", zero);
  const auto units = unit_parameters(model, vocab);
  int64_t all = 0;
  for (auto& u : units) all += u.total();
  RankMemory r;
  if (zero == 3) {
    int64_t shard = 0, largest = 0;
    for (auto& u : units)
      shard += (u.matrices + world - 1) / world + (u.rest + world - 1) / world, largest = std::max(largest, u.total());
    r.weights = r.gradients = kFloat * shard;
    r.optimizer = 2 * kFloat * shard;
    // In backward: the unit, autograd's gradients of it, the flat buffer reduce-scattered, and the next
    // unit gathered ahead (under bf16 the matrices and their autograd gradients take half that).
    r.transient = 4 * kFloat * largest;
  } else {
    r.weights = r.gradients = kFloat * all;
    r.optimizer = 2 * kFloat * (zero == 1 ? (all + world - 1) / world : all);
  }
  return r;
}

std::string rank_memory_table(const ModelConfig& model, int64_t vocab, const std::vector<int>& worlds) {
  const auto units = unit_parameters(model, vocab);
  int64_t all = 0;
  for (auto& u : units) all += u.total();
  std::ostringstream os;
  os << "training state per rank (fp32 weights, gradients, AdamW moments; zero 3 with its gathered units; "
        "activations not included), model of "
     << all << " parameters:\n"
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
