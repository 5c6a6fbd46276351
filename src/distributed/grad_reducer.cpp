#include "distributed/grad_reducer.h"

namespace undo {

GradReducer::GradReducer(std::vector<torch::Tensor> params, std::shared_ptr<Communicator> comm, double bucket_mb)
    : params_(std::move(params)), comm_(std::move(comm)) {
  const int64_t cap = std::max<int64_t>(1, int64_t(bucket_mb * (1 << 20) / 4));
  bucket_of_.resize(params_.size());
  slot_of_.resize(params_.size());
  seen_.assign(params_.size(), false);
  // Backward produces gradients roughly in reverse order of the forward pass.
  int64_t filled = cap;
  for (size_t k = params_.size(); k-- > 0;) {
    int64_t n = params_[k].numel();
    if (filled + n > cap && !(buckets_.size() && buckets_.back().members.empty())) {
      buckets_.emplace_back();
      filled = 0;
    }
    auto& b = buckets_.back();
    bucket_of_[k] = buckets_.size() - 1;
    slot_of_[k] = b.members.size();
    b.members.push_back(k);
    b.offsets.push_back(filled);
    filled += n;
  }
  for (auto& b : buckets_) {
    int64_t total = 0;
    for (size_t k : b.members) total += params_[k].numel();
    b.flat = torch::zeros({total}, params_[b.members[0]].options().dtype(torch::kFloat));
  }
  for (size_t k = 0; k < params_.size(); ++k)
    hook_ids_.push_back(params_[k].register_hook([this, k](torch::Tensor grad) { on_grad(k, grad); }));
}

GradReducer::~GradReducer() {
  for (size_t k = 0; k < params_.size(); ++k) params_[k].remove_hook(hook_ids_[k]);
}

void GradReducer::arm(bool reduce) {
  armed_ = reduce;
  if (!reduce) return;
  std::fill(seen_.begin(), seen_.end(), false);
  for (auto& b : buckets_) b.ready = 0;
}

void GradReducer::on_grad(size_t k, const torch::Tensor& grad) {
  if (!armed_) return;
  auto& b = buckets_[bucket_of_[k]];
  auto slot = b.flat.narrow(0, b.offsets[slot_of_[k]], params_[k].numel());
  // The hook sees this micro-batch's gradient before it is added to .grad.
  const auto& acc = params_[k].grad();
  if (acc.defined())
    torch::add_out(slot, acc.reshape(-1), grad.reshape(-1).to(torch::kFloat));
  else
    slot.copy_(grad.reshape(-1));
  seen_[k] = true;
  if (++b.ready == b.members.size()) launch(b);
}

void GradReducer::launch(Bucket& b) { b.pending = comm_->allreduce_sum_async(b.flat, "gradient all-reduce"); }

void GradReducer::finish() {
  if (!armed_) return;
  torch::NoGradGuard no_grad;
  // Parameters that got no gradient this step (unused) still take part, as
  // their accumulated gradient or zero, so that every rank sends the same buckets.
  for (auto& b : buckets_) {
    if (b.pending.active()) continue;
    for (size_t s = 0; s < b.members.size(); ++s) {
      size_t k = b.members[s];
      if (seen_[k]) continue;
      auto slot = b.flat.narrow(0, b.offsets[s], params_[k].numel());
      if (params_[k].grad().defined()) slot.copy_(params_[k].grad().reshape(-1));
      else slot.zero_();
    }
    launch(b);
  }
  const double inv_world = 1.0 / comm_->world();
  for (auto& b : buckets_) {
    b.pending.wait();
    b.flat.mul_(inv_world);
    for (size_t s = 0; s < b.members.size(); ++s) {
      auto& p = params_[b.members[s]];
      auto avg = b.flat.narrow(0, b.offsets[s], p.numel()).view_as(p);
      if (p.grad().defined()) p.mutable_grad().copy_(avg);
      else p.mutable_grad() = avg.clone();
    }
  }
  armed_ = false;
}

}  // namespace undo
