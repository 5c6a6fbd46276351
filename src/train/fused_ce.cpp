#include "train/fused_ce.h"

namespace undo {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct FusedCrossEntropy : torch::autograd::Function<FusedCrossEntropy> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& logits, const torch::Tensor& targets) {
    auto x = logits.to(torch::kFloat);
    auto lse = torch::logsumexp(x, -1);
    auto picked = x.gather(1, targets.unsqueeze(1)).squeeze(1);
    ctx->save_for_backward({x, lse, targets});
    ctx->saved_data["dtype"] = static_cast<int64_t>(logits.scalar_type());
    return (lse - picked).mean();
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    auto x = saved[0], lse = saved[1], targets = saved[2];
    auto scale = grad_out[0].to(torch::kFloat) / double(x.size(0));  // a tensor: no host synchronisation
    // softmax(x) - onehot(target), scaled. Out of place: x may be the caller's own logits.
    auto grad = (x - lse.unsqueeze(1)).exp_();
    grad.scatter_add_(1, targets.unsqueeze(1), torch::full({x.size(0), 1}, -1.0f, x.options()));
    grad.mul_(scale);
    auto dtype = static_cast<torch::ScalarType>(ctx->saved_data["dtype"].toInt());
    return {grad.to(dtype), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor fused_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets) {
  return FusedCrossEntropy::apply(logits, targets);
}

}  // namespace undo
