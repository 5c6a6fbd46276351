#include "train/teacher_targets.h"

#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <cstring>

#include "core/error.h"
#include "model/device.h"

namespace undo {

namespace {

// q8: a log-prob as the u8 code round(-16 log p): steps of 1/16 nat down to -15.94.
constexpr double kQ8Scale = 16.0;

// The values of `t` as `type` bytes, little-endian (the hosts we build for are).
std::vector<uint8_t> to_bytes(const torch::Tensor& t, CacheValue type) {
  torch::Tensor c;
  switch (type) {
    case CacheValue::u16: {
      auto v = t.to(torch::kCPU).to(torch::kInt).contiguous();
      std::vector<uint8_t> out(size_t(v.numel()) * 2);
      const int32_t* p = v.data_ptr<int32_t>();
      for (int64_t i = 0; i < v.numel(); ++i) {
        const uint16_t x = uint16_t(p[i]);
        std::memcpy(out.data() + 2 * i, &x, 2);
      }
      return out;
    }
    case CacheValue::u32: c = t.to(torch::kCPU).to(torch::kInt); break;  // ids below 2^31
    case CacheValue::f16: c = t.to(torch::kHalf); break;
    case CacheValue::f32: c = t.to(torch::kFloat); break;
    case CacheValue::u8:  // q8 of a log-prob; -inf (a weightless draw) is the last code
      c = (t.to(torch::kFloat).nan_to_num(0.0, 0.0, 0.0) * -kQ8Scale).round_().clamp_(0, 255).to(torch::kByte);
      break;
  }
  c = c.to(torch::kCPU).contiguous();
  const auto* p = static_cast<const uint8_t*>(c.data_ptr());
  return std::vector<uint8_t>(p, p + c.numel() * c.element_size());
}

torch::Tensor from_bytes(const std::vector<uint8_t>& b, CacheValue type, std::vector<int64_t> shape) {
  auto* p = const_cast<uint8_t*>(b.data());
  const int64_t n = int64_t(b.size() / value_bytes(type));
  switch (type) {
    case CacheValue::u16: {
      std::vector<int64_t> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        uint16_t x;
        std::memcpy(&x, p + 2 * i, 2);
        v[size_t(i)] = x;
      }
      return torch::tensor(v, torch::kLong).reshape(shape);
    }
    case CacheValue::u32:
      return torch::from_blob(p, {n}, torch::kInt).to(torch::kLong).bitwise_and(int64_t(0xffffffff)).reshape(shape);
    case CacheValue::f16: return torch::from_blob(p, {n}, torch::kHalf).to(torch::kFloat).reshape(shape);
    case CacheValue::f32: return torch::from_blob(p, {n}, torch::kFloat).clone().reshape(shape);
    case CacheValue::u8: return (torch::from_blob(p, {n}, torch::kByte).to(torch::kFloat) / -kQ8Scale).reshape(shape);
  }
  return {};
}

// Draws `s` per row of `p` [N, V] (unnormalised: each row's sum is its mass),
// stratified, by inverting the row's CDF; ascending ids. The CDF is inverted
// in two levels, over blocks of kBlock tokens and then inside the block a draw
// falls in, so that no [N, V] prefix sum is ever taken (the one full pass is
// the block sums): every op runs on p's device, for every position at once.
torch::Tensor stratified_draws(const torch::Tensor& p, int s, uint64_t seed) {
  constexpr int64_t kBlock = 32;
  const int64_t N = p.size(0), V = p.size(1), blocks = (V + kBlock - 1) / kBlock;
  auto padded = V % kBlock == 0 ? p : torch::constant_pad_nd(p, {0, blocks * kBlock - V}, 0.0);
  auto pb = padded.view({N, blocks, kBlock});
  auto block_cdf = pb.sum(-1).cumsum(-1);  // [N, blocks]
  auto total = block_cdf.narrow(-1, blocks - 1, 1);
  auto gen = at::detail::createCPUGenerator(seed);
  auto u = torch::rand({N, s}, gen, torch::kFloat);
  u = ((u + torch::arange(s, torch::kFloat)) / double(s)).to(p.device());
  // Each target strictly below the mass it is drawn from, so that rounding
  // never steps onto a token without mass (a bias of at most 2^-24 of it).
  constexpr double kBelow = 1.0 - 1.0 / double(1 << 24);
  auto v = torch::minimum(u * total, total * kBelow);
  auto block = torch::searchsorted(block_cdf, v, /*out_int32=*/false, /*right=*/true).clamp_max_(blocks - 1);
  auto before = torch::where(block > 0, block_cdf.gather(-1, (block - 1).clamp_min(0)), torch::zeros_like(v));
  // The block of each draw, copied out whole (index_select of rows: a gather
  // with an expanded index is ten times slower on the CPU).
  auto rows = (torch::arange(N, block.options()).unsqueeze(-1) * blocks + block).view({-1});
  auto inner = pb.reshape({N * blocks, kBlock}).index_select(0, rows).view({N, s, kBlock}).cumsum(-1);
  auto left = torch::minimum((v - before).clamp_min(0.0), inner.narrow(-1, kBlock - 1, 1).squeeze(-1) * kBelow);
  auto at = torch::searchsorted(inner, left.unsqueeze(-1), /*out_int32=*/false, /*right=*/true).squeeze(-1);
  return (block * kBlock + at.clamp_max_(kBlock - 1)).clamp_max_(V - 1);
}

}  // namespace

