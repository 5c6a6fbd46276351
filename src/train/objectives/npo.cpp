// NPO (Zhang et al. 2024, "Negative Preference Optimization") and SimNPO (Fan
// et al. 2024, "Simplicity Prevails"). Both treat each forget window as a
// dispreferred answer: its log-likelihood is pushed down through a softplus,
// which, unlike GradDiff's -CE, flattens once the window is unlikely enough, so
// the model does not collapse. A forget window here is the whole sequence (the
// corpora have no prompt/answer split), so |y| = window.
#include "core/error.h"
#include "train/fused_ce.h"
#include "train/objectives/unlearning.h"

namespace undo {

torch::Tensor window_log_prob(Transformer& model, const torch::Tensor& windows) {
  const auto T = windows.size(1) - 1;
  auto logp = torch::log_softmax(model->forward(windows.narrow(1, 0, T)).to(torch::kFloat), -1);
  return logp.gather(-1, windows.narrow(1, 1, T).unsqueeze(-1)).squeeze(-1).sum(-1);
}

torch::Tensor npo_forget_loss(const torch::Tensor& log_p, const torch::Tensor& log_p_ref, double beta) {
  return (2.0 / beta) * torch::softplus(beta * (log_p - log_p_ref)).mean();
}

torch::Tensor simnpo_forget_loss(const torch::Tensor& log_p, int64_t length, double beta, double gamma) {
  return (2.0 / beta) * torch::softplus(beta * log_p / double(length) + gamma).mean();
}

NpoObjective::NpoObjective(std::shared_ptr<StreamMix> forget, std::shared_ptr<StreamMix> retain, int window,
                           const UnlearnConfig& cfg, Transformer reference)
    : ForgetRetainObjective(std::move(forget), std::move(retain), window), cfg_(cfg),
      reference_(std::move(reference)) {
  reference_->eval();
  for (auto& p : reference_->parameters()) p.requires_grad_(false);
}

torch::Tensor NpoObjective::loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) {
  auto forget = forget_windows(mb);
  torch::Tensor log_p_ref;
  {
    torch::NoGradGuard no_grad;
    log_p_ref = window_log_prob(reference_, forget);
  }
  auto log_p = window_log_prob(model, forget);
  auto npo = npo_forget_loss(log_p, log_p_ref, cfg_.npo_beta);
  auto ce_retain = next_token_ce(model, retain_windows(mb));
  add_log(logs, "npo", npo);
  add_log(logs, "forget_log_ratio", (log_p - log_p_ref).mean());
  add_log(logs, "retain_ce", ce_retain);
  return npo + cfg_.retain_coef * ce_retain;
}

torch::Tensor SimNpoObjective::loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) {
  auto log_p = window_log_prob(model, forget_windows(mb));
  auto simnpo = simnpo_forget_loss(log_p, window_, cfg_.simnpo_beta, cfg_.simnpo_gamma);
  auto ce_retain = next_token_ce(model, retain_windows(mb));
  add_log(logs, "simnpo", simnpo);
  add_log(logs, "forget_ce", -log_p.mean() / double(window_));
  add_log(logs, "retain_ce", ce_retain);
  return simnpo + cfg_.retain_coef * ce_retain;
}

}  // namespace undo
