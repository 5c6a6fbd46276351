#include "train/adamw.h"

#include "train/checkpoint.h"

#include "model/profile_scope.h"

#include <cmath>

#include "core/error.h"
#include "distributed/communicator.h"

namespace undo {

AdamW::AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, const OptimConfig& cfg,
             std::shared_ptr<Communicator> comm, bool zero)
    : params_(std::move(params)), cfg_(cfg), comm_(std::move(comm)), zero_(zero && comm_ != nullptr) {
  int world = comm_ ? comm_->world() : 1;
  // Owners balance the number of elements: largest first onto the lightest rank.
  std::vector<size_t> order(params_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return params_[a].second.numel() > params_[b].second.numel(); });
  std::vector<int64_t> load(size_t(world), 0);
  owner_.assign(params_.size(), 0);
  for (size_t i : order) {
    int r = int(std::min_element(load.begin(), load.end()) - load.begin());
    owner_[i] = zero_ ? r : (comm_ ? comm_->rank() : 0);
    load[size_t(r)] += params_[i].second.numel();
  }
  int me = comm_ ? comm_->rank() : 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    bool mine = owner_[i] == me;
    exp_avg_.push_back(mine ? torch::zeros_like(params_[i].second) : torch::Tensor());
    exp_avg_sq_.push_back(mine ? torch::zeros_like(params_[i].second) : torch::Tensor());
    step_count_.push_back(mine ? torch::zeros({}, params_[i].second.options().dtype(torch::kFloat)) : torch::Tensor());
  }
}

void AdamW::zero_grad() {
  for (auto& [name, p] : params_)
    if (p.grad().defined()) p.mutable_grad().zero_();
}

int64_t AdamW::steps() const { return skipped_.defined() ? step_ - int64_t(skipped_.item<float>()) : step_; }

void AdamW::step(double lr, const torch::Tensor& skip) {
  UNDO_PROFILE_SCOPE("undo::optimizer");
  torch::NoGradGuard no_grad;
  ++step_;
  if (skip.defined()) skipped_ = skipped_.defined() ? skipped_ + skip : skip.clone();
  if (cfg_.fused) {
    std::vector<torch::Tensor> p, g, m, v, steps;
    for (size_t i = 0; i < params_.size(); ++i) {
      if (!exp_avg_[i].defined() || !params_[i].second.grad().defined()) continue;
      p.push_back(params_[i].second), g.push_back(params_[i].second.grad());
      m.push_back(exp_avg_[i]), v.push_back(exp_avg_sq_[i]), steps.push_back(step_count_[i]);
    }
    if (!p.empty()) {
      // The kernel reads the step count it is given, and returns at once when
      // found_inf is 1 (as torch.optim.AdamW's fused path under a GradScaler).
      if (skip.defined())
        torch::_foreach_add_(steps, 1 - skip);
      else
        torch::_foreach_add_(steps, 1);
      at::_fused_adamw_(p, g, m, v, /*max_exp_avg_sqs=*/{}, steps, lr, cfg_.beta1, cfg_.beta2, cfg_.weight_decay,
                        cfg_.eps, /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/std::nullopt,
                        skip.defined() ? std::optional<torch::Tensor>(skip) : std::nullopt);
    }
  } else if (!skip.defined() || skip.item<float>() == 0) {
    per_tensor_step(lr, steps());
  }
  if (zero_) {
    // Every parameter's new value comes from its owner.
    for (size_t i = 0; i < params_.size(); ++i) comm_->broadcast({params_[i].second}, owner_[i]);
  }
}

void AdamW::per_tensor_step(double lr, int64_t step) {
  const double bc1 = 1 - std::pow(cfg_.beta1, double(step));
  const double bc2 = 1 - std::pow(cfg_.beta2, double(step));
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i].second;
    if (!exp_avg_[i].defined() || !p.grad().defined()) continue;
    auto& g = p.grad();
    p.mul_(1 - lr * cfg_.weight_decay);
    exp_avg_[i].mul_(cfg_.beta1).add_(g, 1 - cfg_.beta1);
    exp_avg_sq_[i].mul_(cfg_.beta2).addcmul_(g, g, 1 - cfg_.beta2);
    auto denom = (exp_avg_sq_[i].sqrt() / std::sqrt(bc2)).add_(cfg_.eps);
    p.addcdiv_(exp_avg_[i], denom, -lr / bc1);
  }
}

void AdamW::plan(std::vector<TensorEntry>& entries) const {
  add_tensor_entry(entries, "optimizer.step", torch::kLong, {});
  for (const char* moment : {"optimizer.exp_avg.", "optimizer.exp_avg_sq."})
    for (auto& [name, p] : params_) add_tensor_entry(entries, moment + name, p.scalar_type(), p.sizes().vec());
}

void AdamW::save(CheckpointWriter& out) {
  out.put("optimizer.step", torch::tensor(steps()));
  for (auto [moments, prefix] : {std::make_pair(&exp_avg_, "optimizer.exp_avg."),
                                 std::make_pair(&exp_avg_sq_, "optimizer.exp_avg_sq.")})
    for (size_t i = 0; i < params_.size(); ++i) {
      torch::Tensor m = (*moments)[i];
      if (zero_) {  // one tensor at a time from its owner: never the whole state at once
        if (!m.defined()) m = torch::empty_like(params_[i].second);
        comm_->broadcast({m}, owner_[i]);
      }
      out.put(prefix + params_[i].first, m);
    }
}

void AdamW::load(const CheckpointReader& in) {
  torch::NoGradGuard no_grad;
  step_ = in.read("optimizer.step").item<int64_t>();
  skipped_ = torch::Tensor();
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!exp_avg_[i].defined()) continue;  // another rank owns it
    const auto& [name, p] = params_[i];
    in.read_into("optimizer.exp_avg." + name, p.sizes().vec(), 0, exp_avg_[i].view({-1}));
    in.read_into("optimizer.exp_avg_sq." + name, p.sizes().vec(), 0, exp_avg_sq_[i].view({-1}));
    step_count_[i].fill_(double(step_));
  }
}

void AdamW::set_state(int64_t step, const std::vector<torch::Tensor>& exp_avg,
                      const std::vector<torch::Tensor>& exp_avg_sq) {
  UNDO_CHECK(exp_avg.size() == params_.size() && exp_avg_sq.size() == params_.size(), "AdamW state for ",
             exp_avg.size(), " parameters, expected ", params_.size());
  torch::NoGradGuard no_grad;
  step_ = step;
  skipped_ = torch::Tensor();
  for (size_t i = 0; i < params_.size(); ++i)
    if (exp_avg_[i].defined())
      exp_avg_[i].copy_(exp_avg[i]), exp_avg_sq_[i].copy_(exp_avg_sq[i]), step_count_[i].fill_(double(step));
}

}  // namespace undo
