// The unlearning objectives of undo-spec.md, each a loss to minimise:
//   GradDiff: -CE(forget) + a CE(retain)
//   MaxEnt:   KL(Uniform || p) on forget tokens + a CE(retain)
//   RMU:      MSE(h_l(x_f), c u) + alpha MSE(h_l(x_r), h_l_frozen(x_r)), training only the
//             MLP down-projections of the chosen blocks
//   SAM:      any of them, with the gradient taken at weights moved by rho g/|g|
#pragma once
#include <memory>

#include "core/config.h"
#include "train/objective.h"

namespace undo {

// Forget windows use the micro-batch's seed, retain windows a derived one.
uint64_t retain_seed(uint64_t seed);

class GradDiffObjective : public Objective {
 public:
  GradDiffObjective(std::shared_ptr<StreamMix> forget, std::shared_ptr<StreamMix> retain, int window,
                    double retain_coef);
  torch::Tensor loss(Transformer& model, const MicroBatch& mb, std::map<std::string, double>* logs) override;
  int64_t tokens_per_row() const override { return 2 * window_; }

 private:
  std::shared_ptr<StreamMix> forget_, retain_;
  int window_;
  double a_;
};

// KL(U || p) per position = -log V - mean_v log p_v, averaged over positions.
torch::Tensor kl_uniform_to_model(const torch::Tensor& logits);

class MaxEntObjective : public Objective {
 public:
  MaxEntObjective(std::shared_ptr<StreamMix> forget, std::shared_ptr<StreamMix> retain, int window,
                  double retain_coef);
  torch::Tensor loss(Transformer& model, const MicroBatch& mb, std::map<std::string, double>* logs) override;
  int64_t tokens_per_row() const override { return 2 * window_; }

 private:
  std::shared_ptr<StreamMix> forget_, retain_;
  int window_;
  double a_;
};

class RmuObjective : public Objective {
 public:
  // `frozen` is a copy of the model before unlearning (the retain target).
  RmuObjective(std::shared_ptr<StreamMix> forget, std::shared_ptr<StreamMix> retain, int window,
               const UnlearnConfig& cfg, Transformer frozen, uint64_t seed);
  torch::Tensor loss(Transformer& model, const MicroBatch& mb, std::map<std::string, double>* logs) override;
  std::vector<std::pair<std::string, torch::Tensor>> trainable(Transformer& model) override;
  int64_t tokens_per_row() const override { return 2 * window_; }
  int layer() const { return layer_; }
  const torch::Tensor& control() const { return u_; }  // the fixed random unit vector u

 private:
  std::shared_ptr<StreamMix> forget_, retain_;
  int window_;
  UnlearnConfig cfg_;
  Transformer frozen_;
  int layer_;
  std::vector<int> train_layers_;
  torch::Tensor u_;
};

class SamObjective : public Objective {
 public:
  SamObjective(std::unique_ptr<Objective> inner, double rho) : inner_(std::move(inner)), rho_(rho) {}
  torch::Tensor loss(Transformer& model, const MicroBatch& mb, std::map<std::string, double>* logs) override;
  void after_backward(Transformer& model) override;
  std::vector<std::pair<std::string, torch::Tensor>> trainable(Transformer& model) override {
    return inner_->trainable(model);
  }
  int64_t tokens_per_row() const override { return inner_->tokens_per_row(); }

 private:
  std::unique_ptr<Objective> inner_;
  double rho_;
  std::vector<torch::Tensor> params_, offsets_;
};

// Builds the configured method (wrapped in SAM when unlearn.sam_rho > 0).
std::unique_ptr<Objective> make_unlearning_objective(const Config& cfg, Transformer& model);

}  // namespace undo
