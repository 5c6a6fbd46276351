#include "core/error.h"
#include "train/objectives/unlearning.h"

namespace undo {

RmuObjective::RmuObjective(std::shared_ptr<StreamMix> forget, std::shared_ptr<StreamMix> retain, int window,
                           const UnlearnConfig& cfg, Transformer frozen, uint64_t seed)
    : ForgetRetainObjective(std::move(forget), std::move(retain), window), cfg_(cfg), frozen_(std::move(frozen)) {
  int n = frozen_->cfg.n_layers;
  layer_ = cfg.rmu_layer < 0 ? n / 2 : cfg.rmu_layer;
  UNDO_INPUT_CHECK(layer_ < n, "unlearn.rmu_layer = ", cfg.rmu_layer, " but the model has ", n, " blocks");
  if (cfg.rmu_layers.empty()) {
    for (int i = 0; i <= layer_; ++i) train_layers_.push_back(i);
  } else {
    for (auto& s : split_list(cfg.rmu_layers)) {
      int l = int(parse_integer("unlearn.rmu_layers", s, 0, layer_));
      UNDO_INPUT_CHECK(l >= 0 && l <= layer_, "unlearn.rmu_layers = '", cfg.rmu_layers, "': block ", l,
                       " is not in 0..rmu_layer (", layer_, ")");
      train_layers_.push_back(l);
    }
  }
  auto gen = at::detail::createCPUGenerator(seed);
  u_ = torch::rand({frozen_->cfg.d_model}, gen);  // the RMU paper's u: uniform [0,1), normalised
  u_ /= u_.norm();
  u_ = u_.to(frozen_->parameters()[0].device());
  frozen_->eval();
  for (auto& p : frozen_->parameters()) p.requires_grad_(false);
}

std::vector<std::pair<std::string, torch::Tensor>> RmuObjective::trainable(Transformer& model) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  auto named = model->named_parameters();
  for (int l : train_layers_) {
    std::string name = "layers." + std::to_string(l) + ".mlp.down.weight";
    out.emplace_back(name, named[name]);
  }
  return out;
}

torch::Tensor RmuObjective::loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) {
  auto forget = forget_windows(mb).narrow(1, 0, window_);
  auto h_forget = model->hidden_after(forget, layer_).to(torch::kFloat);
  auto target = (cfg_.rmu_c * u_).expand_as(h_forget);
  auto steer = torch::mse_loss(h_forget, target);
  torch::Tensor total = steer;
  add_log(logs, "rmu_forget_mse", steer);
  if (cfg_.rmu_retain_term) {
    auto retain = retain_windows(mb).narrow(1, 0, window_);
    torch::Tensor h_frozen;
    {
      torch::NoGradGuard no_grad;
      h_frozen = frozen_->hidden_after(retain, layer_).to(torch::kFloat);
    }
    auto keep = torch::mse_loss(model->hidden_after(retain, layer_).to(torch::kFloat), h_frozen);
    add_log(logs, "rmu_retain_mse", keep);
    total = total + cfg_.rmu_alpha * keep;
  }
  return total;
}

}  // namespace undo