TeacherTargets teacher_targets(const torch::Tensor& teacher_logits, int k, int samples, uint64_t seed,
                               TargetTimes* times) {
  auto clock = std::chrono::steady_clock::now();
  auto lap = [&](double* into) {
    if (!times) return;
    synchronize_compute_device();
    auto now = std::chrono::steady_clock::now();
    *into += std::chrono::duration<double>(now - clock).count();
    clock = now;
  };
  auto x = teacher_logits.to(torch::kFloat);
  const int64_t V = x.size(-1);
  auto lead = x.sizes().vec();
  lead.pop_back();
  auto with = [&](int64_t last) {
    auto s = lead;
    s.push_back(last);
    return s;
  };
  auto flat = x.reshape({-1, V});
  // One pass for the probabilities; everything after reads p, not the logits.
  auto p = torch::softmax(flat, -1);
  TeacherTargets t;
  if (k > 0) {
    auto top = p.topk(k, -1, /*largest=*/true, /*sorted=*/true);
    auto ids = std::get<1>(top);
    // log p from the logits' own log-sum-exp: exact where p underflows, and
    // to rounding of the log-softmax (a pass the default, pure sampling, skips).
    auto top_x = flat.gather(-1, ids);
    auto lse = flat.logsumexp(-1, /*keepdim=*/true);
    t.ids = ids.reshape(with(k));
    t.logp = (top_x - lse).reshape(with(k));
    p.scatter_(-1, ids, 0.0);                     // what is left is the leftover distribution
    t.rest_logp = p.sum(-1).log().reshape(lead);  // a sum of the small terms: no cancellation
  }
  if (times) lap(&times->probs_topk_s);
  if (samples > 0) {
    auto draws = stratified_draws(p, samples, seed);
    t.tail_ids = draws.reshape(with(samples));
    t.tail_logp = p.gather(-1, draws).log().reshape(with(samples));  // draws lie outside the top-k
  }
  if (times) lap(&times->sample_s);
  return t;
}

LogitRows cache_rows_of(const TeacherTargets& t, const torch::Tensor& tokens, const LogitCacheKey& key) {
  const auto cols = cache_columns(key);
  const auto at = column_index(key);
  LogitRows r;
  r.count = uint64_t(tokens.size(0));
  r.columns.resize(cols.size());
  auto put = [&](int i, const torch::Tensor& v) {
    if (i >= 0) r.columns[size_t(i)] = to_bytes(v, cols[size_t(i)].type);
  };
  put(at.tokens, tokens);
  put(at.topk_ids, t.ids);
  put(at.topk_logp, t.logp);
  put(at.rest_logp, t.rest_logp);
  put(at.draw_ids, t.tail_ids);
  put(at.draw_logp, t.tail_logp);
  for (size_t i = 0; i < cols.size(); ++i)
    UNDO_CHECK(r.columns[i].size() == r.count * cols[i].row_bytes(), "logit cache column ", cols[i].name, ": ",
               r.columns[i].size(), " bytes for ", r.count, " rows of ", cols[i].row_bytes());
  return r;
}

TeacherTargets targets_of(const LogitRows& r, const LogitCacheKey& key, torch::Tensor* tokens) {
  const int64_t n = int64_t(r.count), T = key.window, K = key.k, S = key.samples;
  const auto cols = cache_columns(key);
  const auto at = column_index(key);
  auto get = [&](int i, std::vector<int64_t> shape) {
    return from_bytes(r.columns[size_t(i)], cols[size_t(i)].type, std::move(shape));
  };
  TeacherTargets t;
  // Rows arrive on the CPU; the loss runs where the student is.
  if (K > 0) {
    t.ids = to_compute_device(get(at.topk_ids, {n, T, K}));
    t.logp = to_compute_device(get(at.topk_logp, {n, T, K}));
    t.rest_logp = to_compute_device(get(at.rest_logp, {n, T}));
  }
  if (S > 0) {
    t.tail_ids = to_compute_device(get(at.draw_ids, {n, T, S}));
    t.tail_logp = to_compute_device(get(at.draw_logp, {n, T, S}));
  }
  if (tokens) *tokens = get(at.tokens, {n, T});
  return t;
}

}  // namespace undo
