// RepNoise (Rosati et al. 2024, "Representation Noising"), as undo-spec.md
// states it for this paper: MaxEnt and the retain CE, plus two terms that reach
// every block rather than only the output. The MMD pulls the forget data's
// activations after each block towards Gaussian noise, so that nothing in them
// is left for an attack to read back; the logit lens ascends the forget CE
// read out of each block, bounded by a log so that it cannot run away.
#include "core/error.h"
#include "train/fused_ce.h"
#include "train/objectives/unlearning.h"

namespace undo {

namespace {

// At most this many positions per block enter the MMD: its kernel matrix is quadratic in them.
constexpr int64_t kMaxMmdRows = 1024;

// Every k-th row of [N, d], at most kMaxMmdRows of them.
torch::Tensor strided_rows(const torch::Tensor& x) {
  const int64_t n = x.size(0), stride = (n + kMaxMmdRows - 1) / kMaxMmdRows;
  return stride > 1 ? x.slice(0, 0, n, stride) : x;
}

// MMD^2 from the pooled samples' squared distances and the kernels' widths (a tensor: on a GPU the widths
// stay on the device, so that no step waits for the host).
torch::Tensor mmd_from_distances(const torch::Tensor& d2, int64_t n, const torch::Tensor& widths) {
  auto k = torch::zeros_like(d2);
  for (int64_t i = 0; i < widths.size(0); ++i) k = k + torch::exp(-d2 / widths[i]);
  return k.slice(0, 0, n).slice(1, 0, n).mean() + k.slice(0, n).slice(1, n).mean() -
         2 * k.slice(0, 0, n).slice(1, n).mean();
}

torch::Tensor pooled_distances(const torch::Tensor& x, const torch::Tensor& y) {
  UNDO_CHECK(x.dim() == 2 && y.dim() == 2 && x.size(1) == y.size(1), "MMD: samples [N, d] and [M, d], got ",
             x.sizes(), " and ", y.sizes());
  auto z = torch::cat({x, y}, 0);
  return torch::cdist(z, z).pow(2);
}

}  // namespace

torch::Tensor mmd_squared(const torch::Tensor& x, const torch::Tensor& y, const std::vector<double>& bandwidths) {
  UNDO_CHECK(!bandwidths.empty(), "mmd_squared: at least one bandwidth");
  auto widths = torch::tensor(bandwidths, x.options().dtype(torch::kDouble)).to(x.scalar_type());
  return mmd_from_distances(pooled_distances(x, y), x.size(0), widths);
}

torch::Tensor repnoise_mmd(const torch::Tensor& x, const torch::Tensor& y) {
  auto d2 = pooled_distances(x, y);
  const double m = double(d2.size(0));
  // The widths are a scale, not something to train: the mean over distinct pairs, detached.
  auto mean_d2 = (d2.detach().sum() / (m * m - m)).clamp_min(1e-12);
  auto widths = mean_d2 * torch::tensor({0.25, 0.5, 1.0, 2.0, 4.0}, d2.options().dtype(torch::kDouble)).to(d2.scalar_type());
  return mmd_from_distances(d2, x.size(0), widths);
}

torch::Tensor RepNoiseObjective::loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) {
  auto forget = forget_windows(mb);
  auto inputs = forget.narrow(1, 0, window_), targets = forget.narrow(1, 1, window_).reshape({-1});
  std::vector<torch::Tensor> hidden;
  auto logits = model->forward(inputs, &hidden);
  auto kl = kl_uniform_to_model(logits);
  // The logit lens of every block; the last block's is the model's own output.
  torch::Tensor lens = fused_cross_entropy(logits.reshape({-1, logits.size(-1)}), targets);
  auto gen = at::detail::createCPUGenerator(splitmix64(mb.seed ^ 0x6e6f697365ULL));
  torch::Tensor mmd = torch::zeros({}, logits.options());
  for (size_t l = 0; l < hidden.size(); ++l) {
    if (l + 1 < hidden.size()) {
      auto lens_logits = model->logits_from_residual(hidden[l]);
      lens = lens + fused_cross_entropy(lens_logits.reshape({-1, lens_logits.size(-1)}), targets);
    }
    auto h = strided_rows(hidden[l].reshape({-1, hidden[l].size(-1)}).to(torch::kFloat));
    auto noise = torch::randn(h.sizes(), gen, torch::kFloat).to(h.device());
    mmd = mmd + repnoise_mmd(h, noise);
  }
  lens = lens / double(hidden.size());
  mmd = mmd / double(hidden.size());
  auto ce_retain = next_token_ce(model, retain_windows(mb));
  add_log(logs, "kl_uniform", kl);
  add_log(logs, "lens_ce", lens);
  add_log(logs, "mmd", mmd);
  add_log(logs, "retain_ce", ce_retain);
  return kl + cfg_.retain_coef * ce_retain + cfg_.repnoise_beta * mmd - cfg_.repnoise_alpha * torch::log1p(lens);
}

}  // namespace undo
