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

}  // namespace

torch::Tensor mmd_squared(const torch::Tensor& x, const torch::Tensor& y, const std::vector<double>& bandwidths) {
  UNDO_CHECK(x.dim() == 2 && y.dim() == 2 && x.size(1) == y.size(1) && !bandwidths.empty(),
             "mmd_squared: samples [N, d] and [M, d] and at least one bandwidth");
  auto z = torch::cat({x, y}, 0);
  auto d2 = torch::cdist(z, z).pow(2);
  auto k = torch::zeros_like(d2);
  for (double w : bandwidths) k = k + torch::exp(-d2 / w);
  const int64_t n = x.size(0);
  return k.slice(0, 0, n).slice(1, 0, n).mean() + k.slice(0, n).slice(1, n).mean() -
         2 * k.slice(0, 0, n).slice(1, n).mean();
}

torch::Tensor repnoise_mmd(const torch::Tensor& x, const torch::Tensor& y) {
  double mean_d2;
  {
    torch::NoGradGuard no_grad;  // the bandwidths are a scale, not something to train
    auto z = torch::cat({x, y}, 0);
    const double m = double(z.size(0));
    mean_d2 = torch::cdist(z, z).pow(2).sum().item<double>() / (m * m - m);
  }
  mean_d2 = std::max(mean_d2, 1e-12);
  return mmd_squared(x, y, {mean_d2 / 4, mean_d2 / 2, mean_d2, mean_d2 * 2, mean_d2 * 4});
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
