// The unlearning objectives of undo-spec.md, each a loss to minimise:
//   GradDiff: -CE(forget) + a CE(retain)
//   MaxEnt:   KL(Uniform || p) on forget tokens + a CE(retain)
//   RMU:      MSE(h_l(x_f), c u) + alpha MSE(h_l(x_r), h_l_frozen(x_r)), training only the
//             MLP down-projections of the chosen blocks
//   NPO:      (2/beta) mean softplus(beta (log p(y) - log p_ref(y))) + a CE(retain), y a forget window
//   SimNPO:   (2/beta) mean softplus(beta log p(y) / |y| + gamma) + a CE(retain)
//   RepNoise: MaxEnt + a CE(retain) + beta MMD(forget activations, N(0, I))
//             - alpha log(1 + mean over blocks of the logit-lens CE on forget)
//   SAM:      any of them, with the gradient taken at weights moved by rho g/|g|
// core/unlearning_methods.h lists them; docs/METHODS.md gives each one's defaults and source.
#pragma once
#include <memory>

#include "core/config.h"
#include "train/objective.h"

namespace undo {

class Parallelism;  // train/parallelism.h

// Forget windows use the micro-batch's seed, retain windows a derived one.
uint64_t retain_seed(uint64_t seed);

// What every unlearning method draws: a forget and a retain window per row.
class ForgetRetainObjective : public Objective {
 public:
  ForgetRetainObjective(std::shared_ptr<StreamMix> forget, std::shared_ptr<StreamMix> retain, int window)
      : forget_(std::move(forget)), retain_(std::move(retain)), window_(window) {}
  int64_t tokens_per_row() const override { return 2 * window_; }

 protected:
  // [rows, window + 1] token windows (inputs and shifted targets).
  torch::Tensor forget_windows(const MicroBatch& mb) const { return window_tensor(*forget_, mb, window_); }
  torch::Tensor retain_windows(const MicroBatch& mb) const {
    MicroBatch rb = mb;
    rb.seed = retain_seed(mb.seed);
    return window_tensor(*retain_, rb, window_);
  }
  std::shared_ptr<StreamMix> forget_, retain_;
  int window_;
};

class GradDiffObjective : public ForgetRetainObjective {
 public:
  GradDiffObjective(std::shared_ptr<StreamMix> forget, std::shared_ptr<StreamMix> retain, int window,
                    double retain_coef)
      : ForgetRetainObjective(std::move(forget), std::move(retain), window), a_(retain_coef) {}
  torch::Tensor loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) override;

 private:
  double a_;
};

// KL(U || p) per position = -log V - mean_v log p_v, averaged over positions.
torch::Tensor kl_uniform_to_model(const torch::Tensor& logits);

class MaxEntObjective : public ForgetRetainObjective {
 public:
  MaxEntObjective(std::shared_ptr<StreamMix> forget, std::shared_ptr<StreamMix> retain, int window,
                  double retain_coef)
      : ForgetRetainObjective(std::move(forget), std::move(retain), window), a_(retain_coef) {}
  torch::Tensor loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) override;

 private:
  double a_;
};

class RmuObjective : public ForgetRetainObjective {
 public:
  // `frozen` is a copy of the model before unlearning (the retain target).
  RmuObjective(std::shared_ptr<StreamMix> forget, std::shared_ptr<StreamMix> retain, int window,
               const UnlearnConfig& cfg, Transformer frozen, uint64_t seed);
  torch::Tensor loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) override;
  std::vector<std::pair<std::string, torch::Tensor>> trainable(Transformer& model) override;
  int layer() const { return layer_; }
  const torch::Tensor& control() const { return u_; }  // the fixed random unit vector u

 private:
  UnlearnConfig cfg_;
  Transformer frozen_;
  int layer_;
  std::vector<int> train_layers_;
  torch::Tensor u_;
};

// log p(y) of each window: the sum of its next-token log-probabilities. windows [B, T+1] -> [B].
torch::Tensor window_log_prob(Transformer& model, const torch::Tensor& windows);
// NPO's forget term from sequence log-probabilities under the model and the reference: [B] -> scalar.
torch::Tensor npo_forget_loss(const torch::Tensor& log_p, const torch::Tensor& log_p_ref, double beta);
// SimNPO's forget term from sequence log-probabilities of sequences of `length` tokens.
torch::Tensor simnpo_forget_loss(const torch::Tensor& log_p, int64_t length, double beta, double gamma);

// NPO against a frozen copy of the model before unlearning (its reference).
class NpoObjective : public ForgetRetainObjective {
 public:
  NpoObjective(std::shared_ptr<StreamMix> forget, std::shared_ptr<StreamMix> retain, int window,
               const UnlearnConfig& cfg, Transformer reference);
  torch::Tensor loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) override;

 private:
  UnlearnConfig cfg_;
  Transformer reference_;
};

// SimNPO: NPO without the reference, the reward normalised by length and shifted by gamma.
class SimNpoObjective : public ForgetRetainObjective {
 public:
  SimNpoObjective(std::shared_ptr<StreamMix> forget, std::shared_ptr<StreamMix> retain, int window,
                  const UnlearnConfig& cfg)
      : ForgetRetainObjective(std::move(forget), std::move(retain), window), cfg_(cfg) {}
  torch::Tensor loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) override;

 private:
  UnlearnConfig cfg_;
};

// The squared maximum mean discrepancy between samples x [N, d] and y [M, d]
// under a sum of Gaussian kernels exp(-|a - b|^2 / w), one per bandwidth w.
torch::Tensor mmd_squared(const torch::Tensor& x, const torch::Tensor& y, const std::vector<double>& bandwidths);
// RepNoise's MMD: five bandwidths, 1/4x to 4x the mean squared distance of the pooled samples (as its paper's code).
torch::Tensor repnoise_mmd(const torch::Tensor& x, const torch::Tensor& y);

// The Gaussian draws come from each micro-batch's seed. The MMD is a statistic of the micro-batch as a
// whole (not a mean over rows), so RepNoise, alone of the methods, depends on how a batch is split into
// micro-batches and ranks.
class RepNoiseObjective : public ForgetRetainObjective {
 public:
  RepNoiseObjective(std::shared_ptr<StreamMix> forget, std::shared_ptr<StreamMix> retain, int window,
                    const UnlearnConfig& cfg)
      : ForgetRetainObjective(std::move(forget), std::move(retain), window), cfg_(cfg) {}
  torch::Tensor loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) override;

 private:
  UnlearnConfig cfg_;
};

class SamObjective : public Objective {
 public:
  SamObjective(std::unique_ptr<Objective> inner, double rho) : inner_(std::move(inner)), rho_(rho) {}
  torch::Tensor loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) override;
  void after_backward(Transformer& model) override;
  std::vector<std::pair<std::string, torch::Tensor>> trainable(Transformer& model) override {
    return inner_->trainable(model);
  }
  int64_t tokens_per_row() const override { return inner_->tokens_per_row(); }
  void bind(ParallelTraining& training) override {
    training_ = &training;
    inner_->bind(training);
  }

 private:
  std::unique_ptr<Objective> inner_;
  double rho_;
  std::vector<torch::Tensor> params_, offsets_;
  ParallelTraining* training_ = nullptr;  // the run's: SAM moves what its optimizer steps (shards under dist.zero = 3)
};

// Builds the configured method (wrapped in SAM when unlearn.sam_rho > 0);
// `parallel`, the run's layout, lays out the frozen copy that RMU and NPO keep.
std::unique_ptr<Objective> make_unlearning_objective(const Config& cfg, Transformer& model, Parallelism& parallel);

}  // namespace undo
