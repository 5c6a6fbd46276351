#include "model/block_kernels.h"

#include <limits>

#include "core/error.h"
#include "model/profile_scope.h"

namespace undo {

std::vector<torch::Tensor> project_together(const torch::Tensor& x,
                                            const std::vector<torch::nn::Linear>& projections) {
  std::vector<torch::Tensor> weights, biases;
  std::vector<int64_t> widths;
  for (auto& p : projections) {
    weights.push_back(p->weight);
    widths.push_back(p->weight.size(0));
    if (p->bias.defined()) biases.push_back(p->bias);
  }
  UNDO_CHECK(biases.empty() || biases.size() == projections.size(),
             "project_together: either every projection has a bias or none has");
  // The concatenation's backward hands each weight a slice of one gradient;
  // split's hands the product one gradient made whole in a single copy.
  auto bias = biases.empty() ? torch::Tensor() : torch::cat(biases);
  return torch::nn::functional::linear(x, torch::cat(weights), bias).split_with_sizes(widths, -1);
}

namespace {

// out = x rotated by +angle (sign 1) or -angle (sign -1): four kernels writing
// straight into out's halves.
torch::Tensor rotate(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, double sign,
                     c10::ScalarType out_type) {
  const int64_t half = x.size(-1) / 2;
  auto out = torch::empty(x.sizes(), x.options().dtype(out_type));
  auto x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  auto o1 = out.narrow(-1, 0, half), o2 = out.narrow(-1, half, half);
  at::mul_out(o1, x1, cos);
  o1.addcmul_(x2, sin, -sign);  // x1 cos - sign x2 sin
  at::mul_out(o2, x2, cos);
  o2.addcmul_(x1, sin, sign);  // x2 cos + sign x1 sin
  return out;
}

struct Rotary : torch::autograd::Function<Rotary> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& cos, const torch::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return rotate(x, cos, sin, 1, x.scalar_type());
  }
  // A rotation's transpose is the rotation by the opposite angle, in the gradient's type.
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    UNDO_PROFILE_SCOPE("undo::rotary");
    auto saved = ctx->get_saved_variables();
    return {rotate(grads[0], saved[0], saved[1], -1, grads[0].scalar_type()), torch::Tensor(), torch::Tensor()};
  }
};

// RMSNorm with Gemma's (1 + w) scale, in fp32. Forward: one reduction that
// reads x (its 2-norm, no x^2 written) and two products. Backward by hand
// from the saved normalised rows: five passes where autograd's chain of
// pow, mean, rsqrt and products takes about nine.
struct RmsNorm : torch::autograd::Function<RmsNorm> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, double eps) {
    auto xf = x.to(torch::kFloat);
    const double d = double(xf.size(-1));
    auto rstd = at::rsqrt(at::linalg_vector_norm(xf, 2, {-1}, /*keepdim=*/true).square_().div_(d).add_(eps));
    auto xhat = xf * rstd;
    ctx->save_for_backward({xhat, rstd, weight});
    return (xhat * (1 + weight)).to(x.scalar_type());
  }
  // With s = 1 + w and gs = g s: dx = rstd (gs - xhat mean(gs xhat)), dw = sum over rows of g xhat.
  // The output, and so its gradient, has x's type: dx is returned in it.
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    UNDO_PROFILE_SCOPE("undo::norm");
    auto saved = ctx->get_saved_variables();
    const auto &xhat = saved[0], &rstd = saved[1], &weight = saved[2];
    auto g = grads[0].to(torch::kFloat);
    auto gs = g * (1 + weight);
    auto mean_dot = (gs * xhat).mean(-1, /*keepdim=*/true);
    auto dx = gs.addcmul_(xhat, mean_dot, -1).mul_(rstd);
    auto dw = (g * xhat).flatten(0, -2).sum(0);
    return {dx.to(grads[0].scalar_type()), dw.to(weight.scalar_type()), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  return RmsNorm::apply(x, weight, eps);
}

torch::Tensor rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, double scale) {
  UNDO_CHECK(!cos.requires_grad() && !sin.requires_grad(), "rotary: the angles are constants");
  // The tables in x's type ([T, hd/2]: far smaller than x), so that no kernel
  // casts x to fp32 and back around mixed operands.
  auto table = [&](const torch::Tensor& t) { return (scale == 1 ? t : t * scale).to(x.scalar_type()); };
  return Rotary::apply(x, table(cos), table(sin));
}

torch::Tensor hidden_keys(int64_t T, int window, torch::Device device) {
  auto mask = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(device)).triu(1);
  if (window > 0) mask = mask.logical_or(torch::ones_like(mask).tril(-window));  // i - window < j <= i
  return mask;
}

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               double softcap, int window) {
  auto scores = torch::matmul(q, k.transpose(-2, -1));
  if (softcap > 0) scores = torch::tanh(scores / softcap) * softcap;
  // In place: the product's backward needs q and k, not its output.
  scores.masked_fill_(hidden_keys(q.size(-2), window, q.device()), -std::numeric_limits<float>::infinity());
  // ATen's softmax of bf16 sums in fp32 and rounds its output once, as the
  // written-out form's fp32 softmax cast back to bf16 does.
  return torch::matmul(torch::softmax(scores, -1), v);
}

}  // namespace undo
